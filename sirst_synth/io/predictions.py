"""Score predictions of any model: PNG masks or probability maps named like the images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sirst_synth.convert import resize_nearest, to_probability
from sirst_synth.errors import DataError
from sirst_synth.io.files import read_converted, read_mask
from sirst_synth.io.layouts import IMAGE_EXTS
from sirst_synth.io.samples import Item, check_items, split_items
from sirst_synth.metrics import MetricTotals, pd_fa_curve, score_probability


def read_probability(path: Path) -> np.ndarray:
    """A prediction file as probabilities in [0, 1] (``convert.to_probability``'s one rule);
    an ambiguous file is a data error that names it."""
    return read_converted(path, to_probability, "or pass predictions as 8-bit gray maps")


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
    scored = []
    for it in items:
        try:  # --on-error skip: a missing, unreadable or wrong-size prediction is listed
            path = find_prediction(pred_dir, it.stem)
            prob, label = read_probability(path), read_mask(it.mask)
            if resize:
                prob, label = resize_nearest(prob, resize), resize_nearest(label, resize)
            score = score_probability(prob, label, threshold, str(path))
        except DataError as exc:
            if not skip_errors:
                raise
            skipped.append((it.stem, str(exc)))
            continue
        totals.add(score)
        scored.append(it)
        if curve_thresholds is not None:
            pairs.append((prob, label))
    items = scored
    curve = pd_fa_curve(pairs, curve_thresholds, fa_mode) if curve_thresholds is not None else None
    return totals, curve, items, skipped
