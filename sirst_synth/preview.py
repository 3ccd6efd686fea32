"""Contact sheet of negative augmentation: source, blended, and the four rotations of a target."""

from __future__ import annotations

import cv2
import numpy as np

from sirst_synth.seeding import rng_for

TILE = 128


def preview_picks(available: int, wanted: int, seed: int) -> list[int]:
    """Which of ``available`` groups (or pasted samples) the sheet shows: a seeded draw of
    ``wanted``, in their listed order."""
    return sorted(int(i) for i in rng_for(seed, "preview").permutation(available)[:wanted])


def _tile(
    image: np.ndarray, mask: np.ndarray, win: tuple[int, int, int, int], span: int
) -> np.ndarray:
    """A zoomed crop around the window: mask outlined in red, window in green."""
    h, w = image.shape
    r0, c0, r1, c1 = win
    cy, cx = (r0 + r1) // 2, (c0 + c1) // 2
    span = min(span, h, w)
    y0 = min(max(cy - span // 2, 0), h - span)
    x0 = min(max(cx - span // 2, 0), w - span)
    crop = image[y0 : y0 + span, x0 : x0 + span]
    mcrop = mask[y0 : y0 + span, x0 : x0 + span]
    z = TILE // span if span <= TILE else 1
    big = cv2.resize(crop, (span * z, span * z), interpolation=cv2.INTER_NEAREST)
    bigm = cv2.resize(mcrop, (span * z, span * z), interpolation=cv2.INTER_NEAREST)
    rgb = cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)
    contours, _ = cv2.findContours(
        (bigm > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    cv2.drawContours(rgb, contours, -1, (0, 0, 255), 1)
    cv2.rectangle(
        rgb, ((c0 - x0) * z, (r0 - y0) * z), ((c1 - x0) * z - 1, (r1 - y0) * z - 1), (0, 255, 0), 1
    )
    out = np.zeros((TILE, TILE, 3), np.uint8)
    out[: rgb.shape[0], : rgb.shape[1]] = rgb[:TILE, :TILE]
    return out


def contact_sheet(
    rows: list[
        tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray], tuple[int, int, int, int]]
    ],
    labels: tuple[str, ...] = ("source", "blended", "0", "90", "180", "270"),
) -> np.ndarray:
    """One row per target: (source, source mask, rotated images, rotated masks, window).

    The angle-0 sample is the blended image itself; it is shown as "blended" and again as "0"
    so the eye can compare each rotation against it.
    """
    pad = 4
    head = 20
    lines = []
    for src, src_mask, imgs, masks, win in rows:
        span = max(4 * (win[2] - win[0]), 16)
        tiles = [_tile(src, src_mask, win, span), _tile(imgs[0], masks[0], win, span)]
        tiles += [_tile(i, m, win, span) for i, m in zip(imgs, masks, strict=True)]
        lines.append(np.hstack([np.pad(t, ((pad, pad), (pad, pad), (0, 0))) for t in tiles]))
    width = (TILE + 2 * pad) * len(labels)
    header = np.zeros((head, width, 3), np.uint8)
    for i, text in enumerate(labels):
        cv2.putText(
            header,
            text,
            (i * (TILE + 2 * pad) + pad, 15),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
    return np.vstack([header, *lines]) if lines else header


def paste_sheet(rows: list[tuple]) -> np.ndarray:
    """One row per paste sample: for each pasted target (at most 4), the source image and the
    pasted sample around it (mask outlined in red, the pasted box in green). ``rows``:
    (source, source mask, sample, sample mask, [box of each pasted target])."""
    pad, head = 4, 20
    labels = ("source", "pasted") * 4
    lines = []
    for src, src_mask, img, mask, boxes in rows:
        tiles = []
        for win in boxes[:4]:
            tiles += [_tile(src, src_mask, win, 32), _tile(img, mask, win, 32)]
        tiles += [np.zeros((TILE, TILE, 3), np.uint8)] * (8 - len(tiles))
        lines.append(np.hstack([np.pad(t, ((pad, pad), (pad, pad), (0, 0))) for t in tiles]))
    width = (TILE + 2 * pad) * len(labels)
    header = np.zeros((head, width, 3), np.uint8)
    for i, text in enumerate(labels):
        cv2.putText(header, text, (i * (TILE + 2 * pad) + pad, 15), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
    return np.vstack([header, *lines]) if lines else header


def pasted_boxes(added: np.ndarray, ats: list[tuple[int, int]]) -> list[tuple[int, int, int, int]]:
    """The box (row0, col0, row1, col1) of each pasted footprint: the component of the added
    pixels whose box starts at the recorded top-left corner."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(added.astype(np.uint8), connectivity=8)
    boxes = [(int(y), int(x), int(y + h), int(x + w)) for x, y, w, h, _ in stats[1:n]]
    out = []
    for y, x in ats:
        near = min(boxes, key=lambda b: abs(b[0] - y) + abs(b[1] - x), default=(y, x, y + 4, x + 4))
        out.append(near)
    return out
