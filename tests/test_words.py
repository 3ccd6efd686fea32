"""One meaning per word: renamed flags (old names kept one version, with a warning), one rule
for --json-out, one unit convention for every table."""

from __future__ import annotations

import json
import re
import warnings

import h5py
import pytest
from conftest import one_line

from sirst_synth.names import in_units, metric_label


def test_build_noise_bank_writes_bank_and_still_reads_out(demo_root, tmp_path, cli):
    r = cli("build-noise-bank", demo_root, "--bank", tmp_path / "a.h5", "-q")
    assert r.code == 0 and r.err == ""
    r = cli("build-noise-bank", demo_root, "--out", tmp_path / "b.h5", "-q")
    assert r.code == 0
    assert one_line(r.err) == "warning --out is now --bank; the old name goes in the next version"
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        assert a["pixels"].size > 0 and (a["pixels"][:] == b["pixels"][:]).all()
    r = cli("build-noise-bank", demo_root, "--bank", tmp_path / "c.h5", "--out", tmp_path / "d.h5")
    assert (
        r.code == 2
        and one_line(r.err) == "error: --out is the old name of --bank; give --bank only"
    )


def test_generate_split_files_and_its_old_name(demo_root, demo_bank, tmp_path, cli):
    base = ("generate", demo_root, "--bank", demo_bank, "--count", "2", "-q")
    assert cli(*base, "--out", tmp_path / "a", "--split-files", "dnanet").code == 0
    r = cli(*base, "--out", tmp_path / "b", "--layout", "dnanet")
    assert r.code == 0 and "--layout is now --split-files" in r.err
    for out in ("a", "b"):  # DNA-Net's split files only, in both
        assert (tmp_path / out / "50_50" / "train.txt").is_file()
        assert not (tmp_path / out / "img_idx").exists()
    card = (tmp_path / "a" / "README.md").read_text()
    assert "--split-files dnanet" in card and "--layout" not in card


def test_api_old_keyword_warns_and_works(demo_root, tmp_path):
    import sirst_synth.api as ss

    with pytest.warns(FutureWarning, match="out= is now bank="):
        res = ss.build_noise_bank(demo_root, out=tmp_path / "b.h5")
    assert res.path == tmp_path / "b.h5" and res.accepted > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ss.build_noise_bank(demo_root, bank=tmp_path / "c.h5").accepted == res.accepted


def test_json_out_is_replaced_only_with_overwrite_in_every_command(demo_root, tmp_path, cli):
    """verify had no --overwrite: a second run onto its own report could not be made."""
    report = tmp_path / "v.json"
    (tmp_path / "out").mkdir()
    assert cli("demo-dataset", tmp_path / "d", "-n", "4", "--json-out", report, "-q").code == 0
    r = cli("demo-dataset", tmp_path / "e", "-n", "4", "--json-out", report, "-q")
    assert r.code == 2 and "exists; pass --overwrite" in one_line(r.err)
    assert not (tmp_path / "e").exists()  # refused before any work
    r = cli("demo-dataset", tmp_path / "e", "-n", "4", "--json-out", report, "--overwrite", "-q")
    assert r.code == 0 and json.loads(report.read_text())["out"] == str(tmp_path / "e")
    for cmd in ("verify", "train", "study", "evaluate", "generate", "build-noise-bank"):
        r = cli(cmd, "--help")
        assert "--overwrite" in r.out and "--json-out" in r.out, cmd


def test_help_says_the_words_and_hides_the_old_names(cli):
    r = cli("--help")
    for line in ("--resume", "development", "original", "Fa x1e-6"):
        assert line in r.out
    r = cli("build-noise-bank", "--help")
    assert "--bank" in r.out and "--out" not in r.out
    r = cli("preview", "--help")
    assert "--sheet" in r.out and "--out" not in r.out
    r = cli("generate", "--help")
    assert "--split-files" in r.out and "--layout" not in r.out
    for cmd in ("generate", "train", "study", "build-noise-bank"):
        words = " ".join(re.sub("[│╭╮╰╯─]", " ", cli(cmd, "--help").out).split())
        assert (
            "--resume Continue a stopped run of the same settings; what it finished is kept"
            in words.replace("<bool> ", "")
        ), cmd


def test_no_help_text_is_eaten_as_markup(cli):
    """Rich reads "[default: x]" as a style tag and drops it: the help said "to write ."."""
    from sirst_synth.cli.main import app

    names = [c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands]
    assert len(names) >= 10
    for cmd in names:
        words = " ".join(re.sub("[│╭╮╰╯─]", " ", cli(cmd, "--help").out).split())
        assert not re.search(r" [.,]( |$)", words), cmd  # a word was dropped before it
    words = " ".join(re.sub("[│╭╮╰╯─]", " ", cli("build-noise-bank", "--help").out).split())
    assert "to write (default: bank.h5)." in words


def test_one_unit_convention():
    assert [metric_label(k) for k in ("IoU", "nIoU", "Pd", "Fa")] == [
        "IoU x100", "nIoU x100", "Pd x100", "Fa x1e-6",
    ]  # fmt: skip
    assert in_units("IoU", 0.67339) == "67.34" and in_units("Fa", 3.674e-5) == "36.74"
    assert in_units("IoU", -0.0764, signed=True) == "-7.64"
    assert in_units("Fa", 1e-6, signed=True) == "+1.00"
