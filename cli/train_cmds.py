"""train and evaluate: torch is imported only when these commands run."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from sirst_synth.cli.options import (
    AsJson,
    Device,
    DeviceOpt,
    JsonOut,
    Model,
    NegLoss,
    OnError,
    OnErrorOpt,
    Overwrite,
    Precision,
    PrecisionOpt,
    Quiet,
    RangeOpt,
    Split,
    TrainSplit,
    app,
    check_json_out,
    print_skipped,
    recipe_from,
    resume_option,
)
from sirst_synth.cli.ui import console, emit, emit_summary, progress_for

from sirst_synth.errors import UsageError
from sirst_synth.names import (
    AUGMENTS,
    METRIC_SCALE,
    OPTIMIZERS,
    SCHEDULES,
    in_units,
    metric_label,
)
from sirst_synth.recipe import SynthRecipe


class Synth(str, Enum):
    offline = "offline"
    online = "online"


Optimizer = Enum("Optimizer", {n: n for n in OPTIMIZERS}, type=str)
Scheduler = Enum("Scheduler", {n: n for n in SCHEDULES}, type=str)
Augment = Enum("Augment", {n: n for n in AUGMENTS}, type=str)


@app.command("train")
def train_cmd(
    data: Annotated[
        Path, typer.Argument(help="A generate output, or any dataset generate reads (baseline).")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Run folder (last.pt, best.pt, metrics.jsonl).")
    ],
    recipe: Annotated[
        str | None, typer.Option("--recipe", help="Recipe file or shipped name, e.g. train.")
    ] = None,
    model: Annotated[
        Model | None, typer.Option("--model", help="The detector (recipe: aff-unet).")
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs (recipe: 1500).")] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            "--steps", help="Train exactly N optimiser steps instead of epochs (cosine over steps)."
        ),
    ] = None,
    eval_every_steps: Annotated[
        int | None,
        typer.Option("--eval-every-steps", help="With --steps: validate every N steps."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Batch per process (recipe: 256).")
    ] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Learning rate (recipe: 0.05).")] = None,
    optimizer: Annotated[
        Optimizer | None,
        typer.Option(
            "--optimizer", help="adagrad (the paper) or adam (BasicIRSTD); recipe: adagrad."
        ),
    ] = None,
    scheduler: Annotated[
        Scheduler | None,
        typer.Option(
            "--scheduler",
            help="Learning rate over the run: cosine, multistep (recipe milestones, gamma) or "
            "constant; recipe: cosine.",
        ),
    ] = None,
    warmup: Annotated[
        int | None,
        typer.Option("--warmup", help="Linear warm-up steps (epochs in epoch mode); recipe: 0."),
    ] = None,
    pos_prob: Annotated[
        float | None,
        typer.Option(
            "--pos-prob",
            help="Chance that a crop holds a target pixel (BasicIRSTD: 0.5); recipe: 0.",
        ),
    ] = None,
    augment: Annotated[
        Augment | None,
        typer.Option(
            "--augment",
            help="flips: vertical, horizontal and transpose, each p = 0.5; recipe: none.",
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed (recipe: 0).")] = None,
    neg_loss: Annotated[
        NegLoss | None,
        typer.Option("--neg-loss", help="L_Neg over a target's 4 rotations (recipe: sum)."),
    ] = None,
    crop: Annotated[
        int | None, typer.Option("--crop", help="Training crop size (recipe: 256).")
    ] = None,
    eval_every: Annotated[
        int | None, typer.Option("--eval-every", help="Validate every N epochs (recipe: 10).")
    ] = None,
    synth: Annotated[
        Synth,
        typer.Option(
            "--synth",
            help="offline: train on DATA as it is; online: fresh SIRST-5K samples from --bank "
            "every epoch, nothing written.",
        ),
    ] = Synth.offline,
    bank: Annotated[
        Path | None, typer.Option("--bank", help="Noise bank of DATA (--synth online).")
    ] = None,
    synth_recipe: Annotated[
        str | None,
        typer.Option("--synth-recipe", help="Synthesis recipe for --synth online (sirst5k)."),
    ] = None,
    alpha: Annotated[
        float | None, typer.Option("--alpha", help="--synth online: blend weight (0.1).")
    ] = None,
    s: Annotated[int | None, typer.Option("--s", help="--synth online: window (3).")] = None,
    synth_count: Annotated[
        int | None,
        typer.Option(
            "--synth-count",
            help="--synth online: development samples per epoch (all 4 x targets).",
        ),
    ] = None,
    device: DeviceOpt = Device.auto,
    precision: PrecisionOpt = Precision.auto,
    loader_workers: Annotated[
        int,
        typer.Option(
            "--loader-workers",
            min=0,
            help="DataLoader worker processes (batches do not depend on it).",
        ),
    ] = 0,
    resume: Annotated[
        bool, resume_option("OUT/last.pt: the run goes on exactly as if never stopped")
    ] = False,
    overwrite: Overwrite = False,
    on_error: OnErrorOpt = OnError.fail,
    compile_model: Annotated[
        bool, typer.Option("--compile", help="torch.compile the model.")
    ] = False,
    stop_after: Annotated[
        int | None,
        typer.Option(
            "--stop-after", min=1, help="Stop after N epochs of this invocation (resume later)."
        ),
    ] = None,
    value_range: RangeOpt = "full",
    train_split: TrainSplit = None,
    val: Annotated[
        str | None,
        typer.Option(
            "--val",
            help="DIR or DIR:SPLITFILE: validate there (best.pt is chosen on it) instead of "
            "on DATA's test split, e.g. SIRST v1's idx_427/val.txt.",
        ),
    ] = None,
    quiet: Quiet = False,
    as_json: AsJson = False,
    json_out: JsonOut = None,
) -> None:
    """Train the AFF U-Net (Soft-IoU + L_Neg; the paper's Adagrad and cosine annealing by
    default, BasicIRSTD's regime with --recipe basicirstd)."""
    import os

    check_json_out(json_out, overwrite, [data, bank], [("--out", out)])

    from sirst_synth.api import train

    if synth == Synth.offline and any(v is not None for v in (alpha, s, synth_count, synth_recipe)):
        raise UsageError("--alpha, --s, --synth-count and --synth-recipe go with --synth online")
    sr = None
    if synth == Synth.online:
        sr = recipe_from(SynthRecipe, synth_recipe, {"alpha": alpha, "s": s, "count": synth_count})
    rank0 = int(os.environ.get("RANK", 0)) == 0
    res = train(
        data,
        out=out,
        recipe=recipe,
        device=device.value,
        precision=precision.value,
        loader_workers=loader_workers,
        resume=resume,
        compile=compile_model,
        stop_after=stop_after,
        skip_errors=on_error == OnError.skip,
        synth=synth.value,
        bank=bank,
        synth_recipe=sr,
        value_range=value_range,
        train_split=train_split,
        val=val,
        progress=progress_for(quiet or not rank0, as_json),
        log=(lambda m: console.print(escape(m), highlight=False))
        if rank0 and not (quiet or as_json)
        else None,
        model=model and model.value,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        neg_loss=neg_loss and neg_loss.value,
        crop=crop,
        eval_every=eval_every,
        steps=steps,
        eval_every_steps=eval_every_steps,
        optimizer=optimizer and optimizer.value,
        scheduler=scheduler and scheduler.value,
        warmup=warmup,
        pos_prob=pos_prob,
        augment=augment and augment.value,
    )
    if not rank0:
        return
    print_skipped(res.skipped)
    emit_summary(
        "train",
        res,
        {
            "out": "run",
            "parameters": "parameters",
            "epochs_run": "epochs run",
            "steps": "optimiser steps",
            "last_epoch": "last epoch",
            "skipped": "skipped images",
        },
        quiet,
        as_json,
        json_out,
        [
            ("final loss", f"{res.final_loss:.4f}"),
            ("images/s (last epoch)", f"{res.images_per_s:.1f}"),
            *(_best(k, v) for k, v in res.best.items()),
        ],
    )


def _best(k: str, v) -> tuple[str, str]:
    """A row of train's table: metrics in the table units (names.METRIC_UNIT)."""
    if k in METRIC_SCALE:
        return f"best {metric_label(k)}", in_units(k, v)
    return f"best {k}", f"{v:.4f}" if isinstance(v, float) else str(v)


@app.command("evaluate")
def evaluate_cmd(
    dataset: Annotated[
        Path, typer.Argument(help="Dataset (or generate output) with the split to score.")
    ],
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="best.pt / last.pt of a train run.")
    ] = None,
    pred_dir: Annotated[
        Path | None,
        typer.Option(
            "--pred-dir",
            help="Predictions of any model, named like the images (PNG, BMP, JPEG, TIFF or "
            ".npy; extensions in any case).",
        ),
    ] = None,
    pred_kind: Annotated[
        str,
        typer.Option(
            "--pred-kind",
            help="With --pred-dir: auto (masks, probability maps; flat-region label maps are "
            "refused as ambiguous), probability (/255, /65535 or floats in [0, 1]), labels "
            "(non-zero is target).",
        ),
    ] = "auto",
    split: Annotated[
        Split,
        typer.Option("--split", help="all: every image/mask pair (no split files needed)."),
    ] = Split.test,
    split_file: Annotated[
        Path | None,
        typer.Option(
            "--split-file",
            help="Score the stems listed in this file (one a line) instead of a split.",
        ),
    ] = None,
    threshold: Annotated[
        float, typer.Option("--threshold", help="Probability above which a pixel is target.")
    ] = 0.5,
    fa_compat: Annotated[
        str,
        typer.Option(
            "--fa-compat",
            help="identity: unmatched components by identity (current BasicIRSTD, since "
            "2024-01-25); dnanet: DNA-Net's area-value rule (BasicIRSTD before 2024-01-25).",
        ),
    ] = "identity",
    resize: Annotated[
        int | None,
        typer.Option(
            "--resize",
            help="Score at N x N as DNA-Net does (masks and predictions nearest, images "
            "bilinear; the model runs at N x N).",
        ),
    ] = None,
    tile: Annotated[
        int | None,
        typer.Option(
            "--tile",
            help="With --checkpoint: predict images with a side larger than N in N x N tiles, "
            "same output, less memory (default 1024; 0: whole images).",
        ),
    ] = None,
    save_pred: Annotated[
        Path | None,
        typer.Option("--save-pred", help="Write probability maps (PNG, 0..255) here."),
    ] = None,
    curve: Annotated[
        Path | None, typer.Option("--curve", help="Write a Pd-Fa curve PNG over thresholds.")
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option("--json-out", help="Also write the metrics as JSON to this file."),
    ] = None,
    per_image: Annotated[
        Path | None,
        typer.Option(
            "--per-image",
            help="Also write every image's counts (IoU, targets, detected, false-alarm "
            "pixels) as CSV to this file.",
        ),
    ] = None,
    device: DeviceOpt = Device.auto,
    precision: PrecisionOpt = Precision.auto,
    on_error: OnErrorOpt = OnError.fail,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Replace existing --curve / --json-out / --per-image files."
        ),
    ] = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """IoU, nIoU, Pd and Fa as DNA-Net / BasicIRSTD define them."""
    from sirst_synth.api import evaluate

    m = evaluate(
        dataset,
        checkpoint=checkpoint,
        pred_dir=pred_dir,
        split=split.value,
        split_file=split_file,
        threshold=threshold,
        fa_compat=fa_compat,
        resize=resize,
        device=device.value,
        precision=precision.value,
        skip_errors=on_error == OnError.skip,
        save_pred=save_pred,
        curve=curve,
        json_out=json_out,
        overwrite=overwrite,
        tile=tile,
        pred_kind=pred_kind,
        per_image=per_image,
    )
    print_skipped(m["skipped"])
    worst = m["most_false_alarms"]
    rows = [
        ("images", m["images"]),
        *((metric_label(k), in_units(k, m[k])) for k in ("IoU", "nIoU", "Pd", "Fa")),
        ("targets / detected", f"{m['targets']} / {m['detected']}"),
        ("images with false alarms", m["images_with_false_alarm"]),
        *(
            [("most false-alarm pixels", f"{worst['image']}: {worst['fa_pixels']:,} "
              f"({worst['share']:.0%} of all)")]
            if worst
            else []
        ),
    ]  # fmt: skip
    size = f", {resize}x{resize}" if resize else ""
    what = split_file.name if split_file is not None else split.value
    emit(f"evaluate ({what}, Fa: {fa_compat}{size})", rows, m, quiet, as_json)
