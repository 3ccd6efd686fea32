"""What the commands share: the app they register on, option types, recipe loading, skip lines.

A leaf module (sqlite-utils keeps its shared options the same way): command modules import it,
and `app` imports the command modules to register them, so no two modules import each other.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.markup import escape
from sirst_synth.cli.ui import err_console
from typer.models import OptionInfo

R = TypeVar("R")

#: One meaning per word, in every command (the README's "Words" says the same).
WORDS = """\b
Words, one meaning each:
  OUT / --out      the folder a command creates (or continues with --resume)
  --bank           a noise bank file (HDF5): written by build-noise-bank, read by the others
  --resume         continue a stopped run of the same settings; what it finished is kept
  --overwrite      replace outputs an earlier run wrote (each command's --help says which)
  --json-out FILE  also write the result as JSON; an existing FILE needs --overwrite
  original         a training image of the source, unchanged
  development      a synthesised training sample (the SIRST-5K paper's word)
  test             the source's test split, copied untouched
  units            IoU, nIoU and Pd x100; Fa x1e-6 (false-alarm pixels per million)
"""

app = typer.Typer(
    name="sirst-synth",
    help="Synthesise SIRST-5K style infrared small-target datasets, then train and evaluate on them.",
    epilog=WORDS,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


class OnError(str, Enum):
    fail = "fail"
    skip = "skip"


class Layout(str, Enum):
    both = "both"
    basicirstd = "basicirstd"
    dnanet = "dnanet"


Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
Workers = Annotated[
    int, typer.Option("--workers", "-j", help="Worker processes (results do not depend on it).")
]
TrainSplit = Annotated[
    Path | None,
    typer.Option(
        "--train-split",
        help="Training split file of a dataset folder (overrides detection; a generate "
        "output's manifest says its own).",
    ),
]
TestSplit = Annotated[
    Path | None, typer.Option("--test-split", help="Test split file (overrides detection).")
]


RangeOpt = Annotated[
    str,
    typer.Option(
        "--range",
        help="How 16-bit and float images become 8-bit: full (16-bit /257, floats in [0, 1] "
        "x255, ambiguous files refused) or train (the training images' own min..max -> 0..255, "
        "recorded in the output and reused by generate, train and evaluate).",
    ),
]


class Precision(str, Enum):
    auto = "auto"
    bf16 = "bf16"
    fp32 = "fp32"


PrecisionOpt = Annotated[
    Precision,
    typer.Option(
        "--precision",
        help="bf16 (autocast), fp32, or auto: bf16 on CUDA, and on a CPU with native bf16 "
        "where a short probe measured it faster; a resumed run keeps its recorded choice.",
    ),
]


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Model(str, Enum):
    aff_unet = "aff-unet"
    aff_unet_tiny = "aff-unet-tiny"
    unet = "unet"


class NegLoss(str, Enum):
    sum = "sum"
    min = "min"
    off = "off"


class Split(str, Enum):
    train = "train"
    test = "test"
    all = "all"


DeviceOpt = Annotated[
    Device, typer.Option("--device", help="auto (cuda where available), cpu or cuda.")
]
JsonOut = Annotated[
    Path | None,
    typer.Option(
        "--json-out", help="Also write the result as JSON to this file (replaced with --overwrite)."
    ),
]


def resume_option(what: str) -> OptionInfo:
    """``--resume``: one meaning in every command; ``what`` says what a finished part is."""
    return typer.Option(
        "--resume",
        help=f"Continue a stopped run of the same settings; what it finished is kept ({what}).",
    )


Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Replace an existing --json-out file.")
]
OnErrorOpt = Annotated[
    OnError, typer.Option("--on-error", help="fail: stop at a bad image; skip: list it and go on.")
]


def read_recipe_text(recipe: str | Path) -> tuple[str, str]:
    from sirst_synth.recipe import read_recipe_text as read

    return read(recipe)


def recipe_from(cls: type[R], recipe: str | Path | None, flags: dict) -> R:
    """The recipe (file or name; or the defaults) with the command-line flags given on top."""
    from sirst_synth.recipe import resolve_recipe

    return resolve_recipe(cls, recipe, flags)


def print_skipped(skipped: list[tuple[str, str]]) -> None:
    for stem, why in skipped:
        err_console.print(f"[yellow]skipped[/] {escape(stem)}: {escape(why)}", highlight=False)


def old_name(flag: str, new: str) -> OptionInfo:
    """A renamed flag's old name, still read for one version: hidden from --help; using it
    prints a warning that names the new one (``renamed``)."""
    return typer.Option(flag, hidden=True, help=f"Deprecated: use {new}.")


def renamed(value: R | None, old_value: R | None, old: str, new: str, default: R) -> R:
    """The value of a renamed flag, given under its new name or (with a warning) its old one."""
    from sirst_synth.errors import UsageError

    if old_value is None:
        return default if value is None else value
    if value is not None:
        raise UsageError(f"{old} is the old name of {new}; give {new} only")
    err_console.print(
        f"[yellow]warning[/] {old} is now {new}; the old name goes in the next version",
        highlight=False,
    )
    return old_value


def check_json_out(
    json_out: Path | None,
    overwrite: bool,
    inputs: list[Path | None],
    outputs: list[tuple[str, Path | None]] = (),
) -> None:
    """``--json-out`` is checked with the other outputs, before any work: never a file the
    command reads or writes anyway (``outputs``: (flag, file or folder))."""
    from sirst_synth.io.files import check_output_file

    if json_out is not None:
        check_output_file(json_out, "--json-out", overwrite, inputs, outputs)
