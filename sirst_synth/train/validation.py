"""Watching a run: validation when it is due (and which one is best), and the stop when the
loss or the weights are no longer finite."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from sirst_synth.errors import DataError
from sirst_synth.train.infer import evaluate_items

if TYPE_CHECKING:
    from sirst_synth.train.setup import Run


class TrainingDiverged(DataError):
    """The loss stopped being a number: the run stops, and nothing of it is saved as best."""


def check_finite(run: Run, bad: torch.Tensor, loss_sum: torch.Tensor) -> None:
    """One host sync, at validation and at the end of an epoch: before anything is saved."""
    step = int(bad)
    weights = all(bool(torch.isfinite(p).all()) for p in run.model.parameters())
    if step >= 0 or not torch.isfinite(loss_sum) or not weights:
        where = (
            f"the loss was not finite at step {step}"
            if step >= 0
            else (f"the weights were not finite by step {run.step}")
        )
        raise TrainingDiverged(
            f"{run.out}: training diverged: {where} (lr {run.lr:g}); lower --lr, or check the "
            "training images; nothing was saved after the last finite checkpoint"
        )


def step_validation_due(run: Run) -> bool:
    """Every ``eval_every_steps``, and at 25, 50, 75 and 100% of the steps whatever it is, so
    every run shows whether it had flattened."""
    every, steps = run.recipe.eval_every_steps, run.recipe.steps
    quarter = any(run.step == -(-steps * q // 4) for q in (1, 2, 3, 4))
    return bool(run.val_items) and (quarter or bool(every and run.step % every == 0))


def epoch_best(run: Run, row: dict) -> None:
    """Epoch mode: validate when due; without a validation split the lowest loss is best."""
    due = (row["epoch"]) % run.recipe.eval_every == 0 or row["epoch"] == run.recipe.epochs
    if run.val_items and due:
        validate(run, row)
    elif not run.val_items and row["loss"] < run.best.get("loss", float("inf")):
        run.best = {"epoch": row["epoch"], "step": row["step"], "loss": row["loss"]}
        row["best"] = True


def validate(run: Run, row: dict) -> None:
    """Score the validation split into ``row``; mark it best when its IoU is the highest yet."""
    totals, _ = evaluate_items(
        run.model, run.val_items, run.mean, run.std, run.rt, run.recipe.threshold
    )
    summary = totals.summary()
    scores = {k: summary[k] for k in ("IoU", "nIoU", "Pd", "Fa")}
    row.update(scores)
    if not run.best or scores["IoU"] > run.best.get("IoU", -1):
        run.best = {"epoch": row["epoch"], "step": row["step"], **scores}
        row["best"] = True
