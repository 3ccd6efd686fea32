"""Target copy-paste on hand-made arrays, and through generate and online synthesis."""

import cv2
import numpy as np
import pytest
from conftest import demo_with_bank, read_jsonl, tree_hashes

from sirst_synth.paste import (
    PasteSettings,
    find_position,
    paste_one,
    paste_sample,
    target_signal,
    transform,
)
from sirst_synth.recipe import SynthRecipe


def _labels(mask):
    return cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[1]


def test_signal_is_the_target_minus_its_ring_median():
    image = np.full((12, 12), 50, np.uint8)
    image[0, 0] = 200  # far from the target: not in its ring
    mask = np.zeros((12, 12), np.uint8)
    mask[5:7, 5:7] = 1
    image[5:7, 5:7] = [[90, 80], [70, 60]]
    signal, fp = target_signal(image, mask, _labels(mask), 0, ring=2)
    assert fp.all() and fp.shape == (2, 2)
    assert signal.tolist() == [[40, 30], [20, 10]]


def test_a_2x2_target_pasted_at_a_known_place():
    dest = np.full((10, 10), 100, np.uint8)
    dest_mask = np.zeros((10, 10), np.uint8)
    signal = np.array([[40, 30], [20, 10]], np.float32)
    fp = np.ones((2, 2), bool)
    out, out_mask = paste_one(dest, dest_mask, signal, fp, (3, 6))
    expected = dest.copy()
    expected[3:5, 6:8] = [[140, 130], [120, 110]]
    assert out.tolist() == expected.tolist()
    assert out_mask.sum() == 4 and out_mask[3:5, 6:8].all()
    # clipped at 255
    bright, _ = paste_one(np.full((4, 4), 250, np.uint8), dest_mask[:4, :4], signal, fp, (0, 0))
    assert bright[0, 0] == 255 and bright[1, 1] == 255
    assert dest.sum() == 100 * 100  # inputs untouched


def test_rotation_flip_and_scale_of_a_1x3_target():
    signal = np.array([[1, 2, 3]], np.float32)
    fp = np.ones((1, 3), bool)
    s, f = transform(signal, fp, False, 90, 1.0)  # counter-clockwise: the last column on top
    assert s.tolist() == [[3], [2], [1]] and f.shape == (3, 1)
    s, _ = transform(signal, fp, True, 0, 1.0)
    assert s.tolist() == [[3, 2, 1]]
    s, _ = transform(signal, fp, False, 180, 1.0)
    assert s.tolist() == [[3, 2, 1]]
    s, f = transform(signal, fp, False, 0, 2.0)
    assert f.shape == (2, 6) and f.all()
    assert s[0, 0] == pytest.approx(1.0) and s[0, -1] == pytest.approx(3.0)
    # scaled down to nothing: refused (drawn again by the caller)
    tiny = transform(np.ones((1, 1), np.float32), np.ones((1, 1), bool), False, 0, 0.3)
    assert tiny is not None  # one pixel stays one pixel at round(0.3) -> max(1, 0)
    split = np.array([[1, 0, 0, 0, 1]], bool)  # not one component
    assert transform(split.astype(np.float32), split, False, 0, 1.0) is None


def test_the_distance_and_border_rules():
    rng = np.random.default_rng(0)
    taken = [(4, 4, 6, 6)]
    for _ in range(200):
        y, x = find_position((20, 20), (2, 2), taken, 3, rng)
        assert 0 <= y <= 18 and 0 <= x <= 18
        # 3 px clear of the taken box on at least one axis
        assert y + 2 + 3 <= 4 or y >= 6 + 3 or x + 2 + 3 <= 4 or x >= 6 + 3
    # no room: None after a bounded number of tries, never an endless loop
    assert find_position((8, 8), (2, 2), [(0, 0, 8, 8)], 0, rng) is None
    assert find_position((4, 4), (5, 1), [], 0, rng) is None  # larger than the image


def test_paste_changes_nothing_outside_the_footprints():
    rng = np.random.default_rng(1)
    dest = rng.integers(40, 60, (64, 64)).astype(np.uint8)
    dest_mask = np.zeros((64, 64), np.uint8)
    dest_mask[10:12, 10:12] = 1
    src = np.full((32, 32), 50, np.uint8)
    src_mask = np.zeros((32, 32), np.uint8)
    src_mask[8:11, 8:11] = 1
    src[8:11, 8:11] = 150

    def load(i):
        return "src", src, src_mask

    settings = PasteSettings(k=(3, 3), scale=(1.0, 1.0), where="any", distance=4)
    out, out_mask, pastes, given_up = paste_sample(
        dest, dest_mask, [(0, 0)], load, settings, np.random.default_rng(5)
    )
    assert len(pastes) == 3 and given_up == 0
    added = (out_mask == 1) & (dest_mask == 0)
    assert added.sum() == 27  # three 3 x 3 targets
    assert (out[~added] == dest[~added]).all()  # nothing else changed
    assert (out[added].astype(int) - dest[added] == 100).all()  # the signal, 150 - 50
    assert cv2.connectedComponents(out_mask, connectivity=8)[0] == 5  # 1 + 3 + background
    # the same generator gives the same sample
    again = paste_sample(dest, dest_mask, [(0, 0)], load, settings, np.random.default_rng(5))
    assert (again[0] == out).all() and again[2] == pastes


def test_paste_recipe_values():
    from sirst_synth.errors import UsageError
    from sirst_synth.recipe import load_recipe

    r = load_recipe(SynthRecipe, "mode: paste\nk: [2, 4]\nscale: [0.5, 2]\nwhere: any\n", "x", {})
    assert r.k == (2, 4) and r.scale == (0.5, 2.0) and r.where == "any"
    for text, key in (("k: [3, 1]", "k"), ("k: [0, 2]", "k"), ("scale: [0, 1]", "scale"),
                      ("where: sky", "where"), ("distance: -1", "distance")):  # fmt: skip
        with pytest.raises(UsageError, match=key):
            load_recipe(SynthRecipe, text, "r.yaml", {})


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    return demo_with_bank(tmp_path_factory.mktemp("paste"), images=8, seed=6)


def _paste_recipe(tmp_path, alpha=0.0):
    path = tmp_path / "paste.yaml"
    path.write_text(f"mode: paste\nalpha: {alpha}\nk: [1, 2]\nwhere: any\nseed: 3\n")
    return path


@pytest.mark.slow
def test_generate_paste_is_worker_independent_with_provenance(src, tmp_path, cli):
    recipe = _paste_recipe(tmp_path)
    for name, workers in (("a", "1"), ("b", "2")):
        r = cli("generate", src / "data", "--bank", src / "bank.h5", "--out", tmp_path / name,
                "--recipe", recipe, "--count", "6", "--workers", workers, "-q")  # fmt: skip
        assert r.code == 0, r.err
    assert tree_hashes(tmp_path / "a" / "images") == tree_hashes(tmp_path / "b" / "images")
    rows = read_jsonl(tmp_path / "a" / "manifest.jsonl")
    dev = [r for r in rows if r["split"] == "development"]
    assert len(dev) == 6 and all(r["image"].endswith("_paste.png") for r in dev)
    assert len({r["group"] for r in dev}) == 6  # every paste sample is its own group
    originals = {r["source"] for r in rows if r["split"] == "original"}
    for r in dev:
        assert 1 <= len(r["paste"]) + r.get("given_up", 0) <= 2
        for p in r["paste"]:
            assert p["source"] in originals and p["angle"] in (0, 90, 180, 270)
            assert set(p) == {"source", "target", "at", "scale", "flip", "angle"}
        # alpha 0: outside the pasted targets the sample is its original, pixel for pixel
        sample = cv2.imread(str(tmp_path / "a" / r["image"]), cv2.IMREAD_UNCHANGED)
        smask = cv2.imread(str(tmp_path / "a" / r["mask"]), cv2.IMREAD_UNCHANGED) > 0
        orig = next(o for o in rows if o["split"] == "original" and o["source"] == r["source"])
        oimg = cv2.imread(str(tmp_path / "a" / orig["image"]), cv2.IMREAD_UNCHANGED)
        omask = cv2.imread(str(tmp_path / "a" / orig["mask"]), cv2.IMREAD_UNCHANGED) > 0
        outside = ~(smask & ~omask)
        assert (sample[outside] == oimg[outside]).all()
        assert (smask >= omask).all()  # the original targets stay labelled
    r = cli("verify", tmp_path / "a", "-q")
    assert r.code == 0, r.err
    sheet = tmp_path / "sheet.png"
    r = cli("preview", tmp_path / "a", "--sheet", sheet, "--targets", "3")
    assert r.code == 0, r.err
    img = cv2.imread(str(sheet))
    assert img.shape == (20 + 3 * 136, 8 * 136, 3)  # header + 3 rows of 8 tiles
    # a provenance record naming another dataset's image is a verify problem
    from sirst_synth.io.manifest import ManifestRow
    from sirst_synth.io.verify import _paste_problems

    bad = ManifestRow.from_json({**dev[0], "paste": [{**dev[0]["paste"][0], "source": "zz"}]})
    probs = _paste_problems([ManifestRow.from_json(r) for r in rows] + [bad])
    assert len(probs) == 1 and "'zz', not a training image" in probs[0]


@pytest.mark.slow
def test_online_paste_epoch_equals_generate_pass(src, tmp_path, cli):
    from sirst_synth.io.bank import read_bank_index
    from sirst_synth.io.files import read_gray, read_mask
    from sirst_synth.io.samples import split_items
    from sirst_synth.recipe import load_recipe
    from sirst_synth.targets import components
    from sirst_synth.train.data import OnlineSynthSet

    recipe_path = _paste_recipe(tmp_path, alpha=0.1)
    out = tmp_path / "g"
    r = cli("generate", src / "data", "--bank", src / "bank.h5", "--out", out,
            "--recipe", recipe_path, "-q")  # fmt: skip
    assert r.code == 0, r.err
    recipe = load_recipe(SynthRecipe, recipe_path.read_text(), "x", {})
    items, _ = split_items(src / "data", "train")
    counts = [components(read_mask(it.mask)).count for it in items]
    bank = read_bank_index(src / "bank.h5")
    ds = OnlineSynthSet(items, bank, recipe, 0.3, 0.2, None, 0, counts)
    ds.set_epoch(0)
    rows = {r["image"]: r for r in read_jsonl(out / "manifest.jsonl")}
    made = [ds.sample(i) for i in range(len(ds)) if ds.entries[i][1] is not None]
    assert len(made) == len(items)
    for image, mask, group in made:
        stem = group.split(":")[0]
        row = rows[f"images/{stem}_syn0_paste.png"]
        assert group == row["group"]
        assert (read_gray(out / row["image"]) == image).all()
        assert (read_mask(out / row["mask"]) == mask).all()
