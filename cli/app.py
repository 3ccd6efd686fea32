"""The Typer app and its data commands (recipes, demo-dataset, build-noise-bank, generate,
verify, preview); train, evaluate and study register from their own modules. Commands parse
flags, call one library function, and print the result. The entry point and the mapping of
errors to exit codes are in ``main.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from sirst_synth.cli.options import (
    AsJson,
    JsonOut,
    Layout,
    OnError,
    OnErrorOpt,
    Overwrite,
    Quiet,
    RangeOpt,
    TestSplit,
    TrainSplit,
    Workers,
    app,
    check_json_out,
    old_name,
    print_skipped,
    renamed,
    resume_option,
)
from sirst_synth.cli.ui import console, emit, emit_summary, err_console, progress_for, table

from sirst_synth import __version__


def _print_version(value: bool) -> None:
    if value:
        from sirst_synth.metrics import NATIVE

        kernel = "loaded" if NATIVE is not None else "not built (numpy/OpenCV path, same numbers)"
        console.print(
            f"sirst-synth {__version__} (native metrics kernel: {kernel})", highlight=False
        )
        raise typer.Exit(0)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the version (and whether the native metrics kernel is loaded) and exit.",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
) -> None:
    pass


@app.command("recipes")
def recipes_cmd(as_json: AsJson = False) -> None:
    """List the recipes shipped with sirst-synth (use them as --recipe NAME) with their values."""
    import yaml
    from sirst_synth.recipes import recipe_names, recipe_path

    data = {n: yaml.safe_load(recipe_path(n).read_text()) for n in recipe_names()}
    if as_json:
        emit("recipes", [], data, False, True)
        return
    for name, values in data.items():
        flat = [(k, v) for k, v in values.items() if not isinstance(v, dict)]
        nested = [
            (f"{k}.{kk}", vv)
            for k, v in values.items()
            if isinstance(v, dict)
            for kk, vv in v.items()
            if not isinstance(vv, dict)
        ]
        arms = [(f"arm {k}", v.get("data")) for k, v in (values.get("arms") or {}).items()]
        console.print(table(f"--recipe {name}  ({recipe_path(name).name})", flat + nested + arms))


@app.command("demo-dataset")
def demo_dataset(
    out: Annotated[Path, typer.Argument(help="Folder to create (must be new or empty).")],
    images: Annotated[int, typer.Option("--images", "-n", help="Number of images.")] = 64,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the procedural scenes.")] = 0,
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
    json_out: JsonOut = None,
) -> None:
    """Write the built-in procedural dataset (DNA-Net layout, NUDT-SIRST-like)."""
    from sirst_synth.io.demo_writer import write_demo_dataset

    check_json_out(json_out, overwrite, [], [("OUT", out)])
    res = write_demo_dataset(out, images, seed, progress_for(quiet, as_json))
    data = {"out": str(out), **res}
    emit(f"demo dataset in {out}", list(res.items()), data, quiet, as_json, json_out)


@app.command("build-noise-bank")
def build_noise_bank_cmd(
    dataset: Annotated[Path, typer.Argument(help="Dataset root (images/, masks/, split files).")],
    bank: Annotated[
        Path | None,
        typer.Option(
            "--bank", "-o", help="The noise bank file (HDF5) to write (default: bank.h5)."
        ),
    ] = None,
    out_old: Annotated[Path | None, old_name("--out", "--bank")] = None,
    recipe: Annotated[
        str | None,
        typer.Option("--recipe", help="Recipe file or shipped name (sirst5k): sigma, mu, grid."),
    ] = None,
    grid: Annotated[
        int | None, typer.Option("--grid", help="Regions per side (recipe: 8).")
    ] = None,
    sigma: Annotated[
        float | None, typer.Option("--sigma", help="Variance bound (recipe: 50).")
    ] = None,
    mu: Annotated[float | None, typer.Option("--mu", help="Mean bound (recipe: 255).")] = None,
    train_split: TrainSplit = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing bank file and --json-out.")
    ] = False,
    resume: Annotated[
        bool, resume_option("a bank is written whole: one of the same settings is kept")
    ] = False,
    on_error: OnErrorOpt = OnError.fail,
    workers: Workers = 1,
    value_range: RangeOpt = "full",
    quiet: Quiet = False,
    as_json: AsJson = False,
    json_out: JsonOut = None,
) -> None:
    """Scan the training images into a grid and keep the noise-prone regions."""
    from sirst_synth.api import build_noise_bank

    bank = renamed(bank, out_old, "--out", "--bank", Path("bank.h5"))
    check_json_out(json_out, overwrite, [dataset], [("--bank", bank)])
    res = build_noise_bank(
        dataset,
        bank=bank,
        recipe=recipe,
        train_split=train_split,
        overwrite=overwrite,
        resume=resume,
        skip_errors=on_error == OnError.skip,
        workers=workers,
        progress=progress_for(quiet, as_json),
        value_range=value_range,
        grid=grid,
        sigma=sigma,
        mu=mu,
    )
    print_skipped(res.skipped)
    emit_summary(
        "noise bank",
        res,
        {
            "path": "bank",
            "images": "images scanned",
            "regions": "regions scanned",
            "accepted": "accepted (noise-prone)",
            "skipped": "skipped images",
            "reused": "resumed (bank already complete)",
        },
        quiet,
        as_json,
        json_out,
        [(f"rejected: {k}", v) for k, v in res.rejected.items()],
    )


@app.command("generate")
def generate_cmd(
    dataset: Annotated[Path, typer.Argument(help="Source dataset root.")],
    bank: Annotated[Path, typer.Option("--bank", help="Noise bank from build-noise-bank.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (new or empty).")],
    recipe: Annotated[
        str | None, typer.Option("--recipe", help="Recipe file or shipped name, e.g. sirst5k.")
    ] = None,
    alpha: Annotated[
        float | None, typer.Option("--alpha", help="Blend weight in [0, 1] (recipe: 0.1).")
    ] = None,
    s: Annotated[int | None, typer.Option("--s", help="Odd window size (recipe: 3).")] = None,
    count: Annotated[
        int | None,
        typer.Option(
            "--count", help="Exact number of development samples (recipe: all 4 x targets)."
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of every random draw (recipe: 0).")
    ] = None,
    split_files: Annotated[
        Layout | None,
        typer.Option(
            "--split-files",
            help="Split files to write: both (BasicIRSTD's and DNA-Net's), or one (default: both).",
        ),
    ] = None,
    layout_old: Annotated[Layout | None, old_name("--layout", "--split-files")] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", help="Must equal OUT's folder name (BasicIRSTD finds splits by it)."
        ),
    ] = None,
    test_gray: Annotated[
        bool,
        typer.Option(
            "--test-gray",
            help="Convert test images like training images (8-bit gray, masks 0/255) instead "
            "of copying them byte for byte.",
        ),
    ] = False,
    no_test: Annotated[
        bool, typer.Option("--no-test", help="Allow a run without a test split.")
    ] = False,
    train_split: TrainSplit = None,
    test_split: TestSplit = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Replace a previous sirst-synth output in OUT, and --json-out."
        ),
    ] = False,
    resume: Annotated[bool, resume_option("the samples written so far")] = False,
    allow_foreign_bank: Annotated[
        bool, typer.Option("--allow-foreign-bank", help="Accept a bank built from other files.")
    ] = False,
    on_error: OnErrorOpt = OnError.fail,
    workers: Workers = 1,
    quiet: Quiet = False,
    as_json: AsJson = False,
    json_out: JsonOut = None,
) -> None:
    """Materialise SIRST-5K: originals, development samples and the untouched test split."""
    from sirst_synth.api import generate

    split_files = renamed(split_files, layout_old, "--layout", "--split-files", Layout.both)
    check_json_out(json_out, overwrite, [dataset, bank], [("--out", out)])
    res = generate(
        dataset,
        bank=bank,
        out=out,
        recipe=recipe,
        workers=workers,
        split_files=split_files.value,
        name=name,
        overwrite=overwrite,
        resume=resume,
        skip_errors=on_error == OnError.skip,
        train_split=train_split,
        test_split=test_split,
        allow_foreign_bank=allow_foreign_bank,
        progress=progress_for(quiet, as_json),
        test_gray=test_gray,
        no_test=no_test,
        alpha=alpha,
        s=s,
        count=count,
        seed=seed,
    )
    print_skipped(res.skipped)
    for change in res.replaced_by_bank:
        err_console.print(
            f"[yellow]recipe[/] {escape(change)} (the bank's value: it describes the bank)",
            highlight=False,
        )
    emit_summary(
        "SIRST-5K generate",
        res,
        {
            "out": "out",
            "originals": "original images",
            "development": "development samples",
            "test": "test images",
            "targets": "targets",
            "images_without_target": "images without target",
            "passes": "noise passes",
            "skipped": "skipped images",
            "resumed_jobs": "jobs reused from the interrupted run",
            "replaced_by_bank": "recipe values replaced by the bank's",
        },
        quiet,
        as_json,
        json_out,
        [("training total", res.originals + res.development)],
    )


@app.command("verify")
def verify_cmd(
    dataset: Annotated[Path, typer.Argument(help="A folder written by generate.")],
    overwrite: Overwrite = False,
    quiet: Quiet = False,
    as_json: AsJson = False,
    json_out: JsonOut = None,
) -> None:
    """Check every manifest file: exists, decodes, sha256 matches, shapes agree, no strays."""
    from sirst_synth.api import verify

    check_json_out(json_out, overwrite, [dataset])
    summary = verify(dataset)
    rows, problems, warnings = summary.rows, summary.problems, summary.warnings
    if not as_json:
        for p in problems:
            err_console.print(f"[red]problem[/] {escape(p)}", highlight=False)
    for w in warnings:  # on stderr in every mode: a warning is not a result
        err_console.print(f"[yellow]warning[/] {escape(w)}", highlight=False)
    emit(
        f"verify {dataset}",
        [("manifest rows", rows), ("problems", len(problems)), ("warnings", len(warnings))],
        {"rows": rows, "problems": problems, "warnings": warnings},
        quiet,
        as_json,
        json_out,
    )
    if problems:
        raise typer.Exit(1)


@app.command("preview")
def preview_cmd(
    dataset: Annotated[Path, typer.Argument(help="A folder written by generate.")],
    sheet: Annotated[
        Path | None,
        typer.Option(
            "--sheet", "-o", help="The contact sheet (PNG) to write (default: preview.png)."
        ),
    ] = None,
    out_old: Annotated[Path | None, old_name("--out", "--sheet")] = None,
    targets: Annotated[int, typer.Option("--targets", min=1, help="How many targets (rows).")] = 6,
    seed: Annotated[int, typer.Option("--seed", help="Which targets are shown.")] = 0,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing sheet.")
    ] = False,
    quiet: Quiet = False,
) -> None:
    """Contact sheet: source, blended, and the four rotations of a few targets."""
    from sirst_synth.io.preview_files import write_preview

    sheet = renamed(sheet, out_old, "--out", "--sheet", Path("preview.png"))
    n = write_preview(dataset, sheet, targets, seed, overwrite)
    if not quiet:
        console.print(f"wrote {escape(str(sheet))} ({n} targets)", highlight=False)


def _register_train_commands() -> None:
    # register train, evaluate, study and compare
    from sirst_synth.cli import compare_cmd, study_cmd, train_cmds  # noqa: F401


_register_train_commands()


__all__ = ["app"]
