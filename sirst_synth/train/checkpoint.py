"""Checkpoints: weights + optimiser + scheduler + epoch + recipe + normalisation + version."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from sirst_synth import __version__
from sirst_synth.diffs import differences
from sirst_synth.errors import DataError, UsageError
from sirst_synth.io.files import write_bytes_atomic
from sirst_synth.recipe import recipe_dict

REQUIRED = ("model", "optimizer", "scheduler", "epoch", "recipe", "norm", "version")

if TYPE_CHECKING:
    from sirst_synth.recipe import TrainRecipe
    from sirst_synth.train.setup import Run


def save_checkpoint(path: Path, state: dict) -> None:
    """Serialise in memory, then the atomic writer: a crash or a full disk never leaves half a
    checkpoint or a stray temporary file, and says which file could not be written."""
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes_atomic(Path(path), buf.getvalue())


def weights_state(model_name: str, weights: dict, mean: float, std: float) -> dict:
    """A checkpoint of weights alone (no optimiser or schedule to resume): what ``evaluate``
    needs, e.g. for weights made outside ``train``."""
    return {
        "model": weights,
        "optimizer": {},
        "scheduler": {},
        "epoch": 0,
        "recipe": {"model": model_name},
        "norm": {"mean": mean, "std": std},
        "version": __version__,
    }


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
    norm = state["norm"] if isinstance(state["norm"], dict) else {}
    try:
        mean, std = float(norm["mean"]), float(norm["std"])
    except (KeyError, TypeError, ValueError):
        mean = std = float("nan")
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise DataError(
            f"{path}: its normalisation (mean {norm.get('mean')!r}, std {norm.get('std')!r}) is "
            "not a finite mean and a positive std; the checkpoint is damaged, retrain it"
        )
    return state


def load_weights(model: torch.nn.Module, state: dict, path: Path) -> torch.nn.Module:
    """Put a checkpoint's weights into ``model``; weights of another shape or model are one
    data error (torch's own message lists every tensor: kilobytes on one line)."""
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError, AttributeError):
        raise DataError(
            f"{path}: its weights do not fit the model {state['recipe'].get('model')!r} it "
            "declares (edited, or from another tool); use a checkpoint written by `sirst-synth train`"
        ) from None
    return model


def model_from_checkpoint(state: dict, path: Path) -> torch.nn.Module:
    """The model a checkpoint declares, with its weights."""
    from sirst_synth.train.model import build_model

    name = state["recipe"].get("model") if isinstance(state["recipe"], dict) else None
    try:
        model = build_model(name)
    except Exception:
        raise DataError(f"{path}: declares an unknown model {name!r}; retrain it") from None
    return load_weights(model, state, path)


#: The files that say a folder holds a training run (begun, stopped, or finished).
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl")


def holds_run(out: Path) -> bool:
    """Whether ``out`` holds a training run, finished or not (what --resume continues)."""
    return any((Path(out) / n).exists() for n in RUN_FILES)


def resume_state(out: Path, recipe: TrainRecipe, resume: bool) -> dict | None:
    """The state of ``out/last.pt`` to continue from, after checking it is the same run; None
    for a run stopped before its first checkpoint (it starts over, its log emptied).

    Lengths (epochs, steps) and validation frequencies may change on resume: the learning
    rate is a pure function of progress and length, so the run continues on the new curve.
    """
    last = out / "last.pt"
    if not resume:
        held = [n for n in RUN_FILES if (out / n).exists()]
        if held:
            raise UsageError(
                f"--out {out} already holds a run ({', '.join(held)}); pass --resume or choose "
                "a new folder"
            )
        return None
    if not last.is_file():
        if holds_run(out):
            return None  # stopped before its first checkpoint: nothing to keep, it starts over
        raise UsageError(f"--resume: {last} not found; start without --resume")
    from sirst_synth.recipe import TrainRecipe

    state = load_checkpoint(last)
    try:
        old = TrainRecipe(**state["recipe"])
    except (TypeError, UsageError):
        raise DataError(
            f"{last}: its recipe is not one this version reads; use a new --out"
        ) from None
    free = ("epochs", "steps", "eval_every", "eval_every_steps")
    diff = differences(
        {k: v for k, v in recipe_dict(old).items() if k not in free},
        {k: v for k, v in recipe_dict(recipe).items() if k not in free},
    )
    if (old.steps is None) != (recipe.steps is None):
        diff.append("steps (a run counts epochs or steps, not both)")
    if diff:
        raise UsageError(
            f"--resume: cannot resume a different run of {last} ({'; '.join(diff)}); "
            "use a new --out"
        )
    return state


def snapshot(run: Run) -> dict:
    """A checkpoint of the run as it stands (``run.epoch`` epochs and ``run.step`` steps done)."""
    return {
        "model": run.model.state_dict(),
        "optimizer": run.opt.state_dict(),
        "scheduler": {
            "name": run.recipe.scheduler,
            "done": run.step if run.steps_mode else run.epoch,
            "total": run.total,
        },
        "epoch": run.epoch,
        "step": run.step,
        "recipe": recipe_dict(run.recipe),
        "synth": run.online and run.online["identity"],
        "norm": {
            "mean": run.mean,
            "std": run.std,
            **({"value_range": list(run.value_range)} if run.value_range else {}),
        },
        "version": __version__,
        "best": run.best,
        "parameters": run.n_params,
        "precision": run.rt.precision,
        "narrow_bn": run.rt.narrow_bn,
        "data_fingerprint": run.data_fingerprint,
        "val_fingerprint": run.val_fingerprint,
    }
