"""The study recipe: shared ``synth`` and ``train`` sections, arms that override them, the
reference arm every other arm is compared with, and the training-data fraction of each arm."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sirst_synth.errors import UsageError
from sirst_synth.names import PRECISIONS
from sirst_synth.recipe import SynthRecipe, TrainRecipe, from_mapping, parse_yaml, recipe_dict

DATA_KINDS = ("original", "sirst5k", "n2n", "paste", "online")
METRICS = ("IoU", "nIoU", "Pd", "Fa")
STUDY_FILE = "study.yaml"
PAPER_KEYS = ("paper_iou", "paper_row")
ARM_KEYS = {"data", "synth", "train", "paper_iou", "paper_row", "train_fraction", "exploratory"}
#: Validation share carved from the training split where the dataset ships no val split.
VAL_SHARE = 0.2


@dataclass(frozen=True)
class Arm:
    """One arm: which data (and how it is synthesised) and how the detector trains on it."""

    name: str
    data: str  # original | sirst5k | n2n | paste (generated once) | online (fresh every epoch)
    synth: SynthRecipe
    train: TrainRecipe
    paper_iou: float | None = None  # the paper's NUDT-SIRST IoU of the matching row, if any
    paper_row: str | None = None
    train_fraction: float = 1.0  # a seeded subset of the training split (scarce data)
    exploratory: bool = False  # fewer seeds; labelled so in the results

    def to_dict(self) -> dict:
        out = {
            "data": self.data,
            "synth": recipe_dict(self.synth),
            "train": recipe_dict(self.train),
            "paper_iou": self.paper_iou,
            "paper_row": self.paper_row,
        }
        # written only when set, so a study recorded before these keys resumes unchanged
        if self.train_fraction != 1.0:
            out["train_fraction"] = self.train_fraction
        if self.exploratory:
            out["exploratory"] = True
        return out


@dataclass(frozen=True)
class StudyRecipe:
    seeds: int
    precision: str
    threads: int | None
    arms: tuple[Arm, ...]
    reference: str | None = None  # the arm the others are compared with, seed by seed
    seeds_exploratory: int | None = None  # seeds of exploratory arms (None: seeds)

    def seeds_of(self, arm: Arm) -> int:
        if arm.exploratory and self.seeds_exploratory is not None:
            return min(self.seeds_exploratory, self.seeds)
        return self.seeds

    def baseline_of(self, arm: Arm) -> str | None:
        """The arm ``arm`` is compared with: the reference, or where ``arm`` trains on another
        fraction of the data, the one other arm in the reference's regime (its data and train
        recipe) at ``arm``'s fraction, so that scarce-data arms are read against the reference
        on the same scarce data. None for the reference itself or a study without one."""
        if self.reference is None or arm.name == self.reference:
            return None
        ref = next(a for a in self.arms if a.name == self.reference)
        if arm.train_fraction == ref.train_fraction:
            return ref.name
        same = [
            a.name
            for a in self.arms
            if a.name != arm.name
            and a.train_fraction == arm.train_fraction
            and (a.data, a.train) == (ref.data, ref.train)
        ]
        return same[0] if len(same) == 1 else ref.name

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "seeds": self.seeds,
            "precision": self.precision,
            "threads": self.threads,
        }
        if self.reference is not None:
            out["reference"] = self.reference
        if self.seeds_exploratory is not None:
            out["seeds_exploratory"] = self.seeds_exploratory
        out["arms"] = {a.name: a.to_dict() for a in self.arms}
        return out


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_study_recipe(data: Any, source: str, seeds: int | None = None) -> StudyRecipe:
    """A study recipe from its YAML mapping. Every arm trains by ``steps`` with the same batch
    and crop (the data and augmentation are what differ)."""
    if not isinstance(data, dict):
        raise UsageError(f"{source}: a study recipe is a YAML mapping with an 'arms' section")
    known = {"seeds", "precision", "threads", "synth", "train", "arms", "reference"}
    known |= {"seeds_exploratory"}
    unknown = sorted(str(k) for k in set(data) - known)
    if unknown:
        raise UsageError(
            f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    n_seeds = seeds if seeds is not None else data.get("seeds", 1)
    if not _whole(n_seeds) or n_seeds < 1:
        raise UsageError(f"{source}: seeds must be a whole number >= 1, got {n_seeds!r}")
    explore = data.get("seeds_exploratory")
    if explore is not None and (not _whole(explore) or explore < 1):
        raise UsageError(f"{source}: seeds_exploratory must be a whole number >= 1")
    precision = str(data.get("precision", "auto"))
    if precision not in PRECISIONS:
        raise UsageError(f"{source}: precision must be one of {', '.join(PRECISIONS)}")
    threads = data.get("threads")
    if threads is not None and (not _whole(threads) or threads < 1):
        raise UsageError(f"{source}: threads must be a whole number >= 1, got {threads!r}")
    base_synth = _section(data, "synth", source)
    base_train = _section(data, "train", source)
    arms_data = data.get("arms")
    if not isinstance(arms_data, dict) or not arms_data:
        raise UsageError(f"{source}: 'arms' must map arm names to their settings")
    arms = [
        _arm(str(name), spec, base_synth, base_train, source) for name, spec in arms_data.items()
    ]
    shared = {(a.train.steps, a.train.batch_size, a.train.crop) for a in arms}
    if len(shared) > 1:
        raise UsageError(
            f"{source}: every arm must train the same steps, batch_size and crop "
            "(the data is the only difference); move them to the shared train section"
        )
    reference = data.get("reference")
    if reference is not None and reference not in {a.name for a in arms}:
        raise UsageError(f"{source}: reference {reference!r} is not one of the arms")
    return StudyRecipe(
        n_seeds, precision, threads, tuple(arms), None if reference is None else str(reference),
        explore,
    )  # fmt: skip


def _arm(name: str, spec: Any, base_synth: dict, base_train: dict, source: str) -> Arm:
    where = f"{source}: arm {name!r}"
    if not isinstance(spec, dict):
        raise UsageError(f"{where} must be a mapping (data, synth, train)")
    extra = sorted(str(k) for k in set(spec) - ARM_KEYS)
    if extra:
        raise UsageError(f"{where}: unknown key(s) {', '.join(extra)}")
    kind = spec.get("data")
    if kind not in DATA_KINDS:
        raise UsageError(f"{where}: data must be one of {', '.join(DATA_KINDS)}, got {kind!r}")
    synth = from_mapping(SynthRecipe, {**base_synth, **_section(spec, "synth", where)}, where)
    if kind in ("n2n", "paste"):
        synth = dataclasses.replace(synth, mode=kind)
    train = from_mapping(TrainRecipe, {**base_train, **_section(spec, "train", where)}, where)
    if train.steps is None:
        raise UsageError(f"{where}: train.steps is required (arms are compared at equal steps)")
    fraction = spec.get("train_fraction", 1.0)
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction <= 1:
        raise UsageError(f"{where}: train_fraction must be a number in (0, 1], got {fraction!r}")
    explore = spec.get("exploratory", False)
    if not isinstance(explore, bool):
        raise UsageError(f"{where}: exploratory must be true or false")
    paper = spec.get("paper_iou")
    return Arm(
        name, kind, synth, train, None if paper is None else float(paper), spec.get("paper_row"),
        float(fraction), explore,
    )  # fmt: skip


def _section(data: dict, key: str, source: str) -> dict:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise UsageError(f"{source}: '{key}' must be a mapping of recipe keys")
    return value


def load_study_recipe(text: str, source: str, seeds: int | None = None) -> StudyRecipe:
    return parse_study_recipe(parse_yaml(text, source), source, seeds)
