"""evaluate: score a checkpoint or a folder of predictions, and write what was asked for.

The command layer over the metrics core and the readers in ``io``: the checkpoint path imports
torch (lazily); the predictions path needs none.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from sirst_synth.convert import PRED_KINDS, quantise_u8, resize_nearest
from sirst_synth.errors import DataError, UsageError, skip_reason
from sirst_synth.io.files import (
    check_folder_path,
    check_output_file,
    encode_png,
    inside,
    read_mask,
    write_bytes_atomic,
    write_text_atomic,
)
from sirst_synth.io.predictions import find_prediction, prediction_index, read_probability
from sirst_synth.io.samples import Item, split_items
from sirst_synth.metrics import (
    FA_MODES,
    PER_IMAGE_COLUMNS,
    ImageScore,
    MetricTotals,
    most_false_alarms,
    pd_fa_curve,
    score_probability,
)

#: Thresholds of the Pd-Fa curve.
CURVE_THRESHOLDS = np.round(np.linspace(0.05, 0.95, 19), 2)


def evaluate(
    root: Path,
    checkpoint: Path | None = None,
    pred_dir: Path | None = None,
    split: str = "test",
    threshold: float = 0.5,
    fa_mode: str = "identity",
    save_pred: Path | None = None,
    curve: Path | None = None,
    json_out: Path | None = None,
    device: str = "auto",
    skip_errors: bool = False,
    precision: str = "auto",
    curve_points: bool = False,
    resize: int | None = None,
    overwrite: bool = False,
    tile: int | None = None,
    split_file: Path | None = None,
    pred_kind: str = "auto",
    per_image: Path | None = None,
) -> dict:
    """The split's IoU, nIoU, Pd, Fa (and Pd-Fa curve) as a dict; files written as asked.
    ``per_image``: a CSV of every image's counts (``MetricTotals.per_image``)."""
    if (checkpoint is None) == (pred_dir is None):
        raise UsageError(
            "pass exactly one of --checkpoint (a trained model) or --pred-dir (predictions)"
        )
    if not 0.0 <= threshold < 1.0:
        raise UsageError(f"--threshold must be in [0, 1), got {threshold}")
    if fa_mode == "basicirstd":
        raise UsageError(
            "--fa-compat basicirstd was renamed: the area-value Fa is DNA-Net's (and BasicIRSTD's "
            "before 2024-01-25), now --fa-compat dnanet; current BasicIRSTD equals the default, identity"
        )
    if resize is not None and not 16 <= resize <= 8192:
        raise UsageError(f"--resize must be a size in 16..8192 pixels, got {resize}")
    if tile is not None and (tile < 0 or tile % 16):
        raise UsageError(f"--tile must be 0 (whole images) or a multiple of 16, got {tile}")
    if tile is not None and pred_dir is not None:
        raise UsageError("--tile goes with --checkpoint: --pred-dir predictions are only read")
    if pred_kind not in PRED_KINDS:
        raise UsageError(f"--pred-kind must be one of {', '.join(PRED_KINDS)}, got {pred_kind!r}")
    if pred_kind != "auto" and pred_dir is None:
        raise UsageError("--pred-kind goes with --pred-dir: it says how prediction files read")
    if fa_mode not in FA_MODES:
        raise UsageError(f"--fa-compat must be one of {', '.join(FA_MODES)}, got {fa_mode!r}")
    reads = [root, pred_dir, checkpoint]  # a run folder beside the checkpoint may take the files
    outputs = [("--curve", curve), ("--json-out", json_out), ("--per-image", per_image)]
    for flag, path in outputs:
        if path is not None:
            others = [o for o in outputs if o[0] != flag] + [("--save-pred", save_pred)]
            check_output_file(path, flag, overwrite, reads, others)
    if save_pred is not None:
        for r in reads:
            if r is not None and inside(save_pred, r):
                raise UsageError(
                    f"--save-pred {save_pred} lies inside {r}, which this command reads; write elsewhere"
                )
        if pred_dir is not None:
            raise UsageError(
                "--save-pred goes with --checkpoint: --pred-dir already holds predictions"
            )
        check_folder_path(save_pred, "--save-pred", "for the probability maps")
        if save_pred.exists() and any(save_pred.iterdir()):
            raise UsageError(f"--save-pred {save_pred} is not empty; choose a new folder")
    thresholds = CURVE_THRESHOLDS if curve is not None or curve_points else None
    if pred_dir is not None:
        totals, points, items, skipped = score_predictions(
            root, pred_dir, split, threshold, thresholds, fa_mode, skip_errors, resize, split_file,
            pred_kind,
        )  # fmt: skip
    else:
        from sirst_synth.train.evaluate import evaluate_checkpoint
        from sirst_synth.train.infer import TILE

        totals, points, items, probs, skipped = evaluate_checkpoint(
            root,
            checkpoint,
            split,
            threshold,
            device,
            precision,
            thresholds,
            fa_mode,
            keep=save_pred is not None,
            skip_errors=skip_errors,
            resize=resize,
            tile=TILE if tile is None else tile,
            split_file=split_file,
        )
        if save_pred is not None:
            save_pred.mkdir(parents=True, exist_ok=True)
            for it, p in zip(items, probs, strict=True):
                levels = quantise_u8(p * 255)
                write_bytes_atomic(save_pred / f"{it.stem}.png", encode_png(levels))
    rows = totals.per_image([it.stem for it in items], fa_mode)
    data = {
        "source": str(checkpoint or pred_dir),
        "split": split if split_file is None else str(split_file),
        "threshold": threshold,
        "fa_compat": fa_mode,
        "resize": resize,
        **totals.summary(fa_mode),
        "most_false_alarms": most_false_alarms(rows),
        "skipped": skipped,
    }
    if per_image is not None:
        write_text_atomic(per_image, per_image_csv(rows))
    if points is not None:
        data["curve"] = points
    if curve is not None:
        from sirst_synth.plots import pd_fa_png

        write_bytes_atomic(curve, pd_fa_png({Path(str(checkpoint or pred_dir)).name: points}))
    if json_out is not None:
        write_text_atomic(json_out, json.dumps(data, indent=1) + "\n")
    return data


def per_image_csv(rows: list[dict]) -> str:
    """The per-image rows as CSV text, the header first (IoU to 6 decimals)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=PER_IMAGE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow(r | {"IoU": f"{r['IoU']:.6f}"})
    return buf.getvalue()


def read_per_image_csv(path: Path) -> dict[str, ImageScore]:
    """The per-image counts ``per_image_csv`` wrote (``evaluate --per-image``), by image: what
    ``compare`` needs of a model when its checkpoint is gone (a study publishes these). Each
    row is checked: counts are whole numbers >= 0 that fit together (intersection <= union <=
    pixels, detected <= targets, false-alarm pixels <= pixels), and no image comes twice."""
    need = tuple(c for c in PER_IMAGE_COLUMNS if c != "IoU")  # IoU follows from the counts
    try:
        reader = csv.DictReader(io.StringIO(Path(path).read_text()))
        header = reader.fieldnames or []
        rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read a per-image CSV ({exc})") from None
    if not set(need) <= set(header):
        raise DataError(
            f"{path}: not a per-image file of evaluate --per-image (columns {', '.join(need)})"
        )
    scores = {}
    for line, r in enumerate(rows, start=2):  # line 1 is the header
        n = {}
        for k in need[1:]:
            value = (r.get(k) or "").strip()
            if not value.isdigit():
                raise DataError(_bad_row(path, line, f"{k} {value!r} is not a whole number >= 0"))
            n[k] = int(value)
        for small, big in (("intersection", "union"), ("union", "pixels"),
                           ("detected", "targets"), ("fa_pixels", "pixels")):  # fmt: skip
            if n[small] > n[big]:
                raise DataError(_bad_row(path, line, f"{small} {n[small]} > {big} {n[big]}"))
        if r["image"] in scores:
            raise DataError(_bad_row(path, line, f"image {r['image']!r} comes twice"))
        scores[r["image"]] = ImageScore(
            n["intersection"], n["union"], n["targets"], n["detected"], n["fa_pixels"],
            n["fa_pixels"], n["pixels"],
        )  # fmt: skip
    if not scores:
        raise DataError(f"{path}: no image rows; score a split with evaluate --per-image")
    return scores


def _bad_row(path: Path, line: int, why: str) -> str:
    return f"{path} line {line}: {why}; write it again with evaluate --per-image"


def score_predictions(
    root: Path,
    pred_dir: Path,
    split: str = "test",
    threshold: float = 0.5,
    curve_thresholds: np.ndarray | None = None,
    fa_mode: str = "identity",
    skip_errors: bool = False,
    resize: int | None = None,
    split_file: Path | None = None,
    pred_kind: str = "auto",
) -> tuple[MetricTotals, list[dict] | None, list[Item], list[tuple[str, str]]]:
    """Metric totals (and optionally a Pd-Fa curve) of a folder of predictions; with ``resize``
    labels and predictions are brought to N x N first (DNA-Net's protocol)."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DataError(f"--pred-dir {pred_dir}: folder not found")
    items, skipped = split_items(root, split, split_file, skip_errors=skip_errors)
    index = prediction_index(pred_dir)
    totals = MetricTotals()
    pairs = []
    scored = []
    for it in items:
        try:  # --on-error skip: a missing, unreadable or wrong-size prediction is listed
            path = find_prediction(index, pred_dir, it.stem)
            prob, label = read_probability(path, pred_kind), read_mask(it.mask)
            if resize:
                prob, label = resize_nearest(prob, resize), resize_nearest(label, resize)
            score = score_probability(prob, label, threshold, str(path))
        except DataError as exc:
            if not skip_errors:
                raise
            skipped.append((it.stem, skip_reason(exc)))
            continue
        totals.add(score)
        scored.append(it)
        if curve_thresholds is not None:
            pairs.append((prob, label))
    items = scored
    curve = pd_fa_curve(pairs, curve_thresholds, fa_mode) if curve_thresholds is not None else None
    return totals, curve, items, skipped
