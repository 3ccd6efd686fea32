"""Hardening, second round (continued): what --overwrite may delete, what each reader accepts,
and the messages that must tell the truth."""

import json

import pytest
from conftest import demo_with_bank, tree_hashes


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_with_bank(tmp_path_factory.mktemp("hard3"), images=6, seed=7)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _generate(cli, demo, out, *extra):
    return cli("generate", demo / "data", "--bank", demo / "bank.h5", "--out", out, "--json",
               "--count", "4", *extra)  # fmt: skip


def test_overwrite_needs_our_run_file_not_a_file_named_manifest(demo, tmp_path, cli):
    """A folder that merely holds a file called manifest.jsonl is not ours."""
    out = tmp_path / "theirs"
    (out / "images").mkdir(parents=True)
    (out / "images" / "a.png").write_bytes(b"user image")
    (out / "manifest.jsonl").write_text("{}\n")
    before = tree_hashes(out)
    r = _generate(cli, demo, out, "--overwrite")
    assert r.code == 2 and "not written by sirst-synth" in _one_line(r.err)
    assert tree_hashes(out) == before


def test_overwrite_deletes_only_what_the_run_listed(demo, tmp_path, cli):
    out = tmp_path / "ours"
    assert _generate(cli, demo, out).code == 0
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    (out / "images" / "mine.png").write_bytes(b"the user's own file")
    (out / "50_50" / "my_split.txt").write_text("x\n")
    before = tree_hashes(out)
    r = _generate(cli, demo, out, "--overwrite")
    line = _one_line(r.err)
    assert r.code == 2 and "was not written by the previous run" in line
    assert "images/mine.png (and 1 more)" in line
    assert tree_hashes(out) == before  # checked whole before anything is deleted
    (out / "images" / "mine.png").unlink()
    (out / "50_50" / "my_split.txt").unlink()
    (out / "notes.txt").write_text("keep")
    r = _generate(cli, demo, out, "--overwrite", "--count", "8")
    assert r.code == 0, r.err
    assert (
        json.loads(r.out)["development"] == 8
        and sum(x["split"] == "development" for x in rows) == 4
    )
    assert (out / "notes.txt").read_text() == "keep"
    now = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    files = {p.relative_to(out).as_posix() for p in (out / "images").rglob("*")}
    assert files == {r["image"] for r in now}  # nothing of the first run is left over


def test_overwrite_of_a_stopped_run_takes_its_unlisted_job_files(demo, tmp_path, cli):
    """A run killed between a job's files and its journal line leaves them unlisted: they are
    the run's (PNGs directly in images/ and masks/), and --overwrite replaces them."""
    out = tmp_path / "stopped"
    assert _generate(cli, demo, out).code == 0
    (out / "manifest.jsonl").unlink()  # as if stopped before its manifest: the journal lists
    (out / ".sirst-synth" / "journal.jsonl").write_text("")  # nothing finished
    r = _generate(cli, demo, out, "--overwrite")
    assert r.code == 0, r.err
    assert json.loads(r.out)["development"] == 4
