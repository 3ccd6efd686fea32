"""compare: two models on one test split, with a paired bootstrap over its images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from sirst_synth.cli.options import (
    AsJson,
    Device,
    DeviceOpt,
    OnError,
    OnErrorOpt,
    Precision,
    PrecisionOpt,
    Quiet,
    Split,
    app,
    print_skipped,
)
from sirst_synth.cli.ui import emit

from sirst_synth.names import in_units, metric_label


@app.command("compare")
def compare_cmd(
    dataset: Annotated[Path, typer.Argument(help="Dataset with the split to score.")],
    a: Annotated[
        Path,
        typer.Argument(
            help="Model A: a checkpoint (.pt), a prediction folder, or evaluate's --per-image CSV."
        ),
    ],
    b: Annotated[
        Path,
        typer.Argument(
            help="Model B: a checkpoint (.pt), a prediction folder, or evaluate's --per-image CSV."
        ),
    ],
    split: Annotated[
        Split, typer.Option("--split", help="The split both are scored on.")
    ] = Split.test,
    split_file: Annotated[
        Path | None, typer.Option("--split-file", help="Score the stems listed in this file.")
    ] = None,
    threshold: Annotated[
        float, typer.Option("--threshold", help="Probability above which a pixel is target.")
    ] = 0.5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the resampling.")] = 0,
    resamples: Annotated[int, typer.Option("--resamples", help="Bootstrap resamples.")] = 10000,
    device: DeviceOpt = Device.auto,
    precision: PrecisionOpt = Precision.auto,
    on_error: OnErrorOpt = OnError.fail,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """IoU of A and B on one split, A - B and its 95% interval from resampling test images
    (one run each: it does not measure seed-to-seed variation)."""
    from sirst_synth.api import compare

    m = compare(
        dataset, a=a, b=b, split=split.value, split_file=split_file, threshold=threshold,
        device=device.value, precision=precision.value, skip_errors=on_error == OnError.skip,
        seed=seed, resamples=resamples,
    )  # fmt: skip
    print_skipped(m["skipped"])
    lo, hi = m["ci"]
    rows = [
        ("images (scored for both)", m["images"]),
        (f"{metric_label('IoU')}, A", in_units("IoU", m["A"]["IoU"])),
        (f"{metric_label('IoU')}, B", in_units("IoU", m["B"]["IoU"])),
        (
            f"A - B, {metric_label('IoU')} [95% CI]",
            f"{in_units('IoU', m['IoU_diff'], True)} "
            f"[{in_units('IoU', lo, True)}, {in_units('IoU', hi, True)}]",
        ),
        ("what the interval covers", "test images resampled, not training seeds"),
    ]
    emit("compare (paired bootstrap over test images)", rows, m, quiet, as_json)
