import numpy as np
import pytest

from sirst_synth.metrics import NATIVE, MetricTotals, pd_fa_curve, score_image


@pytest.fixture(params=[True, False], ids=["native", "numpy"])
def native(request):
    """Every hand-computed case runs on both paths of score_image; where the C kernel was not
    built the native cases skip, never running the numpy path under the native label."""
    if request.param and not NATIVE:
        pytest.skip("the native metrics kernel is not built in this install")
    return request.param


def _summary(pairs, mode="identity", native=True):
    t = MetricTotals()
    for pred, label in pairs:
        t.add(score_image(pred, label, native=native))
    return t.summary(mode)


def test_perfect_prediction(native):
    label = np.zeros((20, 20), np.uint8)
    label[4:7, 4:7] = 1
    label[15, 15] = 1
    m = _summary([(label.copy(), label)], native=native)
    assert (m["IoU"], m["nIoU"], m["Pd"], m["Fa"]) == (1.0, 1.0, 1.0, 0.0)


def test_hand_drawn_iou_niou_pd_fa_and_the_two_fa_modes(native):
    # image 1 (10x10): label = 2x2 at rows 1-2 cols 1-2 (centroid 1.5, 1.5) and one pixel at (8, 8)
    # pred = the same 2x2 shifted right by one (centroid 1.5, 2.5: distance 1, matched),
    #        a 2x2 false alarm at rows 6-7 cols 1-2 (same area 4 as the matched component)
    #        and a 1-pixel false alarm at (4, 8)
    label1 = np.zeros((10, 10), np.uint8)
    label1[1:3, 1:3] = 1
    label1[8, 8] = 1
    pred1 = np.zeros((10, 10), np.uint8)
    pred1[1:3, 2:4] = 1
    pred1[6:8, 1:3] = 1
    pred1[4, 8] = 1
    # image 2 (10x10): label one pixel at (5, 5); pred one pixel at (5, 5)
    label2 = np.zeros((10, 10), np.uint8)
    label2[5, 5] = 1
    pred2 = label2.copy()
    s1 = score_image(pred1, label1, native=native)
    # intersection: (1,2),(2,2) = 2; union: label 5 + pred 9 - 2 = 12
    assert (s1.inter, s1.union, s1.targets, s1.detected) == (2, 12, 2, 1)
    assert s1.fa_pixels == 5  # the unmatched 2x2 (4 px) + the single pixel (1 px)
    assert s1.fa_pixels_dnanet == 1  # the 2x2 has the area value of a matched one: dropped
    ident = _summary([(pred1, label1), (pred2, label2)], "identity", native)
    compat = _summary([(pred1, label1), (pred2, label2)], "dnanet", native)
    assert ident["IoU"] == pytest.approx(3 / 13)
    assert ident["nIoU"] == pytest.approx((2 / 12 + 1.0) / 2)
    assert ident["Pd"] == pytest.approx(2 / 3)
    assert ident["Fa"] == pytest.approx(5 / 200)
    assert compat["Fa"] == pytest.approx(1 / 200)
    assert compat["Pd"] == ident["Pd"]


def test_match_distance_is_strictly_below_3px(native):
    label = np.zeros((20, 20), np.uint8)
    label[10, 10] = 1
    at3 = np.zeros_like(label)
    at3[10, 13] = 1  # exactly 3 px away: a miss and a false alarm (DNA-Net / BasicIRSTD: d < 3)
    s = score_image(at3, label, native=native)
    assert (s.detected, s.fa_pixels) == (0, 1)
    near = np.zeros_like(label)
    near[12, 12] = 1  # sqrt(8) = 2.83 px: detected
    s = score_image(near, label, native=native)
    assert (s.detected, s.fa_pixels) == (1, 0)


def test_one_prediction_matches_one_target_only(native):
    label = np.zeros((10, 10), np.uint8)
    label[5, 4] = 1
    label[5, 6] = 1  # two targets 2 px apart
    pred = np.zeros_like(label)
    pred[5, 5] = 1  # one predicted component 1 px from both
    s = score_image(pred, label, native=native)
    assert (s.targets, s.detected, s.fa_pixels) == (2, 1, 0)


def test_empty_label_and_prediction(native):
    z = np.zeros((4, 4), np.uint8)
    m = _summary([(z, z)], native=native)
    assert (m["IoU"], m["nIoU"], m["Pd"], m["Fa"], m["targets"]) == (0.0, 0.0, 0.0, 0.0, 0)


def test_curve_is_monotone_in_threshold():
    label = np.zeros((16, 16), np.uint8)
    label[3, 3] = 1
    label[12, 12] = 1
    prob = np.zeros((16, 16), np.float32)
    prob[3, 3] = 0.9
    prob[12, 12] = 0.4
    prob[8, 2] = 0.6  # false alarm
    curve = pd_fa_curve([(prob, label)], np.array([0.3, 0.5, 0.7, 0.95]))
    assert [c["Pd"] for c in curve] == [1.0, 0.5, 0.5, 0.0]
    assert [c["Fa"] * 256 for c in curve] == [1.0, 1.0, 0.0, 0.0]


def _three_images():
    """(stem, prediction, label), 8x8 each: A hits its 2x2 target and adds one stray pixel;
    B misses a one-pixel target; C has no target and a 3-pixel false alarm."""
    a_label = np.zeros((8, 8), np.uint8)
    a_label[1:3, 1:3] = 1
    a_pred = a_label.copy()
    a_pred[6, 6] = 1
    b_label = np.zeros((8, 8), np.uint8)
    b_label[2, 2] = 1
    c_pred = np.zeros((8, 8), np.uint8)
    c_pred[5, 1:4] = 1
    return [("A", a_pred, a_label), ("B", np.zeros((8, 8), np.uint8), b_label),
            ("C", c_pred, np.zeros((8, 8), np.uint8))]  # fmt: skip


def test_per_image_rows_are_the_counts_behind_the_totals(native):
    from sirst_synth.metrics import most_false_alarms

    t = MetricTotals()
    cases = _three_images()
    for _, pred, label in cases:
        t.add(score_image(pred, label, native=native))
    rows = t.per_image([stem for stem, _, _ in cases])
    assert rows == [
        {"image": "A", "IoU": 0.8, "intersection": 4, "union": 5, "targets": 1, "detected": 1,
         "fa_pixels": 1, "pixels": 64},
        {"image": "B", "IoU": 0.0, "intersection": 0, "union": 1, "targets": 1, "detected": 0,
         "fa_pixels": 0, "pixels": 64},
        {"image": "C", "IoU": 0.0, "intersection": 0, "union": 3, "targets": 0, "detected": 0,
         "fa_pixels": 3, "pixels": 64},
    ]  # fmt: skip
    assert t.summary()["IoU"] == 4 / 9  # summed: C's false alarm weighs on the split's IoU
    assert most_false_alarms(rows) == {"image": "C", "fa_pixels": 3, "share": 0.75}
    assert most_false_alarms(rows[1:2]) is None
    with pytest.raises(ValueError):
        t.per_image(["A", "B"])  # a stem per score, never a silent shift


def test_evaluate_writes_the_per_image_csv_and_names_the_worst_image(tmp_path, cli):
    import json

    import cv2
    from conftest import one_line, write_dataset

    cases = _three_images()
    root = write_dataset(tmp_path / "ds", {s: (np.full((8, 8), 40, np.uint8), lab * 255)
                                           for s, _, lab in cases}, [], ["A", "B", "C"])  # fmt: skip
    preds = tmp_path / "preds"
    preds.mkdir()
    for stem, pred, _ in cases:
        assert cv2.imwrite(str(preds / f"{stem}.png"), pred * 255)
    out = tmp_path / "per-image.csv"
    args = ("evaluate", root, "--pred-dir", preds, "--per-image", out, "--json")
    r = cli(*args)
    assert r.code == 0, r.err
    assert out.read_text() == (
        "image,IoU,intersection,union,targets,detected,fa_pixels,pixels\n"
        "A,0.800000,4,5,1,1,1,64\n"
        "B,0.000000,0,1,1,0,0,64\n"
        "C,0.000000,0,3,0,0,3,64\n"
    )
    assert json.loads(r.out)["most_false_alarms"] == {"image": "C", "fa_pixels": 3, "share": 0.75}
    r = cli(*args)
    assert r.code == 2
    assert "--per-image" in one_line(r.err) and str(out) in r.err
