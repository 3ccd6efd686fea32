"""Draw a Pd-Fa curve with OpenCV (no plotting library needed)."""

from __future__ import annotations

import cv2
import numpy as np


def draw_pd_fa(curve: list[dict], size: tuple[int, int] = (480, 640)) -> np.ndarray:
    """Pd (y, 0..1) against Fa x 1e6 (x, 0..max) with threshold labels; a BGR image."""
    h, w = size
    img = np.full((h, w, 3), 255, np.uint8)
    left, right, top, bottom = 70, 20, 30, 50
    fa = np.array([c["Fa"] * 1e6 for c in curve])
    pd = np.array([c["Pd"] for c in curve])
    fmax = float(fa.max()) if fa.size and fa.max() > 0 else 1.0

    def xy(f: float, p: float) -> tuple[int, int]:
        return (int(left + (w - left - right) * f / fmax), int(h - bottom - (h - top - bottom) * p))

    cv2.rectangle(img, (left, top), (w - right, h - bottom), (0, 0, 0), 1)
    for i in range(6):
        p = i / 5
        cv2.putText(
            img,
            f"{p:.1f}",
            (left - 40, xy(0, p)[1] + 4),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            (0, 0, 0),
            1,
        )
        f = fmax * i / 5
        cv2.putText(
            img,
            f"{f:.1f}",
            (xy(f, 0)[0] - 12, h - bottom + 18),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            (0, 0, 0),
            1,
        )
    cv2.putText(
        img, "Fa [1e-6]", (w // 2 - 40, h - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1
    )
    cv2.putText(img, "Pd", (10, top + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    order = np.argsort(fa, kind="stable")
    pts = np.array([xy(fa[i], pd[i]) for i in order], np.int32)
    if len(pts) > 1:
        cv2.polylines(img, [pts], False, (200, 80, 0), 2, cv2.LINE_AA)
    for c, (x, y) in zip([curve[i] for i in order], pts, strict=True):
        cv2.circle(img, (int(x), int(y)), 3, (0, 0, 200), -1)
        cv2.putText(
            img,
            f"{c['threshold']:.2f}",
            (int(x) + 4, int(y) - 4),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.3,
            (90, 90, 90),
            1,
        )
    return img
