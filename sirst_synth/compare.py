"""compare: two models on one test split, for a user with one run of each.

The difference in IoU (recomputed from summed intersections and unions) and a percentile
interval from resampling the test images, the same images for both models. It says how much
the difference depends on which test images were drawn; it says nothing about how much it
would move with another training seed (the study measures that).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sirst_synth.errors import DataError, UsageError
from sirst_synth.evaluation import read_per_image_csv, score_predictions
from sirst_synth.metrics import MetricTotals
from sirst_synth.seeding import rng_for
from sirst_synth.stats import paired_bootstrap_iou

NOTE = (
    "resamples test images only (the same images for both): it does not measure how the "
    "difference varies between training seeds"
)


def compare(
    root: Path,
    a: Path,
    b: Path,
    split: str = "test",
    split_file: Path | None = None,
    threshold: float = 0.5,
    device: str = "auto",
    precision: str = "auto",
    skip_errors: bool = False,
    seed: int = 0,
    resamples: int = 10000,
) -> dict:
    """IoU of ``a`` and ``b`` (each a checkpoint file, a folder of predictions, or the CSV of
    ``evaluate --per-image``) on one split, ``a`` minus ``b`` and its 95% paired bootstrap
    interval over the split's images. A CSV is read as it is (the split was scored when it was
    written), so two runs compare without their checkpoints."""
    if resamples < 100:
        raise UsageError(f"--resamples must be at least 100, got {resamples}")
    scored = {}
    for name, model in (("A", Path(a)), ("B", Path(b))):
        if model.is_file() and model.suffix.lower() == ".csv":
            scored[name] = (read_per_image_csv(model), [])
            continue
        if model.is_dir():
            totals, _, items, skipped = score_predictions(
                root, model, split, threshold, None, "identity", skip_errors, None, split_file
            )
        elif model.is_file():
            from sirst_synth.train.evaluate import evaluate_checkpoint

            totals, _, items, _, skipped = evaluate_checkpoint(
                root, model, split, threshold, device, precision, skip_errors=skip_errors,
                split_file=split_file,
            )  # fmt: skip
        else:
            raise UsageError(
                f"{name} {model}: neither a checkpoint file, a prediction folder nor a "
                "per-image CSV"
            )
        scored[name] = ({it.stem: s for it, s in zip(items, totals.scores, strict=True)}, skipped)
    both = [stem for stem in scored["A"][0] if stem in scored["B"][0]]
    if not both:
        raise DataError(f"{root}: no test image was scored for both A and B")
    per = {k: [scored[k][0][stem] for stem in both] for k in ("A", "B")}
    diff, (lo, hi) = paired_bootstrap_iou(
        np.array([s.inter for s in per["A"]]), np.array([s.union for s in per["A"]]),
        np.array([s.inter for s in per["B"]]), np.array([s.union for s in per["B"]]),
        rng_for(seed, "compare"), resamples,
    )  # fmt: skip
    summaries = {k: MetricTotals(per[k]).summary() for k in ("A", "B")}
    left_out = sorted(set(scored["A"][0]) ^ set(scored["B"][0]))
    return {
        "images": len(both),
        "A": {"model": str(a), **summaries["A"]},
        "B": {"model": str(b), **summaries["B"]},
        "IoU_diff": diff,
        "ci": [lo, hi],
        "level": 0.95,
        "resamples": resamples,
        "seed": seed,
        "scored_by_one_only": left_out,
        "skipped": scored["A"][1] + scored["B"][1],
        "note": NOTE,
    }
