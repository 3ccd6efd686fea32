"""Target copy-paste: new targets in new places on real backgrounds (``mode: paste``).

A sample is a training image (the destination) into which K targets are pasted. A pasted
target is a connected component of a training image: its pixels minus its local background
(the median of a ring of pixels just outside it), so what moves is the target's signal, not
its surroundings. Per target, from the item's seeded generator: the source component, a flip,
a rotation by a multiple of 90 degrees, a scale (the signal resized bilinearly, the mask
resized and thresholded at one half), and a position that keeps the target inside the image
and ``distance`` pixels from every existing and already pasted target; with ``where="flat"``
the destination's grid region at the position must be noise-prone (``noise.scan_regions``,
the bank's own test). Copy-paste in the manner of BAG-CP and MTU-Net's copy-rotate-resize-paste.

Pure functions: arrays, explicit parameters and a ``numpy.random.Generator`` in, arrays out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from sirst_synth.convert import quantise_u8
from sirst_synth.noise import ACCEPTED, scan_regions

if TYPE_CHECKING:
    from sirst_synth.recipe import SynthRecipe

#: Draws of a source target before one is given up (its scaled mask vanished or split).
TARGET_TRIES = 10
#: Positions tried for one target before it is given up (no room under the rules).
POSITION_TRIES = 50


@dataclass(frozen=True)
class Paste:
    """Where one pasted target came from and how it was placed (the manifest's provenance)."""

    source: str
    target: int
    at: tuple[int, int]  # top-left (row, col) of the pasted footprint's box
    scale: float
    flip: bool
    angle: int

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "target": self.target,
            "at": list(self.at),
            "scale": self.scale,
            "flip": self.flip,
            "angle": self.angle,
        }


def target_signal(
    image: np.ndarray, mask: np.ndarray, labels: np.ndarray, k: int, ring: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """(signal, footprint) of component ``k`` (label ``k + 1`` of ``labels``), cropped to its
    box: the pixels minus the median of the ``ring`` pixels around it that are no target."""
    fp = labels == k + 1
    ys, xs = np.nonzero(fp)
    if not ys.size:
        raise ValueError(f"component {k} is not in the label map")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    grown = cv2.dilate(fp.astype(np.uint8), np.ones((2 * ring + 1, 2 * ring + 1), np.uint8))
    around = (grown > 0) & (mask == 0)
    bg = float(np.median(image[around])) if around.any() else float(np.median(image[mask == 0]))
    box = (slice(y0, y1), slice(x0, x1))
    signal = np.where(fp[box], image[box].astype(np.float32) - bg, 0.0).astype(np.float32)
    return signal, fp[box].copy()


def transform(
    signal: np.ndarray, footprint: np.ndarray, flip: bool, angle: int, scale: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """Flip left-right, rotate by ``angle`` (a multiple of 90, counter-clockwise) and scale;
    None where the scaled footprint vanishes or falls apart into several components."""
    if flip:
        signal, footprint = signal[:, ::-1], footprint[:, ::-1]
    turns = (angle // 90) % 4
    signal, footprint = np.rot90(signal, turns), np.rot90(footprint, turns)
    h, w = footprint.shape
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) != (h, w):
        signal = cv2.resize(np.ascontiguousarray(signal), (nw, nh), interpolation=cv2.INTER_LINEAR)
        soft = cv2.resize(
            np.ascontiguousarray(footprint, dtype=np.float32),
            (nw, nh),
            interpolation=cv2.INTER_LINEAR,
        )
        footprint = soft >= 0.5
    footprint = np.ascontiguousarray(footprint)
    n, _ = cv2.connectedComponents(footprint.astype(np.uint8), connectivity=8)
    if n != 2:  # background + exactly one component
        return None
    return np.ascontiguousarray(np.where(footprint, signal, 0.0), dtype=np.float32), footprint


def _boxes(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Half-open (row0, col0, row1, col1) of every 8-connected component."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    return [(int(y), int(x), int(y + h), int(x + w)) for x, y, w, h, _ in stats[1:n]]


def _apart(box: tuple[int, int, int, int], others: list, distance: int) -> bool:
    y0, x0, y1, x1 = box
    return all(
        y1 + distance <= b0 or b1 + distance <= y0 or x1 + distance <= c0 or c1 + distance <= x0
        for b0, c0, b1, c1 in others
    )


def find_position(
    shape: tuple[int, int],
    size: tuple[int, int],
    taken: list[tuple[int, int, int, int]],
    distance: int,
    rng: np.random.Generator,
    allowed: Callable[[int, int], bool] | None = None,
    tries: int = POSITION_TRIES,
) -> tuple[int, int] | None:
    """A top-left corner for a ``size`` box inside ``shape``, ``distance`` pixels clear of
    every ``taken`` box and where ``allowed(centre row, centre col)``; None after ``tries``
    draws (never an endless search)."""
    (h, w), (bh, bw) = shape, size
    if bh > h or bw > w:
        return None
    for _ in range(tries):
        y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        if _apart((y, x, y + bh, x + bw), taken, distance) and (
            allowed is None or allowed(y + bh // 2, x + bw // 2)
        ):
            return y, x
    return None


def flat_test(
    image: np.ndarray, mask: np.ndarray, grid: int, sigma: float, mu: float
) -> Callable[[int, int], bool]:
    """``where="flat"``: a position is allowed where its grid region of the destination is
    noise-prone by the noise bank's own test (``scan_regions``)."""
    scan = scan_regions(image, mask, grid, sigma, mu)
    if not scan.verdict.size:
        return lambda r, c: False
    ok = (scan.verdict == ACCEPTED).reshape(grid, grid)
    rh, rw = scan.region_h, scan.region_w

    def allowed(r: int, c: int) -> bool:
        gr, gc = r // rh, c // rw
        return gr < grid and gc < grid and bool(ok[gr, gc])

    return allowed


def paste_one(
    image: np.ndarray, mask: np.ndarray, signal: np.ndarray, footprint: np.ndarray, at: tuple
) -> tuple[np.ndarray, np.ndarray]:
    """Add ``signal`` at ``at`` (clipped to 0..255, rounded half up) and OR the footprint
    into the mask; pixels outside the footprint are untouched."""
    y, x = at
    h, w = footprint.shape
    image, mask = image.copy(), mask.copy()
    region = image[y : y + h, x : x + w]
    added = quantise_u8(region.astype(np.float64) + signal.astype(np.float64))
    region[footprint] = added[footprint]
    mask[y : y + h, x : x + w][footprint] = 1
    return image, mask


@dataclass(frozen=True)
class PasteSettings:
    """The recipe values paste needs (``SynthRecipe``: k, scale, where, distance, grid, ...)."""

    k: tuple[int, int] = (1, 3)
    scale: tuple[float, float] = (0.75, 1.5)
    where: str = "flat"
    distance: int = 8
    grid: int = 8
    sigma: float = 50.0
    mu: float = 255.0


def paste_sample(
    image: np.ndarray,
    mask: np.ndarray,
    targets: list[tuple[int, int]],
    load: Callable[[int], tuple[str, np.ndarray, np.ndarray]],
    settings: PasteSettings,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, list[Paste], int]:
    """(image, mask, what was pasted, targets given up) for one destination.

    ``targets`` lists every (source index, component index) a paste may draw; ``load(i)``
    gives (stem, image, mask) of source i. The number of targets is drawn from ``settings.k``
    (inclusive); a target whose scaled mask vanishes or splits is drawn again up to
    ``TARGET_TRIES`` times, one with no room is given up: both count in the last value.
    """
    lo, hi = settings.k
    want = int(rng.integers(lo, hi + 1))
    taken = _boxes(mask)
    allowed = (
        flat_test(image, mask, settings.grid, settings.sigma, settings.mu)
        if settings.where == "flat"
        else None
    )
    pasted: list[Paste] = []
    given_up = 0
    cache: dict[int, tuple[str, np.ndarray, np.ndarray, np.ndarray]] = {}
    for _ in range(want):
        placed = False
        for _ in range(TARGET_TRIES):
            src, comp = targets[int(rng.integers(len(targets)))]
            flip = bool(rng.random() < 0.5)
            angle = int(rng.integers(4)) * 90
            scale = round(float(rng.uniform(*settings.scale)), 4)
            if src not in cache:
                stem, s_img, s_mask = load(src)
                _, labels = cv2.connectedComponents(s_mask.astype(np.uint8), connectivity=8)
                cache[src] = (stem, s_img, s_mask, labels)
            stem, s_img, s_mask, labels = cache[src]
            moved = transform(*target_signal(s_img, s_mask, labels, comp), flip, angle, scale)
            if moved is None:
                continue
            signal, footprint = moved
            at = find_position(image.shape, footprint.shape, taken, settings.distance, rng, allowed)
            if at is None:
                break
            image, mask = paste_one(image, mask, signal, footprint, at)
            taken.append((at[0], at[1], at[0] + footprint.shape[0], at[1] + footprint.shape[1]))
            pasted.append(Paste(stem, comp, at, scale, flip, angle))
            placed = True
            break
        given_up += not placed
    return image, mask, pasted, given_up


@dataclass(frozen=True)
class PasteSample:
    image: np.ndarray
    mask: np.ndarray
    pastes: list[Paste]
    given_up: int
    noise: dict | None  # the N2N patch blended in first (alpha > 0), else None


def paste_sample_of(
    image: np.ndarray,
    mask: np.ndarray,
    stem: str,
    pass_index: int,
    recipe: SynthRecipe,
    stems: list[str],
    counts: list[int],
    load: Callable[[str], tuple[np.ndarray, np.ndarray]],
    noise: Callable[[str, int], tuple[np.ndarray, dict]],
) -> PasteSample:
    """The paste sample of training image ``stem`` in pass ``pass_index``: what generate
    writes and ``train --synth online`` makes for that epoch (one function, so they agree).

    Targets are drawn from every component of ``stems`` (the run's training images, with
    ``counts`` components each); ``load(stem)`` decodes a source pair, ``noise(stem, pass)``
    draws the N2N patch. With ``recipe.alpha`` 0 nothing is blended, so nothing outside the
    pasted footprints changes.
    """
    from sirst_synth.blend import displace
    from sirst_synth.seeding import rng_for

    drawn = None
    if recipe.alpha > 0:
        patch, drawn = noise(stem, pass_index)
        image = displace(image, patch, recipe.alpha)
    targets = [(i, t) for i, n in enumerate(counts) for t in range(n)]
    if not targets:
        raise ValueError("no training image holds a target to paste")
    settings = PasteSettings(
        recipe.k, recipe.scale, recipe.where, recipe.distance, recipe.grid, recipe.sigma, recipe.mu
    )

    def source(i: int) -> tuple[str, np.ndarray, np.ndarray]:
        return (stems[i], *load(stems[i]))

    rng = rng_for(recipe.seed, "paste", stem, pass_index)
    out, out_mask, pastes, given_up = paste_sample(image, mask, targets, source, settings, rng)
    return PasteSample(out, out_mask, pastes, given_up, drawn)
