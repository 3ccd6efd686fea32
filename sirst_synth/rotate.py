"""Negative augmentation (SIRST-5K, Sec. 3.2): rotate the s x s window around a target.

One routine serves every window size ``s``: the window is centred on the target, moved inward
at an image border so it is always ``s x s`` inside the image, then rotated by a multiple of
90 degrees, in the image and the mask alike. Angles are counter-clockwise (``numpy.rot90``).
"""

from __future__ import annotations

import numpy as np

ANGLES = (0, 90, 180, 270)


def check_window_size(s: int, shape: tuple[int, int] | None = None) -> int:
    """An odd window no larger than the image. The recipe checks ``s`` once for the user
    (naming the flag); this guards the array indexing of a direct library call."""
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 or s % 2 == 0:
        raise ValueError(f"s must be an odd whole number >= 1, got {s}")
    if shape is not None and s > min(shape):
        raise ValueError(f"s={s} is larger than the image ({shape[0]}x{shape[1]})")
    return int(s)


def window(center: tuple[int, int], s: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Half-open ``(row0, col0, row1, col1)`` of the s x s window centred on ``center``.

    Clamped inside the image: a target on a border or corner gets a window shifted inward.
    """
    check_window_size(s, shape)
    h, w = shape
    r0 = min(max(int(center[0]) - s // 2, 0), h - s)
    c0 = min(max(int(center[1]) - s // 2, 0), w - s)
    return r0, c0, r0 + s, c0 + s


def rotate_window(array: np.ndarray, win: tuple[int, int, int, int], angle: int) -> np.ndarray:
    """A copy of ``array`` whose window is rotated by ``angle`` degrees; the rest untouched."""
    if angle % 90 != 0:
        raise ValueError(f"angle must be a multiple of 90, got {angle}")
    r0, c0, r1, c1 = win
    if r1 - r0 != c1 - c0:
        raise ValueError(f"window {win} is not square")
    out = np.array(array, copy=True)
    out[r0:r1, c0:c1] = np.rot90(array[r0:r1, c0:c1], k=(angle // 90) % 4)
    return out


def negative_samples(
    image: np.ndarray,
    mask: np.ndarray,
    center: tuple[int, int],
    s: int,
    angles: tuple[int, ...] = ANGLES,
) -> list[tuple[int, tuple[int, int, int, int], np.ndarray, np.ndarray]]:
    """The rotated (angle, window, image, mask) samples of one target, mask moved with image."""
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(f"image {image.shape} and mask {mask.shape} differ in shape")
    win = window(center, s, image.shape[:2])
    return [(a, win, rotate_window(image, win, a), rotate_window(mask, win, a)) for a in angles]
