"""Noise2Noise displacement (SIRST-5K, eq. 3): ``I_mix = alpha * N + (1 - alpha) * I``."""

from __future__ import annotations

import cv2
import numpy as np

from sirst_synth.convert import quantise_u8


def resize_patch(patch: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a bank patch to the image size (OpenCV ``INTER_LINEAR``)."""
    h, w = shape
    if patch.shape == (h, w):
        return patch
    return cv2.resize(patch, (w, h), interpolation=cv2.INTER_LINEAR)


def blend(image: np.ndarray, noise: np.ndarray, alpha: float) -> np.ndarray:
    """Blend a same-size noise image into ``image``; round half up, clip, uint8. ``alpha``
    in [0, 1] is the recipe's to check (once, when it is built), not every call's."""
    if image.shape != noise.shape:
        raise ValueError(f"image {image.shape} and noise {noise.shape} differ in shape")
    mixed = alpha * noise.astype(np.float64) + (1.0 - alpha) * image.astype(np.float64)
    return quantise_u8(mixed)


def displace(image: np.ndarray, patch: np.ndarray, alpha: float) -> np.ndarray:
    """Resize a noise-bank patch to the image and blend it in: one Noise2Noise sample."""
    return blend(image, resize_patch(patch, image.shape), alpha)
