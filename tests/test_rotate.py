import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sirst_synth.rotate import check_window_size, negative_samples, rotate_window, window


def test_window_centred_inside():
    assert window((5, 6), 3, (10, 12)) == (4, 5, 7, 8)
    assert window((5, 6), 1, (10, 12)) == (5, 6, 6, 7)
    assert window((5, 6), 5, (10, 12)) == (3, 4, 8, 9)


@pytest.mark.parametrize(
    "center, expected",
    [
        ((0, 5), (0, 4, 3, 7)),  # top border
        ((9, 5), (7, 4, 10, 7)),  # bottom border
        ((5, 0), (4, 0, 7, 3)),  # left border
        ((5, 11), (4, 9, 7, 12)),  # right border
        ((0, 0), (0, 0, 3, 3)),  # top-left corner
        ((0, 11), (0, 9, 3, 12)),  # top-right corner
        ((9, 0), (7, 0, 10, 3)),  # bottom-left corner
        ((9, 11), (7, 9, 10, 12)),  # bottom-right corner
    ],
)
def test_window_moves_inward_at_borders_and_corners(center, expected):
    assert window(center, 3, (10, 12)) == expected


def test_rotation_hand_computed():
    a = np.arange(25, dtype=np.uint8).reshape(5, 5)
    win = (1, 1, 4, 4)  # values 6 7 8 / 11 12 13 / 16 17 18
    r90 = rotate_window(a, win, 90)  # counter-clockwise
    assert r90[1:4, 1:4].tolist() == [[8, 13, 18], [7, 12, 17], [6, 11, 16]]
    r180 = rotate_window(a, win, 180)
    assert r180[1:4, 1:4].tolist() == [[18, 17, 16], [13, 12, 11], [8, 7, 6]]
    r270 = rotate_window(a, win, 270)
    assert r270[1:4, 1:4].tolist() == [[16, 11, 6], [17, 12, 7], [18, 13, 8]]
    assert np.array_equal(rotate_window(a, win, 0), a)
    for r in (r90, r180, r270):
        outside = np.ones((5, 5), bool)
        outside[1:4, 1:4] = False
        assert np.array_equal(r[outside], a[outside])
    assert a[1, 1] == 6  # the input is not modified


def test_mask_moves_with_image():
    img = np.zeros((7, 7), np.uint8)
    mask = np.zeros((7, 7), np.uint8)
    img[2, 3] = 200  # target pixel above the centre
    mask[2, 3] = 1
    mask[3, 3] = 1
    samples = negative_samples(img, mask, (3, 3), 3)
    assert [s[0] for s in samples] == [0, 90, 180, 270]
    for _angle, win, im, m in samples:
        assert win == (2, 2, 5, 5)
        assert np.all(m[im == 200] == 1) and m.sum() == 2
    # 90 ccw: the pixel above centre goes to the left of centre
    assert samples[1][2][3, 2] == 200 and samples[1][3][3, 2] == 1
    assert samples[2][2][4, 3] == 200 and samples[3][2][3, 4] == 200


@pytest.mark.parametrize("s", [0, -1, 2, 4, True, 2.0])
def test_bad_window_sizes(s):
    with pytest.raises(ValueError, match="s must be an odd whole number"):
        check_window_size(s)


def test_window_larger_than_image():
    with pytest.raises(ValueError, match=r"s=5 is larger than the image \(4x10\)"):
        window((1, 1), 5, (4, 10))


arrays = st.tuples(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**32 - 1))


@settings(max_examples=200, deadline=None)
@given(arrays, st.data())
def test_rotation_properties(shape_seed, data):
    h, w, seed = shape_seed
    s = data.draw(st.sampled_from([k for k in (1, 3, 5, 7, 9, 11) if k <= min(h, w)]))
    center = (data.draw(st.integers(-3, h + 3)), data.draw(st.integers(-3, w + 3)))
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w), dtype=np.uint8)
    mask = (rng.random((h, w)) > 0.7).astype(np.uint8)
    r0, c0, r1, c1 = win = window(center, s, (h, w))
    assert (r1 - r0, c1 - c0) == (s, s) and r0 >= 0 and r1 <= h and c0 >= 0 and c1 <= w
    once = rotate_window(img, win, 90)
    four = img
    for _ in range(4):
        four = rotate_window(four, win, 90)
    assert np.array_equal(four, img)
    assert np.array_equal(rotate_window(once, win, 270), img)
    outside = np.ones((h, w), bool)
    outside[r0:r1, c0:c1] = False
    for angle in (0, 90, 180, 270):
        ri, rm = rotate_window(img, win, angle), rotate_window(mask, win, angle)
        assert ri.shape == img.shape and ri.dtype == img.dtype
        assert np.array_equal(ri[outside], img[outside]) and np.array_equal(
            rm[outside], mask[outside]
        )
        # image and mask windows move together: a pixel pair lands at the same place
        pair = img.astype(np.int32) * 2 + mask
        assert np.array_equal(rotate_window(pair, win, angle), ri.astype(np.int32) * 2 + rm)
        assert sorted(ri[r0:r1, c0:c1].ravel()) == sorted(img[r0:r1, c0:c1].ravel())
