"""generate end to end through the command line, on the demo data and the real SIRST v1."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import read_jsonl, tree_hashes
from skimage.measure import label as sk_label

from sirst_synth.io.layouts import open_dataset


def _count_targets(ds_root: Path, stems) -> int:
    ds = open_dataset(ds_root)
    n = 0
    for s in stems:
        m = cv2.imread(str(ds.mask_path(s)), cv2.IMREAD_UNCHANGED)
        m = m if m.ndim == 2 else m.max(axis=2)
        n += int(sk_label(m > 0, connectivity=2).max())
    return n


def _gen(cli, root, bank, out, *extra):
    return cli("generate", root, "--bank", bank, "--out", out, *extra)


def test_generate_demo_counts_manifest_and_workers_identity(demo_root, demo_bank, tmp_path, cli):
    before = tree_hashes(demo_root)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    r1 = _gen(cli, demo_root, demo_bank, tmp_path / "a" / "w1", "--workers", "1", "--json")
    r2 = _gen(cli, demo_root, demo_bank, tmp_path / "b" / "w1", "--workers", "2", "--quiet")
    assert r1.code == 0 and r2.code == 0, r1.err + r2.err
    ds = open_dataset(demo_root)
    targets = _count_targets(demo_root, ds.train)
    res = json.loads(r1.out)
    assert res["development"] == 4 * targets
    assert (res["originals"], res["test"]) == (len(ds.train), len(ds.test))
    # the JSON holds every field of the summary the table is made from
    assert res["passes"] == 1 and res["images_without_target"] == 0 and res["resumed_jobs"] == 0
    h1, h2 = tree_hashes(tmp_path / "a" / "w1"), tree_hashes(tmp_path / "b" / "w1")
    assert h1 == h2  # byte-identical whatever --workers is
    rows = read_jsonl(tmp_path / "a" / "w1" / "manifest.jsonl")
    assert len(rows) == len(ds.train) + 4 * targets + len(ds.test)
    dev = [r for r in rows if r["split"] == "development"]
    for r in dev[:20]:
        assert {
            "image",
            "mask",
            "split",
            "source",
            "noise",
            "alpha",
            "s",
            "target",
            "center",
            "window",
            "angle",
            "sha256",
        } <= set(r)
        r0, c0, r1_, c1 = r["window"]
        assert (r1_ - r0, c1 - c0) == (3, 3) and r["noise"]["source"] != r["source"]
        assert r["alpha"] == 0.1 and r["angle"] in (0, 90, 180, 270)
    # each dev image differs from its angle-0 sibling only inside the window
    by_group = {}
    for r in dev:
        by_group.setdefault(r["group"], {})[r["angle"]] = r
    g = next(iter(by_group.values()))
    base = cv2.imread(str(tmp_path / "a" / "w1" / g[0]["image"]), cv2.IMREAD_UNCHANGED)
    for angle in (90, 180, 270):
        img = cv2.imread(str(tmp_path / "a" / "w1" / g[angle]["image"]), cv2.IMREAD_UNCHANGED)
        r0, c0, r1_, c1 = g[angle]["window"]
        outside = np.ones(base.shape, bool)
        outside[r0:r1_, c0:c1] = False
        assert np.array_equal(img[outside], base[outside])
        assert np.array_equal(img[r0:r1_, c0:c1], np.rot90(base[r0:r1_, c0:c1], angle // 90))
    # test split is copied byte for byte; split files list every stem
    for stem in ds.test:
        assert (tmp_path / "a" / "w1" / "images" / f"{stem}.png").read_bytes() == ds.image_path(
            stem
        ).read_bytes()
    train_list = (tmp_path / "a" / "w1" / "img_idx" / "train_w1.txt").read_text().split()
    assert len(train_list) == len(ds.train) + 4 * targets
    assert (tmp_path / "a" / "w1" / "img_idx" / "test_w1.txt").read_text().split() == list(ds.test)
    assert "alpha: 0.1" in (tmp_path / "a" / "w1" / "recipe.yaml").read_text()
    assert (
        f"| development (synthesised) | {4 * targets} |"
        in (tmp_path / "a" / "w1" / "README.md").read_text()
    )
    assert cli("verify", tmp_path / "a" / "w1").code == 0
    assert tree_hashes(demo_root) == before


def test_generate_reads_its_own_output_and_dnanet_layout(demo_root, demo_bank, tmp_path, cli):
    r = _gen(
        cli,
        demo_root,
        demo_bank,
        tmp_path / "d",
        "--split-files",
        "dnanet",
        "--count",
        "10",
        "--seed",
        "5",
        "--json",
    )
    assert r.code == 0, r.err
    assert json.loads(r.out)["development"] == 10
    ds = open_dataset(tmp_path / "d")
    assert ds.layout == "dnanet" and len(ds.train) == 10 + len(open_dataset(demo_root).train)


def test_count_beyond_the_pool_draws_fresh_noise(demo_root, demo_bank, tmp_path, cli):
    ds = open_dataset(demo_root)
    pool = 4 * _count_targets(demo_root, ds.train)
    r = _gen(cli, demo_root, demo_bank, tmp_path / "big", "--count", pool + 6, "--json")
    assert r.code == 0, r.err
    rows = read_jsonl(tmp_path / "big" / "manifest.jsonl")
    dev = [x for x in rows if x["split"] == "development"]
    assert len(dev) == pool + 6 and {x["pass"] for x in dev} == {0, 1}
    assert len({x["image"] for x in dev}) == pool + 6


def test_recipe_file_and_flag_override(demo_root, demo_bank, tmp_path, cli):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("alpha: 0.3\ns: 5\ncount: 8\n")
    r = _gen(cli, demo_root, demo_bank, tmp_path / "o", "--recipe", recipe, "--s", "1", "--json")
    assert r.code == 0, r.err
    written = (tmp_path / "o" / "recipe.yaml").read_text()
    assert "alpha: 0.3" in written and "s: 1" in written and "count: 8" in written
    rows = read_jsonl(tmp_path / "o" / "manifest.jsonl")
    dev = [x for x in rows if x["split"] == "development"]
    assert len(dev) == 8 and all(x["s"] == 1 and x["alpha"] == 0.3 for x in dev)


def test_preview_sheet(demo_root, demo_bank, tmp_path, cli):
    assert (
        cli("generate", demo_root, "--bank", demo_bank, "--out", tmp_path / "o", "--quiet").code
        == 0
    )
    r = cli("preview", tmp_path / "o", "--sheet", tmp_path / "sheet.png", "--targets", "3")
    assert r.code == 0, r.err
    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    assert sheet.shape == (20 + 3 * 136, 6 * 136, 3)


@pytest.mark.slow
def test_real_sirst_v1_end_to_end(sirst_root, tmp_path, cli):
    before = tree_hashes(sirst_root)
    bank = tmp_path / "bank.h5"
    r = cli("build-noise-bank", sirst_root, "--bank", bank, "--json")
    assert r.code == 0, r.err
    b = json.loads(r.out)
    assert b["images"] == 341 and b["regions"] == 341 * 64 and b["accepted"] > 0
    ds = open_dataset(sirst_root)
    assert ds.layout == "sirst" and len(ds.train) == 341 and len(ds.test) == 86
    # The published SIRST v1 has one test pair whose mask (592x400) is not the image's size (325x220).
    r = cli("generate", sirst_root, "--bank", bank, "--out", tmp_path / "strict", "--workers", "2")
    assert r.code == 1 and "Misc_111_pixels0.png: mask is 592x400 but the image is 325x220" in r.err
    assert "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1
    r = _gen(
        cli, sirst_root, bank, tmp_path / "full", "--workers", "2", "--json", "--on-error", "skip"
    )
    assert r.code == 0, r.err
    res = json.loads(r.out)
    assert res["development"] == 4 * _count_targets(sirst_root, ds.train)
    assert (
        [s for s, _ in res["skipped"]] == ["Misc_111"]
        and res["test"] == 85
        and res["originals"] == 341
    )
    assert cli("verify", tmp_path / "full").code == 0
    # workers 1 vs 2 on a 30-image subset: identical bytes
    split = tmp_path / "sub.txt"
    split.write_text("\r\n".join(ds.train[:30]) + "\r\n")  # Windows line endings are fine
    test_split = tmp_path / "subtest.txt"
    test_split.write_text("\n".join(s for s in ds.test[:6] if s != "Misc_111"))
    for w in ("1", "2"):
        (tmp_path / f"s{w}").mkdir()
        r = _gen(
            cli,
            sirst_root,
            bank,
            tmp_path / f"s{w}" / "sub",
            "--workers",
            w,
            "--train-split",
            split,
            "--test-split",
            test_split,
            "--allow-foreign-bank",
            "--quiet",
        )
        assert r.code == 0, r.err
    assert tree_hashes(tmp_path / "s1") == tree_hashes(tmp_path / "s2")
    assert tree_hashes(sirst_root) == before


def test_demo_dataset_command_is_deterministic(tmp_path, cli):
    assert cli("demo-dataset", tmp_path / "a", "--images", "6", "--quiet").code == 0
    assert cli("demo-dataset", tmp_path / "b", "--images", "6", "--quiet").code == 0
    assert tree_hashes(tmp_path / "a") == tree_hashes(tmp_path / "b")
    ds = open_dataset(tmp_path / "a")
    assert ds.layout == "dnanet" and len(ds.train) == 3 and len(ds.test) == 3
    img = cv2.imread(str(ds.image_path(ds.train[0])), cv2.IMREAD_UNCHANGED)
    assert img.shape == (256, 256) and img.dtype == np.uint8
    masks = [cv2.imread(str(ds.mask_path(s)), cv2.IMREAD_UNCHANGED) for s in ds.train + ds.test]
    for m in masks:
        n = sk_label(m > 0, connectivity=2).max()
        assert 1 <= n <= 3 and set(np.unique(m)) <= {0, 255}
    shutil.rmtree(tmp_path / "b")


def test_json_out_equals_json_for_every_command_that_has_it(demo_root, demo_bank, tmp_path, cli):
    """--json-out writes exactly what --json prints (one summary feeds the table and the JSON)."""
    runs = {
        "bank": ["build-noise-bank", demo_root, "--bank", tmp_path / "b.h5"],
        "generate": [
            "generate",
            demo_root,
            "--bank",
            demo_bank,
            "--out",
            tmp_path / "g",
            "--count",
            "3",
        ],
        "verify": ["verify", tmp_path / "g"],
        "demo": ["demo-dataset", tmp_path / "d", "-n", "4"],
    }
    for name, args in runs.items():
        r = cli(*args, "--json", "--json-out", tmp_path / f"{name}.json")
        assert r.code == 0, (name, r.err)
        assert json.loads((tmp_path / f"{name}.json").read_text()) == json.loads(r.out), name
    assert json.loads((tmp_path / "generate.json").read_text())["development"] == 3
    r = cli("verify", tmp_path / "g", "--json-out", tmp_path / "verify.json")
    assert r.code == 2 and "--overwrite" in r.err  # an existing file is not replaced


def test_recipe_values_the_bank_replaces_are_reported(demo_root, demo_bank, tmp_path, cli):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("sigma: 10\ngrid: 8\n")
    r = cli(
        "generate",
        demo_root,
        "--bank",
        demo_bank,
        "--out",
        tmp_path / "o",
        "--recipe",
        recipe,
        "--count",
        "2",
        "--json",
    )
    assert r.code == 0, r.err
    assert json.loads(r.out)["replaced_by_bank"] == ["sigma 10.0 -> 50.0"]
    assert "sigma 10.0 -> 50.0" in r.err
    assert "sigma: 50.0" in (tmp_path / "o" / "recipe.yaml").read_text()


def test_source_names_that_samples_would_take_are_refused():
    """Sample names read back uniquely (stem, pass, target, angle), so only a source stem of
    the form <training stem>_syn<p>_t<t>_r<a> (or _n2n), or a stem listed twice, can collide."""
    from sirst_synth.errors import UsageError
    from sirst_synth.generate import _check_unique_names

    _check_unique_names(["a", "a_syn0_t0_r0x", "b_syn0_t0_r0", "a_syn_t0_r0"], ["c"])
    for train, test in (
        (["a", "a_syn3_t1_r90"], []),
        (["a", "a_syn12_n2n"], []),
        (["a"], ["a_syn0_t0_r0"]),
        (["a"], ["a"]),
    ):
        with pytest.raises(UsageError, match="would be written twice"):
            _check_unique_names(train, test)
