"""One reader of dataset folders: training, scoring and synthesis find splits and files the
same way (`open_dataset`), and a given split file is the one read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import one_line, write_dataset

from sirst_synth.errors import DataError
from sirst_synth.io.samples import split_items


def _pair(rng, corner=(10, 12)):
    """A 32x32 image with one 2x2 target at ``corner``, and its 0/255 mask."""
    image = rng.integers(20, 60, (32, 32)).astype(np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    y, x = corner
    image[y : y + 2, x : x + 2], mask[y : y + 2, x : x + 2] = 250, 255
    return image, mask


@pytest.fixture
def four(tmp_path):
    """a, b train; c, d test; alt.txt lists c alone."""
    rng = np.random.default_rng(3)
    root = write_dataset(tmp_path / "ds", {s: _pair(rng) for s in "abcd"}, ["a", "b"], ["c", "d"])
    (tmp_path / "alt.txt").write_text("c\n")
    return root, tmp_path / "alt.txt"


def test_the_given_training_split_is_the_one_read(four):
    root, alt = four
    items, skipped = split_items(root, "train")
    assert [it.stem for it in items] == ["a", "b"] and skipped == []
    items, _ = split_items(root, "train", train_split=alt)
    assert [it.stem for it in items] == ["c"]
    assert items[0].image == root / "images" / "c.png" and items[0].mask == root / "masks" / "c.png"


def test_a_listed_stem_without_an_image_names_the_split_file_not_a_guessed_path(four):
    root, _ = four
    (root / "50_50" / "train.txt").write_text("a\nghost\nb\n")
    with pytest.raises(
        DataError, match=r"train\.txt: lists 'ghost' but .*images has no such image"
    ):
        split_items(root, "train")
    items, skipped = split_items(root, "train", skip_errors=True)
    assert [it.stem for it in items] == ["a", "b"] and [s for s, _ in skipped] == ["ghost"]


def test_a_missing_test_split_is_no_items_where_it_is_optional(four):
    root, _ = four
    (root / "50_50" / "test.txt").unlink()
    assert split_items(root, "test", required=False) == ([], [])
    with pytest.raises(DataError, match="no test split file found"):
        split_items(root, "test")


def test_a_split_file_is_scored_without_reading_the_training_split(four, cli):
    """Scoring a file of training stems (a validation list inside trainval) is not an overlap."""
    root, _ = four
    (root / "50_50" / "train.txt").write_text("a\nb\nghost\n")  # never read when scoring
    (root / "val.txt").write_text("a\n")
    r = cli("evaluate", root, "--pred-dir", root / "masks", "--split-file", root / "val.txt",
            "--json")  # fmt: skip
    assert r.code == 0, r.err
    m = json.loads(r.out)
    assert m["images"] == 1 and m["IoU"] == 1.0


def test_train_reads_train_split(four, tmp_path, cli):
    root, alt = four
    (tmp_path / "bad.txt").write_text("ghost\n")
    r = cli("train", root, "--out", tmp_path / "run0", "--train-split", tmp_path / "bad.txt",
            "--model", "aff-unet-tiny", "--steps", "1", "--batch-size", "1", "--crop", "32",
            "--precision", "fp32", "--quiet")  # fmt: skip
    assert r.code == 1 and "bad.txt: lists 'ghost'" in one_line(r.err)
    import sirst_synth.api as ss

    said: list[str] = []
    ss.train(root, out=tmp_path / "run1", train_split=alt, model="aff-unet-tiny", steps=1,
             batch_size=1, crop=32, precision="fp32", log=said.append)  # fmt: skip
    assert any("1 training samples per epoch, 2 validation" in s for s in said), said


def test_a_split_file_on_a_generate_output_is_a_usage_error(four, tmp_path, cli):
    """A generate output's manifest says which samples train and which test; a split file
    given beside it was silently ignored before."""
    root, alt = four
    gen, bank = tmp_path / "gen", tmp_path / "bank.h5"
    assert cli("build-noise-bank", root, "--bank", bank, "--sigma", "1000", "-q").code == 0
    assert cli("generate", root, "--bank", bank, "--out", gen, "--count", "2",
               "--quiet").code == 0  # fmt: skip
    r = cli("train", gen, "--out", tmp_path / "run", "--train-split", alt, "--steps", "1",
            "--model", "aff-unet-tiny", "--quiet")  # fmt: skip
    assert r.code == 2
    assert one_line(r.err).endswith(
        f"--train-split goes with a dataset folder; {gen} is a generate output"
    )
    assert not (tmp_path / "run").exists()


def _tiny(**kw):
    return {"model": "aff-unet-tiny", "steps": 1, "batch_size": 1, "crop": 32,
            "precision": "fp32", **kw}  # fmt: skip


def test_train_validates_on_the_split_given_by_val_and_says_where(four, tmp_path):
    """--val DIR:SPLITFILE replaces DATA's test split as what best.pt is chosen on; without it
    the run says that it chooses on the test split."""
    import sirst_synth.api as ss

    root, alt = four  # alt lists c alone, one of the two test images
    said: list[str] = []
    ss.train(root, out=tmp_path / "run0", log=said.append, **_tiny())
    assert any(f"2 validation ({root}'s test split)" in s for s in said), said
    assert any("best.pt is chosen on that test split" in s for s in said), said
    said.clear()
    ss.train(root, out=tmp_path / "run1", log=said.append, val=f"{root}:{alt}", **_tiny())
    assert any(f"1 validation ({alt} of {root})" in s for s in said), said
    assert not any("best.pt is chosen on that test split" in s for s in said), said
    said.clear()
    ss.train(root, out=tmp_path / "run2", log=said.append, val=(root, alt), **_tiny())
    assert any("1 validation" in s for s in said), said


def test_val_sharing_an_image_with_training_is_refused_before_the_run_starts(four, tmp_path, cli):
    root, _ = four
    (tmp_path / "leak.txt").write_text("c\nb\n")  # b trains
    r = cli("train", root, "--out", tmp_path / "run", "--val", f"{root}:{tmp_path / 'leak.txt'}",
            "--model", "aff-unet-tiny", "--steps", "1", "--batch-size", "1", "--crop", "32",
            "--precision", "fp32", "--quiet")  # fmt: skip
    assert r.code == 2
    assert one_line(r.err) == (
        "error: --val: 1 validation images are also training images (e.g. b); validate on "
        "images the run does not train on (for a generate output: generate from a training "
        "split without them)"
    )
    assert not (tmp_path / "run").exists()


def test_val_images_that_went_into_a_generate_output_are_refused(four, tmp_path):
    """The generate output holds copies of its training images (other paths, same names)."""
    import sirst_synth.api as ss
    from sirst_synth.errors import UsageError

    root, alt = four  # a, b train; alt lists c
    (tmp_path / "val.txt").write_text("a\n")
    ss.build_noise_bank(root, bank=tmp_path / "bank.h5", sigma=1000)
    gen = tmp_path / "gen"
    ss.generate(root, bank=tmp_path / "bank.h5", out=gen, count=2)
    with pytest.raises(
        UsageError, match=r"1 validation images are also training images \(e\.g\. a\)"
    ):
        ss.train(gen, out=tmp_path / "run", val=(root, tmp_path / "val.txt"), **_tiny())
    res = ss.train(gen, out=tmp_path / "run2", val=(root, alt), **_tiny())
    assert res.steps == 1


def test_resume_with_other_validation_images_is_refused(four, tmp_path):
    """best.pt was chosen on the first run's validation images: another set would make it a
    choice over two sets."""
    import sirst_synth.api as ss
    from sirst_synth.errors import UsageError

    root, alt = four
    ss.train(root, out=tmp_path / "run", val=f"{root}:{alt}", **_tiny())
    with pytest.raises(UsageError, match=r"other validation files than .*test split"):
        ss.train(root, out=tmp_path / "run", resume=True, **_tiny(steps=2))
    res = ss.train(root, out=tmp_path / "run", resume=True, val=f"{root}:{alt}", **_tiny(steps=2))
    assert res.steps == 2


def test_dir_and_split_file_are_parsed_the_same_for_val_and_extra_tests(tmp_path):
    from sirst_synth.errors import UsageError
    from sirst_synth.io.samples import parse_split_source
    from sirst_synth.study import ExtraTest

    assert parse_split_source("d", "--val") == (Path("d"), None)
    assert parse_split_source("d:x/v.txt", "--val") == (Path("d"), Path("x/v.txt"))
    assert ExtraTest.parse("v2=d:x/v.txt") == ExtraTest("v2", Path("d"), Path("x/v.txt"))
    with pytest.raises(UsageError, match=r"--val ':v.txt': write DIR or DIR:SPLITFILE"):
        parse_split_source(":v.txt", "--val")
