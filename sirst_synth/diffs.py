"""What differs between what a folder recorded and what a command is asked to do now: the one
wording of every "cannot resume" message (generate, build-noise-bank, train, study)."""

from __future__ import annotations

from typing import Any


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``key: was X, now Y`` for every leaf that differs (nested keys joined by dots)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in list(old) + [k for k in new if k not in old]:
            out += differences(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: was {old!r}, now {new!r}"]
