"""Checkpoints: weights + optimiser + scheduler + epoch + recipe + normalisation + version."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from sirst_synth.errors import DataError
from sirst_synth.io.files import tmp_name

REQUIRED = ("model", "optimizer", "scheduler", "epoch", "recipe", "norm", "version")


def save_checkpoint(path: Path, state: dict) -> None:
    """Write to a temporary name and rename: a crash never leaves half a checkpoint."""
    tmp = tmp_name(Path(path))
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """Load and check a checkpoint written by `save_checkpoint` (weights only, no pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found; pass the best.pt or last.pt of a train run")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise DataError(
            f"{path}: not a readable checkpoint (truncated or another format)"
        ) from None
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED):
        raise DataError(f"{path}: not a sirst-synth checkpoint; train one with `sirst-synth train`")
    return state
