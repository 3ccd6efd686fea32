"""Bring decoded images and masks of any kind to the one form the pipeline works on.

Real IRSTD datasets mix 8-bit gray, RGB, RGBA, palette and 16-bit files. Everything is
brought to one 8-bit channel: colour by the ITU-R BT.601 luma weights (OpenCV's
``COLOR_BGR2GRAY``), alpha dropped, 16-bit scaled to 0..255 with rounding. Masks: any
non-zero pixel is target.
"""

from __future__ import annotations

import cv2
import numpy as np

from sirst_synth.errors import DataError


def quantise_u8(values: np.ndarray) -> np.ndarray:
    """Round half up (not to even) and clip to 0..255: the one quantisation of every 8-bit
    output (blends, demo scenes, saved probability maps, float inputs)."""
    return np.clip(np.floor(np.asarray(values, dtype=np.float64) + 0.5), 0, 255).astype(np.uint8)


def to_gray_u8(decoded: np.ndarray) -> np.ndarray:
    """One 8-bit channel from an OpenCV-decoded array (channels in BGR(A) order)."""
    arr = np.asarray(decoded)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3:
        if arr.shape[2] == 4:
            arr = arr[:, :, :3]
        if arr.shape[2] != 3:
            raise DataError(f"unsupported channel count {arr.shape[2]}")
        if arr.dtype == np.float32 or arr.dtype == np.uint8 or arr.dtype == np.uint16:
            arr = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_BGR2GRAY)
        else:
            arr = cv2.cvtColor(np.ascontiguousarray(arr.astype(np.float32)), cv2.COLOR_BGR2GRAY)
    if arr.ndim != 2:
        raise DataError(f"unsupported image shape {arr.shape}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.uint16:
        return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        return quantise_u8(np.clip(np.nan_to_num(arr.astype(np.float64)), 0.0, 1.0) * 255)
    if np.issubdtype(arr.dtype, np.integer):
        return np.clip(arr, 0, 255).astype(np.uint8)
    raise DataError(f"unsupported image dtype {arr.dtype}")


def to_binary_mask(decoded: np.ndarray) -> np.ndarray:
    """A 0/1 uint8 mask: a pixel is target when any of its channels is non-zero."""
    arr = np.asarray(decoded)
    if arr.ndim == 3:
        arr = arr.any(axis=2)
    if arr.ndim != 2:
        raise DataError(f"unsupported mask shape {arr.shape}")
    return (arr != 0).astype(np.uint8)


def resize_nearest(array: np.ndarray, size: int) -> np.ndarray:
    """``size x size`` by nearest neighbour sampled at pixel centres, as PIL's
    ``Image.NEAREST`` (how DNA-Net resizes labels; OpenCV's ``INTER_NEAREST`` samples corners
    and picks other pixels). Works on masks, binary predictions and probability maps alike."""
    h, w = array.shape[:2]
    sy, sx = h / size, w / size
    rows = np.minimum(np.floor(sy * (np.arange(size) + 0.5)).astype(np.int64), h - 1)
    cols = np.minimum(np.floor(sx * (np.arange(size) + 0.5)).astype(np.int64), w - 1)
    return np.ascontiguousarray(array[rows][:, cols])


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """An 8-bit gray image at ``size x size`` with PIL's ``Image.BILINEAR`` (antialiased when
    shrinking): the resize of DNA-Net's test loader, so its numbers are reproduced."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def to_probability(decoded: np.ndarray) -> np.ndarray:
    """A prediction as float32 probabilities in [0, 1], by one rule for every format.

    - Channels: a colour file whose colour channels are equal is that one channel (alpha
      ignored); differing channels are ambiguous.
    - A two-level file holding 0 and one of 1, 255 or 65535 (any bit depth) is a binary mask,
      read as masks are: non-zero is target.
    - Otherwise 8-bit is /255, 16-bit /65535 (but a 16-bit map that never exceeds 255 is
      ambiguous: an 8-bit map saved in 16 bits reads as near zero), floats as they are (in
      [0, 1], else ambiguous).
    """
    arr = np.asarray(decoded)
    if arr.ndim == 3:
        colour = arr[:, :, : min(arr.shape[2], 3)]
        if not (colour == colour[:, :, :1]).all():
            raise DataError(
                "colour prediction whose channels differ is ambiguous; save one gray channel"
            )
        arr = colour[:, :, 0]
    if arr.ndim != 2:
        raise DataError(f"unsupported prediction shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer):
        top = int(arr.max())
        if top in (0, 1, 255, 65535) and ((arr == 0) | (arr == top)).all():
            return (arr != 0).astype(np.float32)  # a binary mask, read as masks are
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        if arr.max() <= 255:
            raise DataError(
                "16-bit prediction whose values never exceed 255 is ambiguous (an 8-bit map "
                "saved in 16 bits?); save 8-bit maps as 8-bit, or scale 16-bit maps to 0..65535"
            )
        return arr.astype(np.float32) / 65535.0
    if np.issubdtype(arr.dtype, np.floating):
        if not (np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0):
            raise DataError("float prediction outside [0, 1] is ambiguous; save probabilities")
        return arr.astype(np.float32)
    raise DataError(f"unsupported prediction dtype {arr.dtype}")
