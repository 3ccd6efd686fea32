"""One training image in, its SIRST-5K development samples out (pure arrays)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sirst_synth.blend import displace
from sirst_synth.rotate import negative_samples
from sirst_synth.targets import target_centers


@dataclass(frozen=True)
class Sample:
    target: int | None  # None: a Noise2Noise-only sample (whole image, nothing rotated)
    center: tuple[int, int]
    window: tuple[int, int, int, int]
    angle: int
    image: np.ndarray
    mask: np.ndarray


def synthesize(
    image: np.ndarray,
    mask: np.ndarray,
    patch: np.ndarray,
    alpha: float,
    s: int,
    picks: tuple[tuple[int, int], ...],
) -> list[Sample]:
    """Blend the noise patch in (eq. 3), then rotate each picked target's window.

    The image is blended once; every sample shares that ``I_mix`` and differs only inside its
    rotated window. Masks are rotated with the same window, so labels stay exact.
    """
    mixed = displace(image, patch, alpha)
    centers = target_centers(mask)
    angles: dict[int, list[int]] = {}
    for t, angle in picks:
        angles.setdefault(t, []).append(angle)
    out = []
    for t, wanted in angles.items():
        c = (int(centers[t][0]), int(centers[t][1]))
        for angle, win, img, msk in negative_samples(mixed, mask, c, s, tuple(wanted)):
            out.append(Sample(t, c, win, angle, img, msk))
    return out


def noise_only(image: np.ndarray, mask: np.ndarray, patch: np.ndarray, alpha: float) -> Sample:
    """The Noise2Noise-only ablation (``mode: n2n``): eq. 3 alone, labels unchanged."""
    return Sample(None, (0, 0), (0, 0, 0, 0), 0, displace(image, patch, alpha), mask)
