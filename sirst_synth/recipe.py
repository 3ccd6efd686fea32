"""Recipes: one frozen object of parameters, loaded from YAML, overridden by flags.

A recipe is written next to every output it produced, so a run can be repeated and a resume
can check it is continuing the same run.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml

from sirst_synth.errors import UsageError
from sirst_synth.names import (
    AUGMENTS,
    MODELS,
    NEG_LOSS,
    OPTIMIZERS,
    SCHEDULES,
    SYNTH_MODES,
    WHERE,
)

T = TypeVar("T")


@dataclass(frozen=True)
class SynthRecipe:
    """SIRST-5K synthesis parameters; defaults are the paper's and the official code's."""

    alpha: float = 0.1  # Noise2Noise blend weight (eq. 3)
    s: int = 3  # negative-augmentation window size
    sigma: float = 50.0  # noise-prone variance bound (gray levels^2)
    mu: float = 255.0  # noise-prone mean bound (gray levels)
    grid: int = 8  # regions per side when scanning for noise
    count: int | None = None  # development samples; None = one pass over 4 x targets
    seed: int = 0
    mode: str = "sirst5k"  # sirst5k: blend + rotated windows; n2n: blend only; paste: new targets
    # mode paste (target copy-paste; alpha > 0 blends N2N noise in first):
    k: tuple[int, ...] = (1, 3)  # targets pasted per sample, drawn in [k0, k1]
    scale: tuple[float, ...] = (0.75, 1.5)  # a pasted target's scale, drawn in [lo, hi]
    where: str = "flat"  # flat: only in noise-prone grid regions of the destination; any
    distance: int = 8  # pixels between a pasted target's box and every other target's

    def __post_init__(self) -> None:
        _check(
            isinstance(self.alpha, float | int) and 0.0 <= self.alpha <= 1.0,
            "alpha",
            self.alpha,
            "a number in [0, 1]",
        )
        _check(self.s >= 1 and self.s % 2 == 1, "s", self.s, "an odd whole number >= 1")
        _check(
            math.isfinite(self.sigma) and self.sigma > 0, "sigma", self.sigma, "a positive number"
        )
        _check(math.isfinite(self.mu) and self.mu > 0, "mu", self.mu, "a positive number")
        _check(self.grid >= 1, "grid", self.grid, "a whole number >= 1")
        _check(self.count is None or self.count >= 0, "count", self.count, "a whole number >= 0")
        _check(self.mode in SYNTH_MODES, "mode", self.mode, f"one of {', '.join(SYNTH_MODES)}")
        k, scale = tuple(self.k), tuple(self.scale)
        _check(
            len(k) == 2 and all(float(v).is_integer() for v in k) and 1 <= k[0] <= k[1],
            "k",
            self.k,
            "two whole numbers [lo, hi] with 1 <= lo <= hi",
        )
        object.__setattr__(self, "k", (int(k[0]), int(k[1])))
        _check(
            len(scale) == 2 and 0 < scale[0] <= scale[1] and math.isfinite(scale[1]),
            "scale",
            self.scale,
            "two numbers [lo, hi] with 0 < lo <= hi",
        )
        object.__setattr__(self, "scale", (float(scale[0]), float(scale[1])))
        _check(self.where in WHERE, "where", self.where, _one_of(WHERE))
        _check(self.distance >= 0, "distance", self.distance, "a whole number >= 0")


@dataclass(frozen=True)
class TrainRecipe:
    """Training parameters; defaults follow the SIRST-5K paper's recipe."""

    model: str = "aff-unet"
    epochs: int = 1500
    batch_size: int = 256
    lr: float = 0.05
    optimizer: str = "adagrad"  # adagrad (the paper) | adam (BasicIRSTD)
    scheduler: str = "cosine"  # cosine | multistep | constant: lr as a function of progress
    milestones: tuple[float, ...] = (0.5, 0.75)  # multistep: fractions of the run
    gamma: float = 0.1  # multistep: the factor at each milestone
    warmup: int = 0  # linear warm-up, in steps (steps mode) or epochs (epoch mode)
    crop: int = 256
    pos_prob: float = 0.0  # the chance that a crop holds a target pixel (BasicIRSTD: 0.5)
    augment: str = "none"  # none | flips (vertical, horizontal, transpose; each p = 0.5)
    neg_loss: str = "sum"
    seed: int = 0
    eval_every: int = 10  # validate every N epochs (epoch mode)
    threshold: float = 0.5
    steps: int | None = None  # a fixed number of optimiser steps instead of epochs
    eval_every_steps: int | None = None  # validate every N steps (steps mode; None: at the end)
    # Keep a target's 4 rotations in one batch (L_Neg compares them there); false shuffles
    # samples one by one (only with neg_loss off): the study's test of what grouping costs.
    group_batches: bool = True

    def __post_init__(self) -> None:
        _check(self.model in MODELS, "model", self.model, f"one of {', '.join(MODELS)}")
        _check(self.epochs >= 1, "epochs", self.epochs, "a whole number >= 1")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "a whole number >= 1")
        _check(math.isfinite(self.lr) and self.lr > 0, "lr", self.lr, "a positive number")
        _check(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, _one_of(OPTIMIZERS))
        _check(self.scheduler in SCHEDULES, "scheduler", self.scheduler, _one_of(SCHEDULES))
        if isinstance(self.milestones, list):  # as read back from YAML or a checkpoint
            object.__setattr__(self, "milestones", tuple(self.milestones))
        _check(
            isinstance(self.milestones, tuple)
            and all(isinstance(m, float | int) and 0 < m < 1 for m in self.milestones)
            and list(self.milestones) == sorted(set(self.milestones)),
            "milestones",
            self.milestones,
            "increasing fractions of the run in (0, 1), e.g. [0.5, 0.75]",
        )
        _check(math.isfinite(self.gamma) and 0 < self.gamma <= 1, "gamma", self.gamma, "in (0, 1]")
        _check(self.warmup >= 0, "warmup", self.warmup, "a whole number >= 0")
        # 32: the deepest of the 4 stages keeps 2 x 2 pixels, so batch norm has more than one
        # value per channel even for a batch of one sample (the last batch of an epoch)
        _check(self.crop >= 32, "crop", self.crop, "a whole number >= 32")
        _check(0.0 <= self.pos_prob <= 1.0, "pos_prob", self.pos_prob, "a number in [0, 1]")
        _check(self.augment in AUGMENTS, "augment", self.augment, _one_of(AUGMENTS))
        _check(
            self.neg_loss in NEG_LOSS, "neg_loss", self.neg_loss, f"one of {', '.join(NEG_LOSS)}"
        )
        _check(self.eval_every >= 1, "eval_every", self.eval_every, "a whole number >= 1")
        _check(0.0 <= self.threshold < 1.0, "threshold", self.threshold, "a number in [0, 1)")
        _check(self.steps is None or self.steps >= 1, "steps", self.steps, "a whole number >= 1")
        _check(
            self.eval_every_steps is None or (self.eval_every_steps >= 1 and self.steps),
            "eval_every_steps",
            self.eval_every_steps,
            "a whole number >= 1, with steps (epoch runs validate every eval_every epochs)",
        )
        _check(
            self.group_batches in (True, False) and (self.group_batches or self.neg_loss == "off"),
            "group_batches",
            self.group_batches,
            "true or false, and true when neg_loss is on (L_Neg needs a target's rotations in "
            "one batch)",
        )


class RecipeValueError(UsageError, ValueError):
    """A recipe value out of range; ``key`` names the recipe key (the flag of the same name)."""

    def __init__(self, key: str, value: Any, expected: str):
        self.key = key
        flag = "--" + key.replace("_", "-")
        super().__init__(f"{flag} (recipe key {key!r}) must be {expected}, got {value!r}")


def _one_of(names: tuple[str, ...]) -> str:
    return f"one of {', '.join(names)}"


def _check(ok: bool, key: str, value: Any, expected: str) -> None:
    """Recipes are checked once, when built (as albumentations checks a transform's arguments)."""
    if not ok:
        raise RecipeValueError(key, value, expected)


def from_mapping(
    cls: type[T], data: dict[str, Any], source: str, flags: frozenset[str] = frozenset()
) -> T:
    """Build a recipe from a mapping, refusing unknown keys and wrongly typed values.
    ``flags``: the keys a flag set, whose bad value is the flag's, not ``source``'s."""
    names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(str(k) for k in set(data) - set(names))
    if unknown:
        raise UsageError(
            f"{source}: unknown recipe key(s) {', '.join(unknown)}; known: {', '.join(names)}"
        )
    try:
        values = {key: _coerce(key, value, getattr(cls, key, None)) for key, value in data.items()}
        return cls(**values)
    except RecipeValueError as exc:
        raise UsageError(str(exc) if exc.key in flags else f"{source}: {exc}") from None


def _coerce(key: str, value: Any, default: Any) -> Any:
    """``value`` as the type of the key's default (None stays None)."""
    if value is None:
        return None
    kind = type(default) if default is not None else int
    if kind is tuple:
        items = value if isinstance(value, list | tuple) else [value]
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in items):
            raise RecipeValueError(key, value, "a list of numbers")
        return tuple(float(v) for v in items)
    if kind is bool:
        if not isinstance(value, bool):
            raise RecipeValueError(key, value, "true or false")
        return value
    expected = {int: "a whole number", float: "a number"}.get(kind, "text")
    if isinstance(value, bool):
        raise RecipeValueError(key, value, expected)
    try:
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise RecipeValueError(key, value, expected) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML keeps the last one
    silently: in a study recipe a whole arm would vanish)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str) -> Any:
    """YAML text of a recipe, or one usage error naming the file, the line and the column."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(exc, "problem", None) or exc.__class__.__name__
        raise UsageError(f"{source}: not valid YAML{where} ({what}); fix the file") from None


def load_recipe(cls: type[T], text: str | None, source: str, overrides: dict[str, Any]) -> T:
    """Recipe = class defaults < YAML text < flags that were given (not None)."""
    data: dict[str, Any] = {}
    if text is not None:
        loaded = parse_yaml(text, source)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise UsageError(f"{source}: a recipe must be a YAML mapping of key: value")
        data.update(loaded)
    given = {k: v for k, v in overrides.items() if v is not None}
    data.update(given)
    return from_mapping(cls, data, source, frozenset(given))


def recipe_dict(recipe: Any) -> dict[str, Any]:
    """A recipe as plain data (tuples as lists): what YAML, JSON and checkpoints store."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(recipe).items()
    }


def to_yaml(recipe: Any) -> str:
    """The resolved recipe as YAML, keys in field order (stable bytes for provenance)."""
    return yaml.safe_dump(recipe_dict(recipe), sort_keys=False)


def read_recipe_text(recipe: str | Any) -> tuple[str, str]:
    """(YAML text, where it came from): a file path where one exists, else a recipe shipped
    with sirst-synth by name (``sirst5k``, ``train``, ``basicirstd``, ``study-cpu``)."""
    from pathlib import Path

    from sirst_synth.recipes import recipe_path

    path = Path(recipe)
    if not path.is_file():
        path = recipe_path(str(recipe))
    try:
        return path.read_bytes().decode("utf-8"), str(recipe)
    except UnicodeDecodeError:
        raise UsageError(f"--recipe {recipe}: not UTF-8 text; save it as UTF-8") from None
    except OSError:
        raise UsageError(f"--recipe {recipe}: cannot read the file; check the path") from None


def resolve_recipe(cls: type[T], recipe: Any, overrides: dict[str, Any]) -> T:
    """A recipe object, a shipped name or file, or None (the defaults), with the overrides
    that are not None on top: how the API and the CLI both build a recipe."""
    if isinstance(recipe, cls):
        values = {k: v for k, v in overrides.items() if v is not None}
        if not values:
            return recipe
        base = {f.name: getattr(recipe, f.name) for f in dataclasses.fields(recipe)}
        return from_mapping(cls, {**base, **values}, "recipe", frozenset(values))
    text, source = read_recipe_text(recipe) if recipe is not None else (None, "defaults")
    return load_recipe(cls, text, source, overrides)
