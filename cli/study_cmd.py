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
    Overwrite,
    Quiet,
    app,
    check_json_out,
    resume_option,
)
from sirst_synth.cli.ui import StackedBars, console, emit

from sirst_synth.names import in_units, metric_label
from sirst_synth.progress import Progress


@app.command("study")
def study_cmd(
    data: Annotated[Path, typer.Argument(help="Dataset with a training and a test split.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Study folder (new, or --resume).")],
    bank: Annotated[
        Path | None,
        typer.Option(
            "--bank",
            help="Optional: a noise bank, used where it was built from exactly the images a "
            "run trains on; the study builds the bank of every training subset itself.",
        ),
    ] = None,
    recipe: Annotated[
        str,
        typer.Option("--recipe", help="Study recipe: a YAML file or a name (study-cpu-6000)."),
    ] = "study-cpu-6000",
    seeds: Annotated[
        int | None, typer.Option("--seeds", help="Seeds per arm (recipe: seeds).")
    ] = None,
    extra_test: Annotated[
        list[str] | None,
        typer.Option(
            "--extra-test",
            help="NAME=DIR[:SPLITFILE]: also score every final model there (repeatable), "
            "e.g. unseen scenes.",
        ),
    ] = None,
    publish: Annotated[
        Path | None,
        typer.Option(
            "--publish",
            help="Copy every finished run's small files (no checkpoints) and the results here; "
            "--resume takes a run found here as finished.",
        ),
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="Runs trained at once, each in its own process with the recipe's threads "
            "(results do not depend on it).",
        ),
    ] = 1,
    device: DeviceOpt = Device.auto,
    resume: Annotated[bool, resume_option("its finished runs")] = False,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
    json_out: JsonOut = None,
) -> None:
    """Train every arm at equal steps over seeds (validation split to watch), score the final
    models once on the test split, compare each arm with the reference seed by seed; write
    results, verdicts and plots."""
    from sirst_synth.api import study

    check_json_out(json_out, overwrite, [data, bank], [("--out", out), ("--publish", publish)])
    bars = None if quiet or as_json else StackedBars()
    res = study(
        data,
        out=out,
        recipe=recipe,
        seeds=seeds,
        resume=resume,
        device=device.value,
        extra_tests=tuple(extra_test or ()),
        publish=publish,
        bank=bank,
        jobs=jobs,
        overall=bars.overall if bars else Progress(),
        progress=bars.current if bars else Progress(),
        log=None if quiet or as_json else (lambda m: console.print(escape(m), highlight=False)),
    )
    if bars:
        bars.close()
    rows = [("study", res.out), ("runs", len(res.runs)), ("reused from before", res.reused)]
    rows += _arm_rows(res.table, res.comparisons)
    emit(
        "study (final models, test split)",
        rows,
        {
            "out": str(res.out),
            "runs": len(res.runs),
            "reused": res.reused,
            "arms": res.table,
            "comparisons": res.comparisons,
        },
        quiet,
        as_json,
        json_out,
    )


def _arm_rows(table: list[dict], comparisons: list[dict]) -> list[tuple[str, str]]:
    """Per arm: its mean IoU and Pd, and its IoU verdict against the arm it is read against."""
    verdicts = {
        c["arm"]: f"vs {c['against']}: {c['all']['IoU']['verdict']}"
        for c in comparisons
        if "IoU" in c["all"]
    }
    rows = []
    for row in table:
        cell = f"{_pair('IoU', row['IoU'])}, {_pair('Pd', row['Pd'])}"
        if row["arm"] in verdicts:
            cell += f"; {verdicts[row['arm']]}"
        rows.append((row["arm"], cell))
    return rows


@app.command("study-report")
def study_report_cmd(
    study: Annotated[Path, typer.Argument(help="A study folder (or its --publish folder).")],
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Write a study's results (results.json/.csv/.md and plots) again from its finished runs,
    training nothing: for a stopped study, or after an update of the report."""
    from sirst_synth.study.status import rewrite_results

    table, comparisons = rewrite_results(study)
    rows = [("results", study / "results.md"), ("runs", sum(row["runs"] for row in table))]
    rows += _arm_rows(table, comparisons)
    emit(
        "study report (final models, test split)",
        rows,
        {"out": str(study), "arms": table, "comparisons": comparisons},
        quiet,
        as_json,
    )


def _pair(key: str, ms) -> str:
    mean, std = ms
    return f"{metric_label(key)} {in_units(key, mean)}" + (
        "" if std is None else f" ± {in_units(key, std)}"
    )


@app.command("length-check")
def length_check_cmd(
    short: Annotated[Path, typer.Argument(help="A study (or its --publish folder).")],
    long: Annotated[Path, typer.Argument(help="The study of the same arm at more steps.")],
    arm: Annotated[str, typer.Option("--arm", help="The arm in SHORT.")] = "reference",
    long_arm: Annotated[
        str | None, typer.Option("--long-arm", help="The arm in LONG (default: the same as --arm).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder for length.md and the curve (created if new)."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace length.md and the curve in --out.")
    ] = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Is the study long enough? Its arm at more steps, same seeds, must gain less than 1.5
    validation IoU points (x100) on average."""
    from sirst_synth.io.files import (
        check_output_file,
        make_folders,
        write_bytes_atomic,
        write_text_atomic,
    )
    from sirst_synth.study.length import length_check, length_markdown, load_arm

    long_arm = long_arm or arm
    short_runs, long_runs = load_arm(short, arm), load_arm(long, long_arm)
    check = length_check(short_runs, long_runs)  # reads only: nothing written if it fails
    if out is not None:
        from sirst_synth.plots import iou_vs_step_figure, png_bytes

        make_folders(out, ("",), "length-check --out")
        for name in ("length.md", "length-iou-vs-step.png"):
            check_output_file(out / name, "--out", overwrite, [short, long])
        write_text_atomic(out / "length.md", length_markdown(check, arm, long_arm))
        write_bytes_atomic(
            out / "length-iou-vs-step.png",
            png_bytes(iou_vs_step_figure([arm, long_arm], short_runs + long_runs)),
        )
    rows = [
        (f"seed {r['seed']}", f"{in_units('IoU', r['short_val_IoU'])} -> "
         f"{in_units('IoU', r['long_val_IoU'])} ({in_units('IoU', r['gain'], True)})")
        for r in check["seeds"]
    ]  # fmt: skip
    rows.append(("mean gain, val IoU x100", in_units("IoU", check["mean_gain"], True)))
    rows.append(("verdict", "adequate" if check["adequate"] else "too short"))
    emit(f"length check: {arm} against {long_arm}", rows, check, quiet, as_json)


@app.command("study-status")
def study_status_cmd(
    study: Annotated[Path, typer.Argument(help="A study folder (or its --publish folder).")],
    jobs: Annotated[
        int,
        typer.Option("--jobs", "-j", min=1, help="Runs at a time, for the time left (1)."),
    ] = 1,
    quiet: Quiet = False,
    as_json: AsJson = False,
) -> None:
    """Where a study stands: every run done, stopped part way or to do, and the training time
    left. Reads only: safe beside a running study."""
    import dataclasses

    from sirst_synth.study.status import study_status

    status = study_status(study)
    rows = []
    width = max(r.seed for r in status.runs) + 1  # seed columns line up across arms
    for arm in dict.fromkeys(r.arm for r in status.runs):
        cells = ["-"] * width  # a seed the arm does not run (exploratory arms run fewer)
        for r in status.runs:
            if r.arm == arm:
                cells[r.seed] = _status_cell(r)
        rows.append((arm, " ".join(c.rjust(6) for c in cells)))
    total = len(status.runs)
    rows.append(
        ("runs", f"{status.count('done')} done, {status.count('partial')} part way, "
         f"{status.count('to do')} to do, of {total}")
    )  # fmt: skip
    hours = status.hours_left(jobs)
    if hours is not None:
        rows.append(
            ("training left", f"about {hours:.1f} h at {jobs} run{'s' if jobs > 1 else ''} at a "
             f"time ({status.images_per_s:.1f} images/s a run)")
        )  # fmt: skip
    data = {
        "runs": [dataclasses.asdict(r) for r in status.runs],
        "images_per_s": status.images_per_s,
        "hours_left": hours,
        "jobs": jobs,
    }
    emit(
        "study status: per seed, the final model's validation IoU x100 when done, % of steps "
        "when part way, . to do, - not planned",
        rows,
        data,
        quiet,
        as_json,
    )


def _status_cell(r) -> str:
    if r.state == "done":
        return "-" if r.val_IoU is None else in_units("IoU", r.val_IoU)
    if r.state == "partial":
        return f"{100 * r.steps_done // r.steps}%"
    return "."
