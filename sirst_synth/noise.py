"""Noise bank selection (SIRST-5K, Sec. 3.1): find flat, noise-only regions of the training set.

Every training image is split into a ``grid x grid`` layout of regions of size
``floor(h/grid) x floor(w/grid)``. A region is *noise-prone* when ``0 < Var < sigma`` and
``0 < Mean < mu`` (gray levels on the 0..255 scale) and it holds no target pixel: a region
that touches a target would paste an unlabelled target into another image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Rejection codes stored per region, in the order the rules are applied.
ACCEPTED, REJECT_TARGET, REJECT_VAR, REJECT_MEAN = 0, 1, 2, 3
REJECT_NAMES = {REJECT_TARGET: "touches a target", REJECT_VAR: "variance", REJECT_MEAN: "mean"}


@dataclass(frozen=True)
class RegionScan:
    """Per-region statistics of one image, in row-major grid order."""

    rows: np.ndarray  # grid row of each region
    cols: np.ndarray  # grid col of each region
    mean: np.ndarray  # float64
    var: np.ndarray  # float64, population variance
    verdict: np.ndarray  # ACCEPTED or a REJECT_* code
    region_h: int
    region_w: int


def grid_region_size(shape: tuple[int, int], grid: int) -> tuple[int, int]:
    """Region size ``floor(h/grid) x floor(w/grid)``; an image smaller than the grid has none."""
    if grid < 1:
        raise ValueError(f"grid must be at least 1, got {grid}")
    return shape[0] // grid, shape[1] // grid


def scan_regions(
    image: np.ndarray, mask: np.ndarray, grid: int, sigma: float, mu: float
) -> RegionScan:
    """Mean, variance and the noise-prone verdict of every grid region of one image."""
    h, w = image.shape
    rh, rw = grid_region_size((h, w), grid)
    rows, cols = np.divmod(np.arange(grid * grid), grid)
    if rh == 0 or rw == 0:
        empty = np.zeros(0)
        return RegionScan(
            empty.astype(int), empty.astype(int), empty, empty, empty.astype(np.uint8), rh, rw
        )
    # Reshape the cropped image into (grid, rh, grid, rw) blocks: one vectorised pass.
    blocks = image[: grid * rh, : grid * rw].astype(np.float64).reshape(grid, rh, grid, rw)
    mean = blocks.mean(axis=(1, 3))
    var = blocks.var(axis=(1, 3))
    touched = mask[: grid * rh, : grid * rw].reshape(grid, rh, grid, rw).any(axis=(1, 3))
    verdict = np.full((grid, grid), ACCEPTED, dtype=np.uint8)
    bad_mean = ~((mean > 0) & (mean < mu))
    bad_var = ~((var > 0) & (var < sigma))
    verdict[bad_mean] = REJECT_MEAN
    verdict[bad_var] = REJECT_VAR
    verdict[touched] = REJECT_TARGET
    return RegionScan(rows, cols, mean.ravel(), var.ravel(), verdict.ravel(), rh, rw)


def region_pixels(
    image: np.ndarray, row: int, col: int, region_h: int, region_w: int
) -> np.ndarray:
    """The pixels of one grid region (a copy, so a bank never holds a view of a whole image)."""
    return image[
        row * region_h : (row + 1) * region_h, col * region_w : (col + 1) * region_w
    ].copy()


def pick_patch(sources: np.ndarray, source_index: int, rng: np.random.Generator) -> int:
    """Index of a bank patch drawn uniformly among those *not* cut from image ``source_index``.

    ``sources`` holds, per bank patch, the index of its source image. Returns -1 where every
    patch comes from that same image.
    """
    candidates = np.flatnonzero(sources != source_index)
    if candidates.size == 0:
        return -1
    return int(candidates[rng.integers(candidates.size)])
