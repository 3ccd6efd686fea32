"""A procedural stand-in for NUDT-SIRST: textured infrared-like scenes with exact masks.

No download: the demo and the tests run on data the project makes itself. Each image is
256 x 256, with a cloud, sea, field or city-like background, sensor noise, and 1 to 3 small
Gaussian-like targets whose masks are exactly the pixels where the target dominates.
"""

from __future__ import annotations

import cv2
import numpy as np

from sirst_synth.convert import quantise_u8
from sirst_synth.seeding import rng_for

SCENES = ("cloud", "sea", "field", "city")


def _fractal(rng: np.random.Generator, size: int, octaves: int = 5) -> np.ndarray:
    """Smooth multi-scale noise in [0, 1] (sum of bilinearly upsampled random grids)."""
    acc = np.zeros((size, size), np.float64)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        n = 2 ** (o + 2)
        grid = rng.random((n, n))
        acc += amp * cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    acc /= total
    return (acc - acc.min()) / max(np.ptp(acc), 1e-9)


def background(kind: str, rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """A float64 background in gray levels (roughly 20..200)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if kind == "cloud":
        bg = 60 + 110 * _fractal(rng, size) ** 1.5
    elif kind == "sea":
        horizon = rng.integers(size // 6, size // 3)
        waves = np.sin(yy / rng.uniform(2, 5) + 0.3 * np.sin(xx / rng.uniform(10, 30)))
        sea = 70 + 8 * waves + 25 * (yy / size) + 10 * _fractal(rng, size, 3)
        sky = 110 + 30 * _fractal(rng, size, 4) - 20 * (yy / size)
        bg = np.where(yy < horizon, sky, sea)
    elif kind == "field":
        cells = rng.integers(8, 16)
        small = rng.uniform(50, 150, (cells, cells))
        bg = cv2.resize(small, (size, size), interpolation=cv2.INTER_NEAREST)
        bg = cv2.GaussianBlur(bg, (0, 0), 2.0) + 20 * _fractal(rng, size, 4)
    elif kind == "city":
        bg = 50 + 30 * _fractal(rng, size, 3)
        ground = rng.integers(size // 2, size - size // 6)
        x = 0
        while x < size:
            w = int(rng.integers(8, 40))
            top = int(ground - rng.integers(10, size // 2))
            bg[top:ground, x : x + w] = rng.uniform(80, 170)
            x += w + int(rng.integers(0, 6))
        bg[ground:] = 40 + 20 * _fractal(rng, size, 3)[ground:]
        bg = cv2.GaussianBlur(bg, (0, 0), 0.8)
    else:
        raise ValueError(f"unknown scene {kind!r}; one of {SCENES}")
    return bg


def demo_image(seed: int, index: int, size: int = 256) -> tuple[np.ndarray, np.ndarray, str]:
    """(image uint8, mask 0/1 uint8, scene) of one demo sample, a function of (seed, index)."""
    rng = rng_for(seed, "demo", index)
    kind = SCENES[index % len(SCENES)]
    img = background(kind, rng, size)
    mask = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    n_targets = int(rng.integers(1, 4))
    placed: list[tuple[float, float]] = []
    for _ in range(n_targets):
        for _attempt in range(20):
            cy, cx = rng.uniform(8, size - 8, 2)
            if all((cy - py) ** 2 + (cx - px) ** 2 > 24**2 for py, px in placed):
                break
        placed.append((cy, cx))
        sy, sx = rng.uniform(0.5, 2.6, 2)
        peak = rng.uniform(60, 140)
        blob = peak * np.exp(-0.5 * (((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2))
        img += blob
        # The label: where the target adds at least a quarter of its peak (1 to ~60 pixels).
        region = blob >= 0.25 * peak
        if not region.any():
            region[int(round(cy)), int(round(cx))] = True
        mask |= region.astype(np.uint8)
    img += rng.normal(0, 2.0, img.shape)  # sensor noise
    return quantise_u8(img), mask, kind


def demo_split(stems: list[str], seed: int) -> tuple[list[str], list[str]]:
    """The demo dataset's 50/50 split: a seeded half of the stems for training, sorted."""
    order = rng_for(seed, "demo-split").permutation(len(stems))
    n_train = len(stems) // 2
    return sorted(stems[j] for j in order[:n_train]), sorted(stems[j] for j in order[n_train:])
