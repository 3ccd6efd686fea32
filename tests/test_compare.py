"""compare: two models on one split, a paired bootstrap over its images."""

import json

import cv2
import numpy as np
from conftest import write_dataset


def _square(y, x, side=4):
    m = np.zeros((32, 32), np.uint8)
    m[y : y + side, x : x + side] = 255
    return m


def test_compare_two_prediction_folders_by_hand(tmp_path, cli):
    """Three test images with one 4x4 target each (16 pixels). A predicts them exactly; B
    predicts image t0 exactly, t1 as the left half (8 of 16) and misses t2. IoU(A) = 48/48,
    IoU(B) = (16 + 8 + 0) / (16 + 16 + 16) = 0.5, so A - B = 0.5. A resample of the three
    images holds k copies of t1 and j of t2: B's IoU is (16(3-k-j) + 8k) / 48 per image drawn,
    so A - B lies in [0, 1]; it is 0 only when only t0 is drawn and 1 only when only t2 is."""
    rng = np.random.default_rng(0)
    masks = {"t0": _square(4, 4), "t1": _square(10, 12), "t2": _square(20, 20), "r": _square(2, 2)}
    pairs = {s: (rng.integers(0, 60, (32, 32)).astype(np.uint8), m) for s, m in masks.items()}
    root = write_dataset(tmp_path / "ds", pairs, ["r"], ["t0", "t1", "t2"])
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    for s in ("t0", "t1", "t2"):
        cv2.imwrite(str(a / f"{s}.png"), masks[s])
    half = masks["t1"].copy()
    half[:, 14:] = 0
    cv2.imwrite(str(b / "t0.png"), masks["t0"])
    cv2.imwrite(str(b / "t1.png"), half)
    cv2.imwrite(str(b / "t2.png"), np.zeros((32, 32), np.uint8))
    r = cli("compare", root, a, b, "--json", "--resamples", "2000")
    assert r.code == 0, r.err
    m = json.loads(r.out)
    assert m["images"] == 3 and m["A"]["IoU"] == 1.0 and m["B"]["IoU"] == 0.5
    assert m["IoU_diff"] == 0.5
    lo, hi = m["ci"]
    assert 0.0 <= lo < 0.5 < hi <= 1.0
    assert "does not measure" in m["note"] and "seeds" in m["note"]
    again = json.loads(cli("compare", root, a, b, "--json", "--resamples", "2000").out)
    assert again["ci"] == m["ci"]  # seeded: the same interval
    same = json.loads(cli("compare", root, a, a, "--json").out)
    assert same["IoU_diff"] == 0.0 and same["ci"] == [0.0, 0.0]
    r = cli("compare", root, a, tmp_path / "nothing", "--json")
    assert r.code == 2 and "neither a checkpoint file, a prediction folder nor a" in r.err
    # the same comparison from evaluate's per-image files alone (no predictions, no model)
    for name, folder in (("a.csv", a), ("b.csv", b)):
        r = cli("evaluate", root, "--pred-dir", folder, "--per-image", tmp_path / name, "-q")
        assert r.code == 0, r.err
    r = cli(
        "compare", root, tmp_path / "a.csv", tmp_path / "b.csv", "--json", "--resamples", "2000"
    )
    assert r.code == 0, r.err
    from_csv = json.loads(r.out)
    for key in ("images", "IoU_diff", "ci", "scored_by_one_only"):
        assert from_csv[key] == m[key], key
    assert {k: v for k, v in from_csv["B"].items() if k != "model"} == {
        k: v for k, v in m["B"].items() if k != "model"
    }
    (tmp_path / "bad.csv").write_text("image,IoU\nt0,1.0\n")
    r = cli("compare", root, a, tmp_path / "bad.csv", "--json")
    assert r.code == 1 and "bad.csv: not a per-image file of evaluate --per-image" in r.err


def test_compare_a_checkpoint_with_a_prediction_folder(tmp_path, cli):
    """A checkpoint is scored as evaluate --checkpoint scores it: the same IoU."""
    import pytest

    torch = pytest.importorskip("torch")
    from sirst_synth.train.checkpoint import save_checkpoint, weights_state
    from sirst_synth.train.model import build_model

    rng = np.random.default_rng(1)
    masks = {"t0": _square(4, 4), "t1": _square(10, 12), "r": _square(2, 2)}
    pairs = {s: (rng.integers(0, 60, (32, 32)).astype(np.uint8), m) for s, m in masks.items()}
    root = write_dataset(tmp_path / "ds", pairs, ["r"], ["t0", "t1"])
    torch.manual_seed(0)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(
        ckpt, weights_state("aff-unet-tiny", build_model("aff-unet-tiny").state_dict(), 0.1, 0.1)
    )
    cpu = ["--device", "cpu", "--precision", "fp32"]  # auto would probe: not the same twice
    r = cli("compare", root, ckpt, root / "masks", "--json", *cpu)
    assert r.code == 0, r.err
    m = json.loads(r.out)
    e = json.loads(cli("evaluate", root, "--checkpoint", ckpt, "--json", *cpu).out)
    assert m["A"]["IoU"] == e["IoU"] and m["B"]["IoU"] == 1.0
    assert m["IoU_diff"] == e["IoU"] - 1.0


def test_a_per_image_csv_whose_counts_do_not_fit_names_the_line(tmp_path):
    """Counts must be whole numbers >= 0 that fit together; each bad row names its line."""
    import pytest

    from sirst_synth.errors import DataError
    from sirst_synth.evaluation import read_per_image_csv

    head = "image,IoU,intersection,union,targets,detected,fa_pixels,pixels\n"
    good = "t0,0.5,2,4,1,1,2,100\n"
    path = tmp_path / "p.csv"
    path.write_text(head + good)
    (score,) = read_per_image_csv(path).values()
    assert score == (2, 4, 1, 1, 2, 2, 100)
    for row, why in (
        ("t1,0.5,x,4,1,1,0,100", "intersection 'x' is not a whole number >= 0"),
        ("t1,0.5,-1,4,1,1,0,100", "intersection '-1' is not a whole number >= 0"),
        ("t1,0.5,5,4,1,1,0,100", "intersection 5 > union 4"),
        ("t1,0.5,2,400,1,1,0,100", "union 400 > pixels 100"),
        ("t1,0.5,2,4,1,2,0,100", "detected 2 > targets 1"),
        ("t1,0.5,2,4,1,1,101,100", "fa_pixels 101 > pixels 100"),
        ("t0,0.5,2,4,1,1,2,100", "image 't0' comes twice"),
    ):
        path.write_text(head + good + row + "\n")
        with pytest.raises(DataError) as err:
            read_per_image_csv(path)
        assert str(err.value) == f"{path} line 3: {why}; write it again with evaluate --per-image"
