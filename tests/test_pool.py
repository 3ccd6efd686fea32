"""The lane pool under `study --jobs`: results as they finish, progress per lane, errors raised
in the calling process."""

from __future__ import annotations

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
