"""Targets as the field counts them: 8-connected components of a binary mask."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Components:
    """Connected components of one binary map, background excluded.

    ``labels`` numbers component ``i`` as ``i + 1`` (0 is background); ``centroids`` are
    (row, col) in float64; ``areas`` in pixels. Order: OpenCV's label order.
    """

    labels: np.ndarray
    areas: np.ndarray
    centroids: np.ndarray
    boxes: np.ndarray  # (n, 4): row0, col0, row1, col1 half-open

    @property
    def count(self) -> int:
        return int(self.areas.size)


def components(binary: np.ndarray) -> Components:
    """8-connected components with area, centroid and box, computed once by OpenCV."""
    src = np.ascontiguousarray((np.asarray(binary) != 0).astype(np.uint8))
    n, labels, stats, cents = cv2.connectedComponentsWithStats(
        src, connectivity=8, ltype=cv2.CV_32S
    )
    stats = stats[1:n]
    boxes = np.stack(
        [
            stats[:, cv2.CC_STAT_TOP],
            stats[:, cv2.CC_STAT_LEFT],
            stats[:, cv2.CC_STAT_TOP] + stats[:, cv2.CC_STAT_HEIGHT],
            stats[:, cv2.CC_STAT_LEFT] + stats[:, cv2.CC_STAT_WIDTH],
        ],
        axis=1,
    ).astype(np.int64)
    return Components(
        labels=labels,
        areas=stats[:, cv2.CC_STAT_AREA].astype(np.int64),
        centroids=cents[1:n, ::-1].astype(np.float64).reshape(-1, 2),
        boxes=boxes.reshape(-1, 4),
    )


def round_half_up(values: np.ndarray) -> np.ndarray:
    """Round .5 upwards (not to even), so a centre never depends on the parity of a number."""
    return np.floor(np.asarray(values, dtype=np.float64) + 0.5).astype(np.int64)


def target_centers(mask: np.ndarray) -> np.ndarray:
    """(n, 2) integer (row, col) centres: rounded centroids of the 8-connected targets."""
    return round_half_up(components(mask).centroids).reshape(-1, 2)
