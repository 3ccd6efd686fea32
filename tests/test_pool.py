"""The lane pool under `study --jobs`: results as they finish, progress per lane, errors raised
in the calling process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sirst_synth.errors import DataError
from sirst_synth.pool import LanePool
from sirst_synth.progress import Progress


class Recorder(Progress):
    def __init__(self, events: list, lane: int = 0) -> None:
        self.events, self.lane_no, self.lanes = events, lane, {}

    def start(self, description: str, total: int) -> None:
        self.events.append((self.lane_no, description, total))

    def advance(self, n: int = 1) -> None:
        self.events.append((self.lane_no, "advance", n))

    def lane(self, i: int) -> Progress:
        return self.lanes.setdefault(i, Recorder(self.events, i))


def square(x: int, progress: Progress) -> int:
    progress.start(f"item {x}", 2)
    progress.advance(2)
    if x == 3:
        raise DataError("item 3 is bad: fix it")
    return x * x


@pytest.mark.parametrize("workers", [1, 2])
def test_every_item_runs_once_on_a_lane_of_its_own(workers):
    events: list = []
    got = []
    with LanePool(square, workers, Recorder(events)) as pool:
        for x in (1, 2, 4):
            got += list(pool.free_lane())
            pool.submit(x)
        got += list(pool.drain())
    assert sorted(got) == [1, 4, 16]
    starts = sorted(e for e in events if e[1] != "advance")
    assert [e[1:] for e in starts if e[0] == 0][:1] == [("item 1", 2)]  # the first takes lane 0
    assert sorted(e[1] for e in starts) == ["item 1", "item 2", "item 4"]
    assert {e[0] for e in starts} == ({0} if workers == 1 else {0, 1})
    assert sum(e[2] for e in events if e[1] == "advance") == 6


@pytest.mark.parametrize("workers", [1, 2])
def test_a_workers_error_is_raised_here(workers):
    with (
        pytest.raises(DataError, match="item 3 is bad: fix it"),
        LanePool(square, workers, Progress()) as pool,
    ):
        for x in (1, 3, 2):
            list(pool.free_lane())
            pool.submit(x)
        list(pool.drain())


def tell_and_wait(path: str, progress: Progress) -> None:
    Path(path).write_text(str(os.getpid()))
    time.sleep(120)


PARENT = """
import sys
sys.path.insert(0, {tests!r})
from test_pool import tell_and_wait
from sirst_synth.pool import LanePool
from sirst_synth.progress import Progress
if __name__ == "__main__":
    with LanePool(tell_and_wait, 2, Progress()) as pool:
        for path in {paths!r}:
            list(pool.free_lane())
            pool.submit(path)
        list(pool.drain())
"""


def _parent(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/status").read_text().count("State:\tZ") == 1  # unreaped
    except OSError:
        return True


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux's /proc")
def test_workers_stop_when_the_process_that_started_them_is_killed(tmp_path):
    paths = [str(tmp_path / f"worker{i}.pid") for i in range(2)]
    script = tmp_path / "parent.py"
    script.write_text(PARENT.format(tests=str(Path(__file__).parent), paths=paths))
    parent = subprocess.Popen([sys.executable, str(script)])
    deadline = time.time() + 120
    while not all(Path(p).is_file() for p in paths) and time.time() < deadline:
        time.sleep(0.1)
    pids = [int(Path(p).read_text()) for p in paths]
    children = [int(d.name) for d in Path("/proc").iterdir() if _parent(d) == parent.pid]
    assert set(pids) < set(children)  # the workers, and the progress queue's server
    assert not any(_gone(pid) for pid in children)
    parent.kill()  # no cleanup runs in the parent
    parent.wait()
    deadline = time.time() + 30
    while not all(_gone(pid) for pid in children) and time.time() < deadline:
        time.sleep(0.2)
    assert all(_gone(pid) for pid in children)
