"""study: the paper's ablation on the user's data, one resumable command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from sirst_synth.cli.options import (
    AsJson,
    Device,
    DeviceOpt,
    JsonOut,
    Quiet,
    app,
    check_json_out,
    read_recipe_text,
)
from sirst_synth.cli.ui import StackedBars, console, emit

from sirst_synth.progress import Progress


@app.command("study")
def study_cmd(
    data: Annotated[Path, typer.Argument(help="Dataset with a training and a test split.")],
    bank: Annotated[Path, typer.Option("--bank", help="Noise bank of DATA (build-noise-bank).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Study folder (new, or --resume).")],
    recipe: Annotated[
        str, typer.Option("--recipe", help="Study recipe: a YAML file or a name (study-cpu).")
    ] = "study-cpu",
    seeds: Annotated[
        int | None, typer.Option("--seeds", help="Seeds per arm (recipe: seeds).")
    ] = None,
    device: DeviceOpt = Device.auto,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue a stopped study; finished runs are kept.")
    ] = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
    json_out: JsonOut = None,
) -> None:
    """Train every arm (baseline, n2n, sirst5k, ...) at equal steps over seeds; score the final
    models on the untouched test split; write results and plots."""
    from sirst_synth.study import load_study_recipe, run_study

    check_json_out(json_out, False, [data])
    text, source = read_recipe_text(recipe)
    r = load_study_recipe(text, source, seeds)
    bars = None if quiet or as_json else StackedBars()
    res = run_study(
        data,
        bank,
        out,
        r,
        resume,
        device.value,
        bars.overall if bars else Progress(),
        bars.current if bars else Progress(),
        log=(lambda m: None)
        if quiet or as_json
        else (lambda m: console.print(escape(m), highlight=False)),
    )
    if bars:
        bars.close()
    rows = [("study", res.out), ("runs", len(res.runs)), ("reused from before", res.reused)]
    for row in res.table:
        rows.append(
            (
                row["arm"],
                f"IoU {row['IoU'][0] * 100:.2f} ± {row['IoU'][1] * 100:.2f}, "
                f"Pd {row['Pd'][0] * 100:.2f} ± {row['Pd'][1] * 100:.2f}",
            )
        )
    emit(
        "study (final models, test split)",
        rows,
        {"out": str(res.out), "runs": len(res.runs), "reused": res.reused, "arms": res.table},
        quiet,
        as_json,
        json_out,
    )
