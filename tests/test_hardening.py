"""Hardening: resources, overwrites, formats, confined paths, values checked before work.

Every probe is one row of CASES: a function that builds the case in a fresh folder and returns
the command line, and the expected exit code and stderr words. Each case also checks: one
stderr line, no traceback, the inputs unchanged, no temporary file left anywhere.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import demo_with_bank, run_cli, tree_hashes, write_dataset

from sirst_synth.io.files import TMP_MARK

CLI = [sys.executable, "-m", "sirst_synth"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = demo_with_bank(tmp_path_factory.mktemp("hard"), images=8, seed=9)
    run_cli("generate", root / "data", "--bank", root / "bank.h5", "--out", root / "gen",
            "--count", "8", "-q")  # fmt: skip
    return root


def _copy(base: Path, tmp: Path, *names: str) -> None:
    for n in names:
        (shutil.copytree if (base / n).is_dir() else shutil.copy)(base / n, tmp / n)


def disk_full_bank(b, t):
    _copy(b, t, "data")
    return ["build-noise-bank", "data", "--bank", "bank.h5", "-q"], {"ulimit": 100}


def disk_full_generate(b, t):
    _copy(b, t, "data", "bank.h5")
    return ["generate", "data", "--bank", "bank.h5", "--out", "o", "-q"], {"ulimit": 20}


def disk_full_checkpoint(b, t):
    _copy(b, t, "data")
    return [
        "train",
        "data",
        "--out",
        "run",
        "--model",
        "aff-unet-tiny",
        "--epochs",
        "1",
        "--crop",
        "32",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "-q",
    ], {"ulimit": 500}


def count_beyond_the_disk(b, t):
    _copy(b, t, "data", "bank.h5")
    return ["generate", "data", "--bank", "bank.h5", "--out", "o", "--count", str(10**13), "-q"], {}


def grid_beyond_the_images(b, t):
    _copy(b, t, "data")
    return ["build-noise-bank", "data", "--bank", "bank.h5", "--grid", "10000"], {}


def generate_from_own_output(b, t):
    _copy(b, t, "gen")
    subprocess.run(CLI + ["build-noise-bank", "gen", "--bank", "gbank.h5", "-q"], cwd=t, check=True)
    return ["generate", "gen", "--bank", "gbank.h5", "--out", "o2", "-q"], {}


def preview_over_a_file(b, t):
    _copy(b, t, "gen")
    (t / "sheet.png").write_bytes(b"mine")
    return ["preview", "gen", "--sheet", "sheet.png"], {}


def preview_into_the_dataset(b, t):
    _copy(b, t, "gen")
    return ["preview", "gen", "--sheet", "gen/images/x.png"], {}


def curve_over_a_file(b, t):
    _copy(b, t, "data")
    (t / "pred").mkdir()
    (t / "c.png").write_bytes(b"mine")
    return ["evaluate", "data", "--pred-dir", "pred", "--curve", "c.png"], {}


def json_out_into_the_dataset(b, t):
    _copy(b, t, "data")
    (t / "pred").mkdir()
    return ["evaluate", "data", "--pred-dir", "pred", "--json-out", "data/m.json"], {}


def train_out_into_the_dataset(b, t):
    _copy(b, t, "data")
    return ["train", "data", "--out", "data/run", "--model", "aff-unet-tiny", "--epochs", "1"], {}


def second_writer(b, t):
    _copy(b, t, "data", "bank.h5")
    (t / "o").mkdir()
    return ["generate", "data", "--bank", "bank.h5", "--out", "o", "-q"], {
        "lock": "o/.sirst-synth.lock"
    }


def manifest_path_escapes(b, t):
    _copy(b, t, "gen")
    m = t / "gen" / "manifest.jsonl"
    lines = m.read_text().splitlines()
    row = json.loads(lines[0])
    row["image"] = "../../../../etc/hostname"
    m.write_text("\n".join([json.dumps(row)] + lines[1:]) + "\n")
    return ["train", "gen", "--out", "run", "--model", "aff-unet-tiny", "--epochs", "1"], {}


def split_path_escapes(b, t):
    _copy(b, t, "data")
    f = t / "data" / "50_50" / "train.txt"
    f.write_text("../../etc/passwd\n" + f.read_text())
    return ["build-noise-bank", "data", "--bank", "bank.h5"], {}


def threshold_out_of_range(b, t):
    _copy(b, t, "data")
    (t / "r.yaml").write_text("threshold: 1.5\n")
    return ["train", "data", "--out", "run", "--recipe", "r.yaml"], {}


def model_typo(b, t):
    _copy(b, t, "data")
    return ["train", "data", "--out", "run", "--model", "typo"], {}


def recipe_with_a_number_key(b, t):
    _copy(b, t, "data", "bank.h5")
    (t / "r.yaml").write_text("1: 2\n")
    return ["generate", "data", "--bank", "bank.h5", "--out", "o", "--recipe", "r.yaml"], {}


def recipe_not_utf8(b, t):
    _copy(b, t, "data", "bank.h5")
    (t / "r.yaml").write_bytes(b"alpha: \xff\xfe\n")
    return ["generate", "data", "--bank", "bank.h5", "--out", "o", "--recipe", "r.yaml"], {}


def bank_without_sigma(b, t):
    _copy(b, t, "data", "bank.h5")
    with h5py.File(t / "bank.h5", "a") as f:
        del f.attrs["sigma"]
    return ["generate", "data", "--bank", "bank.h5", "--out", "o"], {}


def bank_with_bad_offsets(b, t):
    _copy(b, t, "data", "bank.h5")
    with h5py.File(t / "bank.h5", "a") as f:
        f["offset"][1] = 10**9
    return ["generate", "data", "--bank", "bank.h5", "--out", "o"], {}


def checkpoint_of_another_model(b, t):
    import torch

    from sirst_synth.train.checkpoint import weights_state
    from sirst_synth.train.model import build_model

    _copy(b, t, "data")
    state = weights_state("unet", build_model("aff-unet-tiny").state_dict(), 0.0, 1.0)
    torch.save(state, t / "c.pt")
    return ["evaluate", "data", "--checkpoint", "c.pt", "--device", "cpu"], {}


def masks_without_targets(b, t):
    img = np.random.default_rng(0).integers(80, 90, (32, 32), dtype=np.uint8)
    empty = np.zeros((32, 32), np.uint8)
    write_dataset(t / "data", {s: (img, empty) for s in "abc"}, ["a", "b"], ["c"])
    subprocess.run(CLI + ["build-noise-bank", "data", "--bank", "bank.h5", "-q"], cwd=t, check=True)
    return ["generate", "data", "--bank", "bank.h5", "--out", "o", "-q"], {}


def no_test_split(b, t):
    _copy(b, t, "data", "bank.h5")
    (t / "data" / "50_50" / "test.txt").unlink()
    shutil.copy(b / "bank.h5", t / "bank.h5")
    return ["generate", "data", "--bank", "bank.h5", "--out", "o", "--allow-foreign-bank"], {}


# case -> (builder, exit code, words the one stderr line holds)
CASES = {
    "disk full: noise bank": (disk_full_bank, 1, ["bank.h5", "no space left"]),
    "disk full: generate": (disk_full_generate, 1, ["o/images/", "no space left"]),
    "disk full: checkpoint": (disk_full_checkpoint, 1, ["run/last.pt", "no space left"]),
    "count beyond the disk": (count_beyond_the_disk, 1, ["GB free", "--count"]),
    "grid beyond the images": (grid_beyond_the_images, 2, ["--grid 10000", ".png"]),
    "generate from its own output": (generate_from_own_output, 2, ["would be written twice"]),
    "preview over an existing file": (preview_over_a_file, 2, ["sheet.png exists", "--overwrite"]),
    "preview into the dataset": (preview_into_the_dataset, 2, ["lies inside"]),
    "curve over an existing file": (curve_over_a_file, 2, ["c.png exists"]),
    "json-out into the dataset": (json_out_into_the_dataset, 2, ["m.json lies inside"]),
    "train --out into the dataset": (train_out_into_the_dataset, 2, ["lies inside DATA"]),
    "a second generate into one OUT": (second_writer, 1, ["another sirst-synth generate (pid"]),
    "manifest path leaves its folder": (manifest_path_escapes, 1, ["line 1", "leaves its folder"]),
    "split path leaves its folder": (
        split_path_escapes,
        1,
        ["train.txt: line 1", "not a file stem"],
    ),
    "threshold out of range": (threshold_out_of_range, 2, ["r.yaml", "threshold"]),
    "model name typo": (model_typo, 2, ["--model", "typo", "aff-unet-tiny"]),
    "recipe with a number key": (
        recipe_with_a_number_key,
        2,
        ["r.yaml", "unknown recipe key(s) 1"],
    ),
    "recipe not UTF-8": (recipe_not_utf8, 2, ["r.yaml", "UTF-8"]),
    "bank without sigma": (bank_without_sigma, 1, ["bank.h5", "sigma"]),
    "bank with bad offsets": (bank_with_bad_offsets, 1, ["bank.h5", "inconsistent"]),
    "checkpoint of another model": (checkpoint_of_another_model, 1, ["c.pt", "do not fit"]),
    "masks without any target": (masks_without_targets, 1, ["no training mask holds a target"]),
    "no test split": (no_test_split, 2, ["no test split", "--no-test"]),
}


def _probe_cases():
    """The cases that need a file-size limit run in a shell of their own (slow); the others
    in-process, through the same entry point."""
    for case, (build, _, _) in CASES.items():
        subprocess_only = build in (disk_full_bank, disk_full_generate, disk_full_checkpoint)
        yield pytest.param(case, marks=[pytest.mark.slow] if subprocess_only else [])


@pytest.mark.parametrize("case", list(_probe_cases()))
def test_probe(base, tmp_path, case, cli, monkeypatch):
    build, code, words = CASES[case]
    args, opts = build(base, tmp_path)
    inputs = {p: tree_hashes(tmp_path / p) for p in ("data", "gen") if (tmp_path / p).is_dir()}
    lock = None
    if "lock" in opts:  # another process holds OUT (an flock on another open file conflicts)
        lock = open(tmp_path / opts["lock"], "w")  # noqa: SIM115 - held while the command runs
        lock.write("4242")
        lock.flush()
        fcntl.flock(lock, fcntl.LOCK_EX)
    if "ulimit" in opts:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
        cmd = f"ulimit -f {opts['ulimit']}; " + " ".join(f"'{a}'" for a in CLI + args)
        r = subprocess.run(
            ["bash", "-c", cmd], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        exit_code, stderr = r.returncode, r.stderr
    else:
        monkeypatch.chdir(tmp_path)
        r = cli(*args)
        exit_code, stderr = r.code, r.err
    if lock:
        lock.close()
    assert exit_code == code, (exit_code, stderr)
    assert "Traceback" not in stderr
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    for w in words:
        assert w in stderr, (w, stderr)
    for p, digest in inputs.items():
        assert tree_hashes(tmp_path / p) == digest, p
    assert not [p for p in tmp_path.rglob(f"*{TMP_MARK}*")]
    if case == "a second generate into one OUT":
        assert "4242" in stderr


@pytest.mark.slow
def test_resume_after_a_full_disk_gives_the_clean_bytes(base, tmp_path):
    _copy(base, tmp_path, "data", "bank.h5")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    gen = CLI + ["generate", "data", "--bank", "bank.h5", "-q"]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    cmd = " ".join(gen + ["--out", "a/o"])
    r = subprocess.run(
        ["bash", "-c", f"ulimit -f 20; {cmd}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "no space left" in r.stderr
    subprocess.run(gen + ["--out", "a/o", "--resume"], cwd=tmp_path, env=env, check=True)
    subprocess.run(gen + ["--out", "b/o"], cwd=tmp_path, env=env, check=True)
    assert tree_hashes(tmp_path / "a" / "o") == tree_hashes(tmp_path / "b" / "o")


@pytest.mark.slow
def test_verify_notices_edited_description_files(base, tmp_path):
    _copy(base, tmp_path, "gen")
    r = subprocess.run(
        CLI + ["verify", "gen", "--json"], cwd=tmp_path, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    (tmp_path / "gen" / "README.md").write_text("edited\n")
    (tmp_path / "gen" / "50_50" / "train.txt").write_text("000001\n")
    r = subprocess.run(
        CLI + ["verify", "gen", "--json"], cwd=tmp_path, capture_output=True, text=True
    )
    problems = json.loads(r.stdout)["problems"]
    assert r.returncode == 1
    assert "README.md: changed since generate wrote it (sha256 differs)" in problems
    assert "50_50/train.txt: changed since generate wrote it (sha256 differs)" in problems


def test_irstd1k_layout_is_detected(tmp_path):
    from sirst_synth.io.layouts import open_dataset

    img = np.zeros((16, 16), np.uint8)
    write_dataset(tmp_path / "IRSTD-1k", {s: (img, img) for s in "abc"}, ["a"], ["b"])
    root = tmp_path / "IRSTD-1k"
    shutil.rmtree(root / "50_50")
    (root / "trainval.txt").write_text("a\nb\n")
    (root / "test.txt").write_text("c\n")
    ds = open_dataset(root)
    assert (ds.layout, ds.train, ds.test) == ("irstd1k", ("a", "b"), ("c",))


@pytest.mark.parametrize("big", ["first", "second"])
def test_a_failed_write_names_its_own_file(tmp_path, big):
    """Several atomic files open at once (generate's manifest and split files): a full disk
    while writing one of them names that one (not the innermost open file), and no temporary
    file is left."""
    script = f"""
import resource, signal, sys
from pathlib import Path
from sirst_synth.errors import DataError
from sirst_synth.io.files import atomic_file
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
root = Path({str(tmp_path)!r})
try:
    with atomic_file(root / "first.txt") as a, atomic_file(root / "second.txt") as b:
        (a if {big!r} == "first" else b).write(b"x" * 100_000)
except DataError as exc:
    print(exc)
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{tmp_path / big}.txt: cannot write, no space left"), r.stdout
    assert list(tmp_path.iterdir()) == []
