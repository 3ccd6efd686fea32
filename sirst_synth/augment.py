"""Training crops and flips: the toolboxes' training regime, on arrays.

BasicIRSTD (``utils.random_crop(img, mask, patch_size, pos_prob)``) crops, with probability
``pos_prob``, a window that contains a randomly chosen target pixel, else a uniform window,
and flips vertically, horizontally and transposes, each with p = 0.5, image and mask alike.
One difference, on purpose: BasicIRSTD draws a positive window's start up to ``patch_size``
pixels before the chosen pixel, so 1 window in ``patch_size + 1`` misses it; here the start
is drawn so the chosen pixel always lies inside the window. Images smaller than the crop are
zero padded at the bottom and right (BasicIRSTD pads the same sides).

Pure functions: arrays and an explicit ``numpy.random.Generator`` in, arrays out.
"""

from __future__ import annotations

import numpy as np


def crop_window(
    mask: np.ndarray, size: int, pos_prob: float, rng: np.random.Generator
) -> tuple[int, int]:
    """(top, left) of a ``size x size`` window of an image with ``mask``'s shape.

    With probability ``pos_prob`` (and a mask with a target), the window contains a target
    pixel drawn uniformly from all of them; otherwise it is uniform. With ``pos_prob`` 0 the
    generator is used exactly as by a uniform crop (two draws where both sides exceed
    ``size``), so such crops do not change when positive crops are added to a recipe.
    """
    h, w = mask.shape
    if pos_prob > 0 and rng.random() < pos_prob:
        ys, xs = np.nonzero(mask)
        if ys.size:
            k = int(rng.integers(0, ys.size))
            return _start(int(ys[k]), h, size, rng), _start(int(xs[k]), w, size, rng)
    y0 = int(rng.integers(0, h - size + 1)) if h > size else 0
    x0 = int(rng.integers(0, w - size + 1)) if w > size else 0
    return y0, x0


def _start(p: int, length: int, size: int, rng: np.random.Generator) -> int:
    """A window start in [p - size + 1, p] that keeps the window inside [0, length)."""
    if length <= size:
        return 0
    lo, hi = max(0, p - size + 1), min(p, length - size)
    return int(rng.integers(lo, hi + 1))


def crop_or_pad(
    image: np.ndarray, mask: np.ndarray, size: int, top_left: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The ``size x size`` window at ``top_left``, zero padded (bottom/right) where smaller."""
    y0, x0 = top_left
    image, mask = image[y0 : y0 + size, x0 : x0 + size], mask[y0 : y0 + size, x0 : x0 + size]
    ph, pw = size - image.shape[0], size - image.shape[1]
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw)))
        mask = np.pad(mask, ((0, ph), (0, pw)))
    return image, mask


def draw_flips(rng: np.random.Generator) -> tuple[bool, bool, bool]:
    """(vertical, horizontal, transpose), each with probability 0.5."""
    v, h, t = rng.random(3) < 0.5
    return bool(v), bool(h), bool(t)


def apply_flips(array: np.ndarray, flips: tuple[bool, bool, bool]) -> np.ndarray:
    """Flip an H x W array up-down, then left-right, then transpose, as ``flips`` says
    (BasicIRSTD's order); the result is contiguous."""
    v, h, t = flips
    if v:
        array = array[::-1, :]
    if h:
        array = array[:, ::-1]
    if t:
        array = array.T
    return np.ascontiguousarray(array)
