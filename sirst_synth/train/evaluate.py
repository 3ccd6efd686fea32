"""Evaluate a checkpoint on a split: the model at each image's own size."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sirst_synth.convert import resize_nearest
from sirst_synth.io.files import read_mask
from sirst_synth.io.samples import Item, read_with_range, split_items
from sirst_synth.metrics import MetricTotals, pd_fa_curve
from sirst_synth.train.checkpoint import load_checkpoint, model_from_checkpoint
from sirst_synth.train.device import runtime
from sirst_synth.train.infer import TILE, evaluate_items


def evaluate_checkpoint(
    root: Path,
    checkpoint: Path,
    split: str = "test",
    threshold: float = 0.5,
    device: str = "auto",
    precision: str = "auto",
    curve_thresholds: np.ndarray | None = None,
    fa_mode: str = "identity",
    keep: bool = False,
    skip_errors: bool = False,
    resize: int | None = None,
    tile: int = TILE,
    split_file: Path | None = None,
) -> tuple[MetricTotals, list[dict] | None, list[Item], list[np.ndarray], list[tuple[str, str]]]:
    """Totals, an optional Pd-Fa curve, the items, their probability maps (if asked), skips."""
    state = load_checkpoint(checkpoint)
    if precision == "auto" and state.get("precision") in ("bf16", "fp32"):
        precision = state["precision"]  # score in the precision the model was trained in
    rt = runtime(device, precision)
    model = rt.layout(model_from_checkpoint(state, checkpoint).to(rt.device)).eval()
    items, skipped = split_items(root, split, split_file, skip_errors=skip_errors)
    # read the images as the model was trained on them
    items = read_with_range(items, state["norm"].get("value_range"))
    need = keep or curve_thresholds is not None
    totals, probs = evaluate_items(
        model, items, state["norm"]["mean"], state["norm"]["std"], rt, threshold, need, resize, tile
    )
    curve = None
    if curve_thresholds is not None:
        curve = pd_fa_curve(
            [
                (p, resize_nearest(read_mask(it.mask), resize) if resize else read_mask(it.mask))
                for p, it in zip(probs, items, strict=True)
            ],
            curve_thresholds,
            fa_mode,
        )
    return totals, curve, items, probs, skipped
