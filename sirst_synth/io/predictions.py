"""Score predictions of any model: PNG masks or probability maps named like the images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sirst_synth.convert import resize_nearest, to_gray_u8
from sirst_synth.errors import DataError
from sirst_synth.io.files import decode_raw, read_mask
from sirst_synth.io.layouts import IMAGE_EXTS
from sirst_synth.io.samples import Item, check_items, split_items
from sirst_synth.metrics import MetricTotals, pd_fa_curve, score_probability


def read_probability(path: Path) -> np.ndarray:
    """A prediction as probabilities in [0, 1]: 8-bit /255, 16-bit /65535; a map holding only
    0 and 1 is a binary mask. Colour predictions are read as gray."""
    raw = decode_raw(path)
    if raw.ndim == 3:
        raw = to_gray_u8(raw)
    if raw.dtype == np.uint16:
        return raw.astype(np.float32) / 65535.0
    if np.issubdtype(raw.dtype, np.floating):
        return raw.astype(np.float32)
    if raw.max() <= 1:
        return raw.astype(np.float32)
    return raw.astype(np.float32) / 255.0


def find_prediction(pred_dir: Path, stem: str) -> Path:
    for ext in IMAGE_EXTS:
        p = pred_dir / f"{stem}{ext}"
        if p.is_file():
            return p
    raise DataError(f"{pred_dir}: no prediction named {stem}.png; name predictions like the images")


def score_predictions(
    root: Path,
    pred_dir: Path,
    split: str = "test",
    threshold: float = 0.5,
    curve_thresholds=None,
    fa_mode: str = "identity",
    skip_errors: bool = False,
    resize: int | None = None,
) -> tuple[MetricTotals, list[dict] | None, list[Item], list[tuple[str, str]]]:
    """Metric totals (and optionally a Pd-Fa curve) of a folder of predictions; with ``resize``
    labels and predictions are brought to N x N first (DNA-Net's protocol)."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DataError(f"--pred-dir {pred_dir}: folder not found")
    items, skipped = check_items(split_items(root, split), skip_errors)
    totals = MetricTotals()
    pairs = []
    for it in items:
        path = find_prediction(pred_dir, it.stem)
        prob, label = read_probability(path), read_mask(it.mask)
        if resize:
            prob, label = resize_nearest(prob, resize), resize_nearest(label, resize)
        totals.add(score_probability(prob, label, threshold, str(path)))
        if curve_thresholds is not None:
            pairs.append((prob, label))
    curve = pd_fa_curve(pairs, curve_thresholds, fa_mode) if curve_thresholds is not None else None
    return totals, curve, items, skipped
