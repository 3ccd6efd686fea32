"""Recipes shipped with sirst-synth, installed as package data: ``--recipe NAME`` finds them."""

from __future__ import annotations

from pathlib import Path

from sirst_synth.errors import UsageError

HERE = Path(__file__).resolve().parent


def recipe_names() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.yaml"))


def recipe_path(name: str) -> Path:
    """The shipped recipe ``name`` (with or without ``.yaml``)."""
    stem = name[:-5] if name.endswith(".yaml") else name
    path = HERE / f"{stem}.yaml"
    if "/" in stem or "\\" in stem or not path.is_file():
        raise UsageError(
            f"--recipe {name}: no such file, and no shipped recipe of that name; "
            f"shipped: {', '.join(recipe_names())} (see `sirst-synth recipes`)"
        )
    return path
