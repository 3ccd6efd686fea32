"""Bring decoded images and masks of any kind to the one form the pipeline works on.

Real IRSTD datasets mix 8-bit gray, RGB, RGBA, palette and 16-bit files. Everything is
brought to one 8-bit channel: colour by the ITU-R BT.601 luma weights (OpenCV's
``COLOR_BGR2GRAY``), alpha dropped, 16-bit scaled to 0..255 with rounding. Masks: two levels
(0 and one target value), alpha dropped; anything else is refused as ambiguous.
"""

from __future__ import annotations

import cv2
import numpy as np

from sirst_synth.errors import DataError


def quantise_u8(values: np.ndarray) -> np.ndarray:
    """Round half up (not to even) and clip to 0..255: the one quantisation of every 8-bit
    output (blends, demo scenes, saved probability maps, float inputs)."""
    return np.clip(np.floor(np.asarray(values, dtype=np.float64) + 0.5), 0, 255).astype(np.uint8)


def normalise(image: np.ndarray, mean: float, std: float) -> np.ndarray:
    """The network's input: ``(image / 255 - mean) / std`` in float32, with the training
    images' mean and std (on the 0..1 scale); training and inference both call it."""
    return (image.astype(np.float32) / 255.0 - mean) / std


def gray_values(decoded: np.ndarray) -> np.ndarray:
    """The one gray channel of an OpenCV-decoded array, in its own dtype (colour by the
    BT.601 luma weights, alpha dropped): what ``to_gray_u8`` maps to 8 bits."""
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
            integer = np.issubdtype(arr.dtype, np.integer)
            arr = cv2.cvtColor(np.ascontiguousarray(arr.astype(np.float32)), cv2.COLOR_BGR2GRAY)
            if integer:  # integer levels stay integer levels (clipped to 0..255 below)
                arr = np.rint(arr).astype(np.int64)
    if arr.ndim != 2:
        raise DataError(f"unsupported image shape {arr.shape}")
    return arr


def to_gray_u8(decoded: np.ndarray, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """One 8-bit channel from an OpenCV-decoded array (channels in BGR(A) order).

    ``value_range`` (lo, hi): an image that is not 8-bit is mapped linearly from [lo, hi] to
    0..255 (rounded, clipped): real 16-bit or float data (14-bit sensor counts, kelvin) keeps
    its levels. 8-bit images are read as they are. Without it, the fixed rules below apply."""
    arr = gray_values(decoded)
    if value_range is not None and arr.dtype not in (np.uint8, np.bool_):
        lo, hi = value_range
        return quantise_u8((arr.astype(np.float64) - lo) * (255.0 / (hi - lo)))
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == np.uint16:
        if arr.size and int(arr.max()) <= 255 and int(arr.max()) > 0:
            raise DataError(
                "16-bit image whose values never exceed 255 is ambiguous (8-bit data saved in "
                "16 bits would read as black); save it as an 8-bit image"
            )
        return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        if arr.size and not (np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0):
            raise DataError(
                "float image outside [0, 1] is ambiguous (physical units such as kelvin would "
                "clip to white); scale it to [0, 1] or save it as an 8-bit image"
            )
        return quantise_u8(arr.astype(np.float64) * 255)
    if np.issubdtype(arr.dtype, np.integer):
        return np.clip(arr, 0, 255).astype(np.uint8)
    raise DataError(f"unsupported image dtype {arr.dtype}")


def to_binary_mask(decoded: np.ndarray) -> np.ndarray:
    """A 0/1 uint8 mask from a two-level file: background 0 and one target level (1, 255,
    65535, or any other single value), in one channel or in colour channels (alpha dropped,
    as for images: an opaque RGBA mask is its colour).

    A mask with more than two levels (JPEG artefacts, a blurred or resized mask) is ambiguous
    and refused: "non-zero is target" turns JPEG ringing into false targets (a q90 JPEG of 4
    targets reads as 16), and no threshold is right for every file. Binarise it once, where
    you know what it holds (data/README.md says which rule each toolbox applies).
    """
    arr = np.asarray(decoded)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3:
        if arr.shape[2] == 4:
            arr = arr[:, :, :3]  # alpha is transparency, not target
        elif arr.shape[2] == 2:
            arr = arr[:, :, :1]  # gray + alpha
        arr = arr.max(axis=2)
    if arr.ndim != 2:
        raise DataError(f"unsupported mask shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    levels = np.unique(arr[arr != 0]) if arr.size else arr[:0]
    if levels.size > 1:
        raise DataError(
            f"mask has {levels.size + 1} levels, not two (0 and one target value): JPEG "
            "artefacts or a blurred mask are ambiguous; save a two-level PNG (0/255 or 0/1)"
        )
    return (arr != 0).astype(np.uint8)


def resize_nearest(array: np.ndarray, size: int) -> np.ndarray:
    """``size x size`` by PIL's ``Image.NEAREST``, the resize of DNA-Net's test loader, called
    directly (PIL steps through the source in floating point; a closed-form sampling differs
    from it at some sizes). Masks and binary predictions go through mode L, probability maps
    through mode F."""
    from PIL import Image

    arr = np.asarray(array)
    if np.issubdtype(arr.dtype, np.floating):
        out = Image.fromarray(arr.astype(np.float32), mode="F").resize((size, size), Image.NEAREST)
        return np.asarray(out, dtype=np.float32).astype(arr.dtype, copy=False)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.dtype != np.uint8:
        raise ValueError(f"resize_nearest takes uint8, bool or float arrays, got {arr.dtype}")
    return np.asarray(Image.fromarray(arr).resize((size, size), Image.NEAREST)).copy()


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """An 8-bit gray image at ``size x size`` with PIL's ``Image.BILINEAR`` (antialiased when
    shrinking): the resize of DNA-Net's test loader, so its numbers are reproduced."""
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


#: How a prediction file is read: ``auto`` (the rules below), ``probability`` (the same, but a
#: map of a few small integer levels is taken as probabilities), ``labels`` (non-zero is
#: target: binary masks and instance-label maps).
PRED_KINDS = ("auto", "probability", "labels")


def _looks_like_labels(arr: np.ndarray) -> bool:
    """Two or more non-zero levels, each region flat: no two 4-adjacent non-zero pixels differ.
    Instance-label maps look so; probability maps vary inside every blob."""
    nz = arr != 0
    values = arr[nz]
    if values.size == 0 or (values == values[0]).all():
        return False
    across = nz[:, 1:] & nz[:, :-1] & (arr[:, 1:] != arr[:, :-1])
    down = nz[1:] & nz[:-1] & (arr[1:] != arr[:-1])
    return not (across.any() or down.any())


def to_probability(decoded: np.ndarray, kind: str = "auto") -> np.ndarray:
    """A prediction as float32 probabilities in [0, 1], by one rule for every format.

    - Channels: a colour file whose colour channels are equal is that one channel (alpha
      ignored); differing channels are ambiguous.
    - ``kind="labels"``: non-zero is target (1.0), whatever the dtype.
    - A two-level file holding 0 and one of 1, 255 or 65535 (any bit depth) is a binary mask,
      read as masks are: non-zero is target.
    - An integer file with two or more non-zero levels, each region flat (no two adjacent
      non-zero pixels differ), is ambiguous: instance labels 0, 1, 2, ... would score Pd 0
      when read as probabilities /255. ``kind`` decides it (``labels`` or ``probability``).
    - Otherwise 8-bit is /255, 16-bit /65535 (but a 16-bit map that never exceeds 255 is
      ambiguous: an 8-bit map saved in 16 bits reads as near zero), floats as they are (in
      [0, 1], else ambiguous).
    """
    if kind not in PRED_KINDS:
        raise ValueError(f"kind must be one of {', '.join(PRED_KINDS)}, got {kind!r}")
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
    if kind == "labels":
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            raise DataError("label map holds NaN or infinity; save finite labels")
        return (arr != 0).astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        top = int(arr.max())
        if top in (0, 1, 255, 65535) and ((arr == 0) | (arr == top)).all():
            return (arr != 0).astype(np.float32)  # a binary mask, read as masks are
        if kind == "auto" and _looks_like_labels(arr):
            raise DataError(
                "integer prediction made of flat regions of different values is ambiguous "
                "(an instance-label map, or a quantised probability map?); pass --pred-kind "
                "labels (non-zero is target) or --pred-kind probability"
            )
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
            raise DataError(
                "float prediction outside [0, 1] is ambiguous; save probabilities, or pass "
                "--pred-kind labels for a label map"
            )
        return arr.astype(np.float32)
    raise DataError(f"unsupported prediction dtype {arr.dtype}")
