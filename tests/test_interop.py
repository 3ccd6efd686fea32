"""Drop-in for BasicIRSTD and DNA-Net: both split layouts, --test-gray, --resize, Fa modes,
and evaluation that needs only what it scores."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import write_dataset
from PIL import Image

from sirst_synth.convert import resize_bilinear, resize_nearest
from sirst_synth.io.files import read_gray


def _gen(cli, src, bank, out, *extra):
    return cli("generate", src, "--bank", bank, "--out", out, "-q", *extra)


def test_both_split_layouts_by_default_and_consistent(demo_root, demo_bank, tmp_path, cli):
    out = tmp_path / "MySet"
    assert _gen(cli, demo_root, demo_bank, out, "--count", "6").code == 0
    b_train = (out / "img_idx" / "train_MySet.txt").read_text()
    b_test = (out / "img_idx" / "test_MySet.txt").read_text()
    assert (out / "50_50" / "train.txt").read_text() == b_train
    assert (out / "50_50" / "test.txt").read_text() == b_test
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert b_train.split() == [r["image"][7:-4] for r in rows if r["split"] != "test"]
    assert len(b_train.split()) == 6 + 6  # 6 originals (12 demo images, half train) + 6 samples
    card = (out / "README.md").read_text()
    assert "img_idx/train_MySet.txt" in card and "50_50/train.txt" in card
    assert (
        "copied byte for byte" in card and "| test (copied byte for byte) | 6 of 6 listed |" in card
    )
    # --split-files narrows
    one = tmp_path / "One"
    assert _gen(cli, demo_root, demo_bank, one, "--count", "2", "--split-files", "dnanet").code == 0
    assert (one / "50_50" / "train.txt").is_file() and not (one / "img_idx").exists()


def test_name_must_be_the_folder_name(demo_root, demo_bank, tmp_path, cli):
    r = _gen(cli, demo_root, demo_bank, tmp_path / "A", "--name", "B")
    assert r.code == 2 and "folder name 'A'" in r.err and not (tmp_path / "A").exists()
    assert _gen(cli, demo_root, demo_bank, tmp_path / "A", "--name", "A", "--count", "1").code == 0


def test_test_gray_converts_test_images_like_training_images(tmp_path, cli):
    rng = np.random.default_rng(0)
    pairs = {}
    for stem in ("a", "b", "c", "d"):
        img = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)  # colour
        mask = np.zeros((40, 48), np.uint8)
        mask[10:12, 20:22] = 1  # a 0/1 mask
        pairs[stem] = (img, mask)
    src = write_dataset(tmp_path / "src", pairs, ["a", "b"], ["c", "d"])
    assert (
        cli("build-noise-bank", src, "--bank", tmp_path / "bank.h5", "--sigma", "1e9", "-q").code
        == 0
    )
    out = tmp_path / "G"
    r = _gen(cli, src, tmp_path / "bank.h5", out, "--test-gray", "--count", "0")
    assert r.code == 0, r.err
    for stem in ("a", "c"):  # a training and a test image: the same conversion
        got = cv2.imread(str(out / "images" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert got.ndim == 2 and np.array_equal(got, read_gray(src / "images" / f"{stem}.png"))
        m = cv2.imread(str(out / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert set(np.unique(m)) == {0, 255}
    assert "`--test-gray`" in (out / "README.md").read_text()
    assert cli("verify", out, "-q").code == 0
    # without the flag the test image stays the colour file, byte for byte
    plain = tmp_path / "P"
    assert _gen(cli, src, tmp_path / "bank.h5", plain, "--count", "0").code == 0
    assert (plain / "images" / "c.png").read_bytes() == (src / "images" / "c.png").read_bytes()


def test_card_lists_skipped_pairs_and_split_sizes(tmp_path, cli):
    img = np.random.default_rng(2).integers(85, 96, (32, 32), dtype=np.uint8)  # flat + noise
    mask = np.zeros((32, 32), np.uint8)
    mask[5, 5] = 255
    pairs = {s: (img, mask) for s in ("a", "b", "c")}
    pairs["bad"] = (img, np.zeros((20, 20), np.uint8))
    src = write_dataset(tmp_path / "src", pairs, ["a", "b"], ["c", "bad"])
    assert cli("build-noise-bank", src, "--bank", tmp_path / "bank.h5", "-q").code == 0
    r = _gen(cli, src, tmp_path / "bank.h5", tmp_path / "O", "--on-error", "skip")
    assert r.code == 0, r.err
    card = (tmp_path / "O" / "README.md").read_text()
    assert "| test (copied byte for byte) | 1 of 2 listed |" in card
    assert "- `bad`: " in card and "mask is 20x20" in card


def test_resize_nearest_equals_pil():
    rng = np.random.default_rng(1)
    for h, w in ((512, 512), (300, 417), (100, 123)):
        a = rng.integers(0, 256, (h, w), dtype=np.uint8)
        ref = np.asarray(Image.fromarray(a).resize((256, 256), Image.NEAREST))
        assert np.array_equal(resize_nearest(a, 256), ref)
    # every size from 64 to 255 and several sources, masks (mode L) and probabilities (mode F)
    for size in range(64, 256):
        for h, w in ((427, 300), (256, 256), (1000, 17)):
            m = (rng.random((h, w)) > 0.99).astype(np.uint8)
            ref = np.asarray(Image.fromarray(m).resize((size, size), Image.NEAREST))
            assert np.array_equal(resize_nearest(m, size), ref), (size, h, w)
        p = rng.random((123, 77)).astype(np.float32)
        ref = np.asarray(Image.fromarray(p, mode="F").resize((size, size), Image.NEAREST))
        assert np.array_equal(resize_nearest(p, size), ref), size
        ref = np.asarray(Image.fromarray(a).resize((256, 256), Image.BILINEAR))
        assert np.array_equal(resize_bilinear(a, 256), ref)


def test_evaluate_resize_256_by_hand(tmp_path, cli):
    """512x512 label with a 4x4 target at rows/cols 100..103; the prediction holds that target
    and a 2x2 false alarm at 300..301. At 256 (nearest, centre sampling: source 2i+1) the
    target is rows/cols 50..51 (2x2), the false alarm is row/col 150 (1 pixel).
    IoU = 4 / 5, Pd = 1, Fa = 1 / (256 * 256)."""
    label = np.zeros((512, 512), np.uint8)
    label[100:104, 100:104] = 255
    pred = label.copy()
    pred[300:302, 300:302] = 255
    src = write_dataset(
        tmp_path / "src", {"x": (np.zeros((512, 512), np.uint8), label)}, [], ["x"], train_text=""
    )
    (tmp_path / "pred").mkdir()
    cv2.imwrite(str(tmp_path / "pred" / "x.png"), pred)
    r = cli("evaluate", src, "--pred-dir", tmp_path / "pred", "--resize", "256", "--json")
    assert r.code == 0, r.err
    m = json.loads(r.out)
    assert m["IoU"] == pytest.approx(4 / 5) and m["Pd"] == 1.0
    assert m["Fa"] == pytest.approx(1 / 65536) and m["resize"] == 256
    # at the native size: IoU 16 / 20, Fa 4 / 512^2
    m = json.loads(cli("evaluate", src, "--pred-dir", tmp_path / "pred", "--json").out)
    assert m["IoU"] == pytest.approx(16 / 20) and m["Fa"] == pytest.approx(4 / 512**2)


def test_fa_compat_names(tmp_path, cli, demo_root):
    r = cli("evaluate", demo_root, "--pred-dir", tmp_path, "--fa-compat", "basicirstd")
    assert r.code == 2 and "--fa-compat dnanet" in r.err and "identity" in r.err
    r = cli("evaluate", demo_root, "--pred-dir", tmp_path, "--fa-compat", "other")
    assert r.code == 2 and "identity, dnanet" in r.err


def test_evaluate_needs_only_what_it_scores(tmp_path, cli):
    label = np.zeros((16, 16), np.uint8)
    label[4:6, 4:6] = 255
    pairs = {s: (np.zeros((16, 16), np.uint8), label) for s in ("a", "b", "c")}
    pred = tmp_path / "pred"
    pred.mkdir()
    for s in pairs:
        cv2.imwrite(str(pred / f"{s}.png"), label)
    # a test split only (no training split file)
    src = write_dataset(tmp_path / "t", pairs, [], ["b", "c"], train_text="")
    (src / "50_50" / "train.txt").unlink()
    r = cli("evaluate", src, "--pred-dir", pred, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["images"] == 2
    # no split files at all: --split all scores every pair; --split test says what to do
    (src / "50_50" / "test.txt").unlink()
    r = cli("evaluate", src, "--pred-dir", pred, "--split", "all", "--json")
    assert r.code == 0 and json.loads(r.out)["images"] == 3 and json.loads(r.out)["IoU"] == 1.0
    r = cli("evaluate", src, "--pred-dir", pred)
    assert r.code == 1 and "--split all" in r.err
    # a stem in both splits does not stop scoring the test split
    src2 = write_dataset(tmp_path / "u", pairs, ["a", "b"], ["b", "c"])
    r = cli("evaluate", src2, "--pred-dir", pred, "--json")
    assert r.code == 0 and json.loads(r.out)["images"] == 2


def _pred_case(tmp_path, cli, pred: np.ndarray, name: str):
    label = np.zeros((16, 16), np.uint8)
    label[4:6, 4:6] = 255
    root = tmp_path / name
    src = write_dataset(
        root / "src", {"x": (np.zeros((16, 16), np.uint8), label)}, [], ["x"], train_text=""
    )
    (root / "pred").mkdir()
    assert cv2.imwrite(str(root / "pred" / "x.png"), pred)
    return cli("evaluate", src, "--pred-dir", root / "pred", "--json")


def _shape(value: int, dtype, channels: int = 0) -> np.ndarray:
    p = np.zeros((16, 16), dtype)
    p[4:6, 4:6] = value
    return np.dstack([p] * channels) if channels else p


# One rule reads every prediction format: case -> (prediction, exit code, IoU or stderr text).
PREDICTION_CASES = {
    "8-bit 0/255": (_shape(255, np.uint8), 0, 1.0),
    "8-bit 0/1": (_shape(1, np.uint8), 0, 1.0),
    "16-bit 0/1": (_shape(1, np.uint16), 0, 1.0),
    "16-bit 0/65535": (_shape(65535, np.uint16), 0, 1.0),
    "16-bit 0/255": (_shape(255, np.uint16), 0, 1.0),
    "16-bit probability": (_shape(40000, np.uint16) + 100, 0, 1.0),
    "RGB gray 0/255": (_shape(255, np.uint8, 3), 0, 1.0),
    "RGBA gray 0/255": (_shape(255, np.uint8, 4), 0, 1.0),
    "8-bit probability below 0.5": (_shape(100, np.uint8), 0, 0.0),
    "RGB with different channels": (
        np.dstack([_shape(255, np.uint8), _shape(0, np.uint8), _shape(255, np.uint8)]),
        1,
        "channels differ is ambiguous",
    ),
    "16-bit never above 255": (_shape(200, np.uint16) + 3, 1, "never exceed 255 is ambiguous"),
}


@pytest.mark.parametrize("case", list(PREDICTION_CASES))
def test_every_prediction_format_scores_the_same(tmp_path, cli, case):
    pred, code, expected = PREDICTION_CASES[case]
    r = _pred_case(tmp_path, cli, pred, "c")
    assert r.code == code, r.err
    if code == 0:
        assert json.loads(r.out)["IoU"] == expected
    else:
        lines = r.err.strip().splitlines()
        assert (
            expected in r.err and "x.png" in r.err and "Traceback" not in r.err and len(lines) <= 2
        )
