import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sirst_synth.noise import (
    ACCEPTED,
    REJECT_MEAN,
    REJECT_TARGET,
    REJECT_VAR,
    pick_patch,
    region_pixels,
    scan_regions,
)


def _image():
    img = np.zeros((17, 18), np.uint8)  # 2x2 grid of 8x9 regions; last row/col ignored
    img[0:8, 0:9] = 77  # constant: variance 0
    img[0:8, 9:18] = np.where(np.indices((8, 9)).sum(0) % 2 == 0, 10, 12)  # mean ~11, var ~1
    img[8:16, 0:9] = np.where(np.indices((8, 9)).sum(0) % 2 == 0, 10, 12)  # same, but a target
    img[8:16, 9:18] = np.where(np.indices((8, 9)).sum(0) % 2 == 0, 0, 100)  # variance ~2500
    img[16, :] = 255
    return img


def test_scan_verdicts_and_stats():
    img = _image()
    mask = np.zeros_like(img)
    mask[12, 4] = 1
    mask[16, 17] = 1  # outside the grid (cropped): must not count
    scan = scan_regions(img, mask, 2, sigma=50, mu=255)
    assert (scan.region_h, scan.region_w) == (8, 9)
    assert scan.rows.tolist() == [0, 0, 1, 1] and scan.cols.tolist() == [0, 1, 0, 1]
    assert scan.verdict.tolist() == [REJECT_VAR, ACCEPTED, REJECT_TARGET, REJECT_VAR]
    # 72 pixels, 36 of 10 and 36 of 12: mean 11, population variance 1
    assert scan.mean[1] == 11.0 and scan.var[1] == 1.0
    assert scan.mean[0] == 77.0 and scan.var[0] == 0.0
    assert scan.var[3] == 2500.0
    assert np.array_equal(region_pixels(img, 0, 1, 8, 9), img[0:8, 9:18])


def test_mean_rule():
    img = np.where(np.indices((8, 8)).sum(0) % 2 == 0, 200, 202).astype(np.uint8)
    mask = np.zeros_like(img)
    assert scan_regions(img, mask, 1, 50, 255).verdict.tolist() == [ACCEPTED]
    assert scan_regions(img, mask, 1, 50, 201).verdict.tolist() == [REJECT_MEAN]
    assert scan_regions(img, mask, 1, 1.0, 255).verdict.tolist() == [REJECT_VAR]  # var 1 is not < 1


def test_image_smaller_than_grid_has_no_region():
    scan = scan_regions(np.zeros((5, 40), np.uint8), np.zeros((5, 40), np.uint8), 8, 50, 255)
    assert scan.verdict.size == 0


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(0, 4), min_size=1, max_size=30),
    st.integers(0, 4),
    st.integers(0, 2**32 - 1),
)
def test_pick_patch_never_from_same_image(sources, own, seed):
    sources = np.array(sources)
    rng = np.random.default_rng(seed)
    i = pick_patch(sources, own, rng)
    if np.all(sources == own):
        assert i == -1
    else:
        assert 0 <= i < sources.size and sources[i] != own
