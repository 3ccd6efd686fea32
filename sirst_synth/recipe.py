"""Recipes: one frozen object of parameters, loaded from YAML, overridden by flags.

A recipe is written next to every output it produced, so a run can be repeated and a resume
can check it is continuing the same run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml

from sirst_synth.errors import UsageError

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


@dataclass(frozen=True)
class TrainRecipe:
    """Training parameters; defaults follow the SIRST-5K paper's recipe."""

    model: str = "aff-unet"
    epochs: int = 1500
    batch_size: int = 256
    lr: float = 0.05
    optimizer: str = "adagrad"
    scheduler: str = "cosine"
    crop: int = 256
    neg_loss: str = "sum"
    seed: int = 0
    eval_every: int = 10
    threshold: float = 0.5


def from_mapping(cls: type[T], data: dict[str, Any], source: str) -> T:
    """Build a recipe from a mapping, refusing unknown keys and wrongly typed values."""
    names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise UsageError(
            f"{source}: unknown recipe key(s) {', '.join(unknown)}; known: {', '.join(names)}"
        )
    values = {}
    for key, value in data.items():
        default = getattr(cls, key, None)
        values[key] = _coerce(key, value, default, source)
    return cls(**values)


def _coerce(key: str, value: Any, default: Any, source: str) -> Any:
    if value is None:
        return None
    kind = type(default) if default is not None else int
    if kind is bool or isinstance(value, bool):
        raise UsageError(f"{source}: recipe key {key!r} must be a number or a name, got {value!r}")
    try:
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if kind is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise UsageError(f"{source}: recipe key {key!r} has a bad value {value!r}") from None


def load_recipe(cls: type[T], text: str | None, source: str, overrides: dict[str, Any]) -> T:
    """Recipe = class defaults < YAML text < flags that were given (not None)."""
    data: dict[str, Any] = {}
    if text is not None:
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UsageError(
                f"{source}: not valid YAML ({exc.__class__.__name__}); fix the file"
            ) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise UsageError(f"{source}: a recipe must be a YAML mapping of key: value")
        data.update(loaded)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return from_mapping(cls, data, source)


def to_yaml(recipe: Any) -> str:
    """The resolved recipe as YAML, keys in field order (stable bytes for provenance)."""
    return yaml.safe_dump(dataclasses.asdict(recipe), sort_keys=False)
