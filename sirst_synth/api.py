"""The Python API: every command as a call with keyword arguments (sqlite-utils' pattern: the
command line is a thin wrapper over these).

Each function takes a recipe object, a shipped recipe name or a YAML file (or nothing: the
defaults) plus keyword overrides of single recipe keys, returns the summary the command prints,
and raises the project's errors (``sirst_synth.errors``: ``UsageError`` and ``DataError`` are
``ValueError``s too); none of them exits the process. Importing this module imports neither
torch nor matplotlib: the torch parts load when ``train``, ``evaluate`` with a checkpoint or
``study`` run. See docs/api.md for examples.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sirst_synth.progress import Progress
from sirst_synth.recipe import SynthRecipe, TrainRecipe, resolve_recipe

if TYPE_CHECKING:  # the summaries' modules import torch or h5py; annotations only name them
    from sirst_synth.bank_build import BankSummary
    from sirst_synth.generate import GenerateSummary
    from sirst_synth.study import StudySummary
    from sirst_synth.train.loop import TrainResult

#: A line of news for a person watching (the command line prints it).
Log = Callable[[str], None]

__all__ = [
    "VerifySummary",
    "build_noise_bank",
    "compare",
    "demo_dataset",
    "evaluate",
    "generate",
    "study",
    "train",
    "verify",
]


def demo_dataset(out: str | Path, *, images: int = 64, seed: int = 0) -> Path:
    """Write the built-in procedural dataset (DNA-Net layout, NUDT-SIRST-like) to ``out``."""
    from sirst_synth.io.demo_writer import write_demo_dataset

    write_demo_dataset(Path(out), images=images, seed=seed)
    return Path(out)


def build_noise_bank(
    source: str | Path,
    *,
    bank: str | Path | None = None,
    recipe: Any = None,
    train_split: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    skip_errors: bool = False,
    workers: int = 1,
    progress: Progress | None = None,
    value_range: str = "full",
    out: str | Path | None = None,
    **overrides: Any,
) -> BankSummary:
    """Scan ``source``'s training images into the noise bank file ``bank`` (HDF5); overrides:
    ``grid``, ``sigma``, ``mu``; ``value_range="train"`` maps 16-bit and float images by the
    training split's range. ``out``: the old name of ``bank`` (deprecated). Returns
    ``bank_build.BankSummary``."""
    from sirst_synth.bank_build import build_noise_bank as build

    bank = _renamed(bank, out, "out", "bank")
    if bank is None:
        raise TypeError("build_noise_bank() needs bank=, the noise bank file to write")
    r = resolve_recipe(SynthRecipe, recipe, overrides)
    return build(
        Path(source), Path(bank), grid=r.grid, sigma=r.sigma, mu=r.mu,
        train_split=_path(train_split), overwrite=overwrite, resume=resume,
        skip_errors=skip_errors, workers=workers, progress=progress, value_range=value_range,
    )  # fmt: skip


def generate(
    source: str | Path,
    *,
    bank: str | Path,
    out: str | Path,
    recipe: Any = None,
    workers: int = 1,
    split_files: str = "both",
    name: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    skip_errors: bool = False,
    train_split: str | Path | None = None,
    test_split: str | Path | None = None,
    test_gray: bool = False,
    no_test: bool = False,
    allow_foreign_bank: bool = False,
    progress: Progress | None = None,
    layout: str | None = None,
    **overrides: Any,
) -> GenerateSummary:
    """Write the SIRST-5K set (or the recipe's ``mode``: n2n, paste) of ``source`` into
    ``out``; overrides: any ``SynthRecipe`` key (``alpha``, ``s``, ``count``, ``seed``, ...).
    ``split_files``: both (BasicIRSTD's and DNA-Net's), basicirstd or dnanet; ``layout`` is
    its old name (deprecated). Returns ``generate.GenerateSummary``."""
    from sirst_synth.generate import generate as run

    split_files = _renamed(split_files, layout, "layout", "split_files")
    r = resolve_recipe(SynthRecipe, recipe, overrides)
    return run(
        Path(source), Path(bank), Path(out), r, workers=workers, layout=split_files, name=name,
        overwrite=overwrite, resume=resume, skip_errors=skip_errors,
        train_split=_path(train_split), test_split=_path(test_split),
        allow_foreign_bank=allow_foreign_bank, progress=progress, test_gray=test_gray,
        no_test=no_test,
    )  # fmt: skip


@dataclass(frozen=True)
class VerifySummary:
    folder: Path
    rows: int
    problems: list[str]
    warnings: list[str] = field(default_factory=list)  # whole, but will not load as expected

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(folder: str | Path) -> VerifySummary:
    """Check a generate output against its manifest (files, hashes, sizes, strays)."""
    from sirst_synth.io.verify import verify_dataset

    rows, problems, warnings = verify_dataset(Path(folder))
    return VerifySummary(Path(folder), rows, problems, warnings)


def evaluate(
    dataset: str | Path,
    *,
    checkpoint: str | Path | None = None,
    pred_dir: str | Path | None = None,
    split: str = "test",
    split_file: str | Path | None = None,
    threshold: float = 0.5,
    fa_compat: str = "identity",
    resize: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    skip_errors: bool = False,
    save_pred: str | Path | None = None,
    curve: str | Path | None = None,
    json_out: str | Path | None = None,
    overwrite: bool = False,
    tile: int | None = None,
    pred_kind: str = "auto",
    per_image: str | Path | None = None,
) -> dict:
    """IoU, nIoU, Pd, Fa (and counts) of a checkpoint or a folder of predictions on one
    split, as DNA-Net / BasicIRSTD define them: the dict ``evaluate --json`` prints."""
    from sirst_synth.evaluation import evaluate as run

    return run(
        Path(dataset), checkpoint=_path(checkpoint), pred_dir=_path(pred_dir), split=split,
        threshold=threshold, fa_mode=fa_compat, save_pred=_path(save_pred), curve=_path(curve),
        json_out=_path(json_out), device=device, skip_errors=skip_errors, precision=precision,
        resize=resize, overwrite=overwrite, tile=tile, split_file=_path(split_file),
        pred_kind=pred_kind, per_image=_path(per_image),
    )  # fmt: skip


def compare(
    dataset: str | Path,
    *,
    a: str | Path,
    b: str | Path,
    split: str = "test",
    split_file: str | Path | None = None,
    threshold: float = 0.5,
    device: str = "auto",
    precision: str = "auto",
    skip_errors: bool = False,
    seed: int = 0,
    resamples: int = 10000,
) -> dict:
    """Two models (checkpoints or prediction folders) on one split: IoU of each, A - B and its
    95% interval from resampling the split's images (one run each: not seed-to-seed
    variation). The dict ``compare --json`` prints."""
    from sirst_synth.compare import compare as run

    return run(
        Path(dataset), Path(a), Path(b), split=split, split_file=_path(split_file),
        threshold=threshold, device=device, precision=precision, skip_errors=skip_errors,
        seed=seed, resamples=resamples,
    )  # fmt: skip


def train(
    data: str | Path,
    *,
    out: str | Path,
    recipe: Any = None,
    device: str = "auto",
    precision: str = "auto",
    loader_workers: int = 0,
    resume: bool = False,
    compile: bool = False,
    stop_after: int | None = None,
    skip_errors: bool = False,
    synth: str = "offline",
    bank: str | Path | None = None,
    synth_recipe: Any = None,
    progress: Progress | None = None,
    log: Log | None = None,
    value_range: str = "full",
    train_split: str | Path | None = None,
    val: str | Path | tuple | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train a detector on ``data`` into ``out``; overrides: any ``TrainRecipe`` key
    (``model``, ``steps``, ``lr``, ``optimizer``, ``pos_prob``, ``augment``, ...).
    ``val``: validate there instead of on DATA's test split: ``"DIR"`` (its test split),
    ``"DIR:SPLITFILE"`` or ``(DIR, SPLITFILE)``. Returns ``train.loop.TrainResult``."""
    from sirst_synth.train.loop import train as run

    r = resolve_recipe(TrainRecipe, recipe, overrides)
    if synth != "online" and synth_recipe is not None:
        from sirst_synth.errors import UsageError

        raise UsageError("synth_recipe goes with synth='online' (a folder has its samples)")
    sr = resolve_recipe(SynthRecipe, synth_recipe, {}) if synth == "online" else None
    return run(
        Path(data), Path(out), r, device, precision, loader_workers, resume, compile,
        stop_after, skip_errors, progress, log or (lambda m: None), synth=synth,
        bank=_path(bank), synth_recipe=sr, value_range=value_range,
        train_split=_path(train_split),
        val=_split_source(val),
    )  # fmt: skip


def _split_source(val: str | Path | tuple | None) -> tuple[Path, Path | None] | None:
    from sirst_synth.io.samples import parse_split_source

    if val is None:
        return None
    if isinstance(val, tuple):
        return Path(val[0]), _path(val[1])
    if isinstance(val, Path):
        return val, None
    return parse_split_source(val, "--val")


def study(
    data: str | Path,
    *,
    out: str | Path,
    recipe: Any = "study-cpu-6000",
    seeds: int | None = None,
    resume: bool = False,
    device: str = "auto",
    extra_tests: tuple = (),
    publish: str | Path | None = None,
    bank: str | Path | None = None,
    jobs: int = 1,
    overall: Progress | None = None,
    progress: Progress | None = None,
    log: Log | None = None,
) -> StudySummary:
    """Train every arm of a study recipe over seeds and compare each with the reference
    (``study.StudySummary``). ``recipe``: a ``StudyRecipe``, a shipped name or a file;
    ``extra_tests``: ``"NAME=DIR[:SPLITFILE]"`` strings or ``study.ExtraTest``s; ``jobs``: runs
    trained at once, each in its own process."""
    from sirst_synth.recipe import read_recipe_text
    from sirst_synth.study import ExtraTest, StudyRecipe, load_study_recipe, run_study

    if not isinstance(recipe, StudyRecipe):
        recipe = load_study_recipe(*read_recipe_text(recipe), seeds)
    extras = tuple(t if isinstance(t, ExtraTest) else ExtraTest.parse(t) for t in extra_tests)
    return run_study(
        Path(data), _path(bank), Path(out), recipe, resume=resume, device=device,
        overall=overall, progress=progress, log=log or (lambda m: None), extra_tests=extras,
        publish=_path(publish), jobs=jobs,
    )  # fmt: skip


def _renamed(value: Any, old_value: Any, old: str, new: str) -> Any:
    """A renamed keyword, given under its new name or (with a FutureWarning) its old one."""
    if old_value is None:
        return value
    warnings.warn(
        f"{old}= is now {new}=; the old name goes in the next version", FutureWarning, stacklevel=3
    )
    return old_value


def _path(p: str | Path | None) -> Path | None:
    return None if p is None else Path(p)
