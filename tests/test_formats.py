"""Masks are read as their data means: alpha dropped, two levels or refused in one line."""

import cv2
import numpy as np
import pytest

from sirst_synth.convert import to_binary_mask
from sirst_synth.errors import DataError
from sirst_synth.io.files import read_mask


def test_two_level_masks_in_every_form():
    m = np.zeros((4, 5), np.uint8)
    m[1:3, 2] = 1
    for arr in (m, m * 255, m.astype(np.uint16) * 65535, m * 7, m.astype(bool)):
        assert to_binary_mask(arr).tolist() == m.tolist()
    bgr = np.dstack([m * 255] * 3)
    assert to_binary_mask(bgr).tolist() == m.tolist()
    # an opaque RGBA mask: alpha 255 everywhere is transparency, not a frame-wide target
    rgba = np.dstack([m * 255] * 3 + [np.full_like(m, 255)])
    assert to_binary_mask(rgba).tolist() == m.tolist()
    assert to_binary_mask(np.zeros((3, 3), np.uint8)).sum() == 0  # background only


def test_many_level_masks_are_refused():
    blurred = np.array([[0, 10, 0], [10, 255, 10], [0, 10, 0]], np.uint8)
    with pytest.raises(DataError, match="3 levels, not two"):
        to_binary_mask(blurred)


def test_a_jpeg_mask_is_refused_with_the_file_named(tmp_path):
    m = np.zeros((64, 64), np.uint8)
    m[10:14, 10:14] = m[40:43, 50:52] = 255
    path = tmp_path / "mask.jpg"
    cv2.imwrite(str(path), m, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert len(np.unique(cv2.imread(str(path), cv2.IMREAD_UNCHANGED))) > 2  # artefacts
    with pytest.raises(DataError) as err:
        read_mask(path)
    assert str(path) in str(err.value) and "two-level PNG" in str(err.value)


def test_evaluate_refuses_a_jpeg_mask_in_one_line(tmp_path, cli):
    root = tmp_path / "d"
    for sub in ("images", "masks", "50_50"):
        (root / sub).mkdir(parents=True)
    img = np.full((32, 32), 40, np.uint8)
    m = np.zeros((32, 32), np.uint8)
    m[5:9, 5:9] = 255
    cv2.imwrite(str(root / "images" / "a.png"), img)
    cv2.imwrite(str(root / "masks" / "a.jpg"), m, [cv2.IMWRITE_JPEG_QUALITY, 90])
    (root / "50_50" / "test.txt").write_text("a\n")
    pred = tmp_path / "pred"
    pred.mkdir()
    cv2.imwrite(str(pred / "a.png"), m)
    r = cli("evaluate", root, "--pred-dir", pred, "-q")
    assert r.code == 1
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "a.jpg" in lines[0] and "levels, not two" in lines[0]
    assert "Traceback" not in r.err
