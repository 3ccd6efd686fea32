"""train --synth online: epoch e equals generate's pass e; seeded, worker-independent, resumable."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from conftest import demo_with_bank, read_jsonl, tree_hashes

from sirst_synth.io.bank import read_bank_index
from sirst_synth.io.files import read_gray, read_mask
from sirst_synth.io.samples import split_items
from sirst_synth.recipe import SynthRecipe
from sirst_synth.targets import components

torch = pytest.importorskip("torch")

from sirst_synth.train.data import OnlineSynthSet  # noqa: E402

TINY = ["--model", "aff-unet-tiny", "--crop", "32", "--batch-size", "4", "--device", "cpu", "-q",
        "--precision", "fp32"]  # fmt: skip


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    return demo_with_bank(tmp_path_factory.mktemp("online"), images=10, seed=5)


def _online(src, count=None):
    items, _ = split_items(src / "data", "train")
    counts = [components(read_mask(it.mask)).count for it in items]
    recipe = SynthRecipe(count=count)
    return OnlineSynthSet(
        items, read_bank_index(src / "bank.h5"), recipe, 0.0, 1.0, None, 0, counts
    ), counts


@pytest.mark.parametrize("extra", [None, 7])
def test_epoch_e_equals_generates_pass_e(src, tmp_path, cli, extra):
    ds, counts = _online(src, extra)
    pool = 4 * sum(counts)
    # generate: pass 0 whole, then pass 1 whole (extra None) or 7 samples of it
    count = 2 * pool if extra is None else pool + extra
    out = tmp_path / "gen"
    r = cli(
        "generate", src / "data", "--bank", src / "bank.h5", "--out", out, "--count", count, "-q"
    )
    assert r.code == 0, r.err
    rows = [r for r in read_jsonl(out / "manifest.jsonl") if r.get("pass") == 1]
    assert len(rows) == (pool if extra is None else extra)
    ds.set_epoch(1)
    made = {}
    for i, (k, pick) in enumerate(ds.entries):
        if pick is not None:
            image, mask, group = ds.sample(i)
            made[(ds.items[k].stem, pick[0], pick[1])] = (image, mask, group)
    assert len(made) == len(rows)
    for row in rows:
        image, mask, group = made[(row["source"], row["target"], row["angle"])]
        assert np.array_equal(image, read_gray(out / row["image"]))
        assert np.array_equal(mask, read_mask(out / row["mask"]))
        assert group == row["group"]
    # the originals are in every epoch, unchanged
    originals = [i for i, (_, pick) in enumerate(ds.entries) if pick is None]
    assert len(originals) == len(ds.items)


def _digest(path) -> str:
    state = torch.load(path, weights_only=True)["model"]
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(state[k].numpy().tobytes())
    return h.hexdigest()


@pytest.mark.slow
def test_online_training_is_seeded_worker_independent_and_writes_nothing(src, tmp_path, cli):
    before = tree_hashes(src)
    args = ["--synth", "online", "--bank", src / "bank.h5", "--epochs", "2", *TINY]
    for name, workers in (("a", "0"), ("b", "0"), ("c", "2")):
        r = cli("train", src / "data", "--out", tmp_path / name, "--loader-workers", workers, *args)
        assert r.code == 0, r.err
    la, lb, lc = ([m["loss"] for m in read_jsonl(tmp_path / n / "metrics.jsonl")] for n in "abc")
    assert la == lb == lc and len(la) == 2
    assert _digest(tmp_path / "a" / "last.pt") == _digest(tmp_path / "c" / "last.pt")
    assert tree_hashes(src) == before  # DATA and the bank untouched
    synth = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["synth"]
    assert synth["mode"] == "online" and synth["recipe"]["alpha"] == 0.1
    assert synth["bank_fingerprint"] == read_bank_index(src / "bank.h5").attrs["fingerprint"]


@pytest.mark.slow
def test_online_resume_is_exact_and_checks_the_bank(src, tmp_path, cli):
    args = ["--synth", "online", "--bank", src / "bank.h5", *TINY]
    assert cli("train", src / "data", "--out", tmp_path / "a", "--epochs", "2", *args).code == 0
    r = cli(
        "train", src / "data", "--out", tmp_path / "b", "--epochs", "2", "--stop-after", "1", *args
    )
    assert r.code == 0, r.err
    r = cli("train", src / "data", "--out", tmp_path / "b", "--epochs", "2", "--resume", *args)
    assert r.code == 0, r.err
    assert _digest(tmp_path / "a" / "last.pt") == _digest(tmp_path / "b" / "last.pt")
    # another synthesis recipe (or bank) on resume is refused
    r = cli(
        "train",
        src / "data",
        "--out",
        tmp_path / "b",
        "--epochs",
        "3",
        "--resume",
        "--alpha",
        "0.3",
        *args,
    )
    assert r.code == 2 and "other synthesis" in r.err
    # online synthesis without a bank, or from a generate output, are usage errors
    r = cli("train", src / "data", "--out", tmp_path / "c", "--synth", "online", *TINY)
    assert r.code == 2 and "--bank" in r.err
    r = cli("train", src / "data", "--out", tmp_path / "c", "--alpha", "0.2", *TINY)
    assert r.code == 2 and "--synth online" in r.err
    assert not (tmp_path / "c").exists()
