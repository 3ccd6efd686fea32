"""Interrupted generate runs: SIGKILL at several points, then --resume gives the same bytes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import demo_with_bank, run_cli, tree_hashes

CMD = [sys.executable, "-m", "sirst_synth"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = demo_with_bank(tmp_path_factory.mktemp("resume"), images=40, seed=1)
    ref = root / "ref" / "x"  # outputs are named after their folder: every run writes into an "x"
    ref.parent.mkdir()
    run_cli("generate", root / "data", "--bank", root / "bank.h5", "--out", ref, "-q")
    return root, tree_hashes(ref)


def _args(root: Path, out: Path, *extra: str) -> list[str]:
    return CMD + [
        "generate",
        str(root / "data"),
        "--bank",
        str(root / "bank.h5"),
        "--out",
        str(out),
        "-q",
        *extra,
    ]


def _kill_after(root: Path, out: Path, lines: int):
    """Start generate with 2 workers and SIGKILL it once its journal holds ``lines`` jobs."""
    proc = subprocess.Popen(
        _args(root, out, "--workers", "2"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    journal = out / ".sirst-synth" / "journal.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if journal.is_file() and journal.read_bytes().count(b"\n") >= lines:
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc, journal


@pytest.mark.slow
@pytest.mark.parametrize("lines", [0, 1, 20, 38])  # 40 jobs: 38 leaves two to resume
def test_sigkill_then_resume_is_byte_identical(setup, tmp_path, lines):
    root, ref = setup
    out = tmp_path / "x"
    proc, journal = _kill_after(root, out, lines)
    # the kill landed before the run finished: the journal (removed at the end) is still
    # there, or the run had not begun writing; never a finished run "resumed"
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "manifest.jsonl").exists()
    if not out.exists():  # killed before it wrote anything: a fresh start is the resume
        out.mkdir()
    r = subprocess.run(
        _args(root, out, "--resume", "--workers", "1"), capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert tree_hashes(out) == ref
    v = subprocess.run(CMD + ["verify", str(out), "-q"], capture_output=True, text=True)
    assert v.returncode == 0, v.stderr


@pytest.mark.slow
def test_resume_with_other_recipe_is_refused(setup, tmp_path):
    root, _ = setup
    out = tmp_path / "x"
    proc = subprocess.Popen(_args(root, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc.wait()
    r = subprocess.run(
        _args(root, out, "--resume", "--alpha", "0.2"), capture_output=True, text=True
    )
    assert r.returncode == 2
    assert (
        "cannot resume a different run" in r.stderr and "recipe.alpha: was 0.1, now 0.2" in r.stderr
    )
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_with_resume_hint(setup, tmp_path):
    root, ref = setup
    out = tmp_path / "x"
    proc = subprocess.Popen(
        _args(root, out, "--workers", "2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    journal = out / ".sirst-synth" / "journal.jsonl"
    while proc.poll() is None and not (journal.is_file() and journal.stat().st_size):
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)  # a bound on a hang, not a speed test
    if proc.returncode == 0:
        pytest.skip("the run finished before the interrupt arrived")
    # it stopped where it was: the run is unfinished (no manifest, jobs left in the journal)
    assert not (out / "manifest.jsonl").exists()
    assert journal.read_text().count("\n") < 40
    assert proc.returncode == 130 and "--resume" in err and "Traceback" not in err
    r = subprocess.run(_args(root, out, "--resume"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert tree_hashes(out) == ref


@pytest.mark.slow
def test_verify_finds_strays_and_missing(setup, tmp_path, cli):
    import shutil

    root, _ = setup
    out = tmp_path / "copy"
    shutil.copytree(root / "ref" / "x", out)
    (out / "images" / ".x.png.sirst-tmp123").write_bytes(b"half")
    (out / "images" / "extra.png").write_bytes((out / "images" / "000002.png").read_bytes())
    first = sorted((out / "masks").iterdir())[0]
    first.unlink()
    r = cli("verify", out, "--json")
    assert r.code == 1
    import json

    problems = json.loads(r.out)["problems"]
    assert any("stray temporary" in p for p in problems)
    assert any(p.startswith("images/extra.png: file not in the manifest") for p in problems)
    assert any(p == f"masks/{first.name}: listed in the manifest but missing" for p in problems)
    assert len(problems) == 3
    _ = os


@pytest.mark.slow
def test_resume_with_changed_source_is_refused(setup, tmp_path):
    import shutil

    root, _ = setup
    data = tmp_path / "data"
    shutil.copytree(root / "data", data)
    out = tmp_path / "x"
    args = CMD + [
        "generate",
        str(data),
        "--bank",
        str(root / "bank.h5"),
        "--out",
        str(out),
        "-q",
        "--allow-foreign-bank",
    ]
    subprocess.run(args, check=True)
    a, b = (data / "50_50" / "test.txt").read_text().split()[:2]
    (data / "images" / f"{a}.png").write_bytes((data / "images" / f"{b}.png").read_bytes())
    r = subprocess.run(args + ["--resume"], capture_output=True, text=True)
    assert r.returncode == 2 and "source_fingerprint" in r.stderr and "Traceback" not in r.stderr


def test_journal_is_trimmed_after_its_last_complete_line(tmp_path):
    """A kill may cut the line being written: the jobs before it are done, it is redone."""
    from sirst_synth.io.journal import trim_journal

    journal = tmp_path / "journal.jsonl"
    good = b'{"job": "image:a:0", "rows": []}\n{"job": "image:b:0", "rows": []}\n'
    journal.write_bytes(good + b'{"job": "image:c:0", "ro')
    assert trim_journal(journal) == 2
    assert journal.read_bytes() == good
    journal.write_bytes(good + b'{"job": "image:c:0", "rows": []}')  # cut before its newline
    assert trim_journal(journal) == 2 and journal.read_bytes() == good


def test_journal_must_hold_the_jobs_in_order(tmp_path):
    """The manifest is streamed from the journal in job order: a journal whose lines are not
    the run's jobs in order (edited by hand) is refused, not written into the manifest."""
    from sirst_synth.errors import DataError
    from sirst_synth.io.journal import count_rows
    from sirst_synth.jobs import Job

    jobs = [(j.key, j.stem) for j in (Job("image", "a"), Job("image", "b"), Job("test", "c"))]
    rows = {
        "image:a:0": ["original", "development"],
        "image:b:0": ["original"],
        "test:c:0": ["test"],
    }
    journal = tmp_path / "journal.jsonl"

    def write(keys):
        journal.write_text(
            "".join(
                json.dumps({"job": k, "rows": [{"split": s} for s in rows[k]]}) + "\n" for k in keys
            )
        )

    write(["image:a:0", "image:b:0", "test:c:0"])
    assert count_rows(journal, jobs) == ({"original": 2, "development": 1, "test": 1}, [])
    for written in (["image:b:0", "image:a:0", "test:c:0"], ["image:a:0", "image:b:0"]):
        write(written)
        with pytest.raises(DataError, match="does not list this run's jobs in order"):
            count_rows(journal, jobs)


@pytest.mark.slow
def test_resume_redoes_jobs_whose_files_were_deleted(setup, tmp_path):
    """A resume reuses only the finished jobs whose files it finds: delete one written by the
    fifth job, and the run from that job on is redone, to the same bytes as an unbroken run."""
    root, ref = setup
    out = tmp_path / "x"
    proc, journal = _kill_after(root, out, 20)
    assert proc.returncode == -signal.SIGKILL and not (out / "manifest.jsonl").exists()
    fifth = json.loads(journal.read_text().splitlines()[4])
    gone = out / fifth["rows"][-1]["image"]
    gone.unlink()
    r = subprocess.run(_args(root, out, "--resume"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert gone.is_file() and tree_hashes(out) == ref
