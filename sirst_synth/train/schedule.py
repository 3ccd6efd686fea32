"""The learning rate as a pure function of progress (nanoGPT's ``get_lr``), not a stateful
scheduler: a run resumed with more epochs or steps continues on the curve of its new length
instead of replaying a stale one."""

from __future__ import annotations

import math


def cosine_lr(base: float, done: int, total: int) -> float:
    """Cosine annealing to 0 (SGDR without restarts): ``base * (1 + cos(pi * done / total)) / 2``.

    ``done`` counts finished epochs (epoch mode) or optimiser steps (steps mode).
    """
    if total < 1:
        raise ValueError(f"total must be >= 1, got {total}")
    return base * 0.5 * (1.0 + math.cos(math.pi * min(max(done, 0), total) / total))


def learning_rate(
    base: float,
    done: int,
    total: int,
    schedule: str = "cosine",
    milestones: tuple[float, ...] = (0.5, 0.75),
    gamma: float = 0.1,
    warmup: int = 0,
) -> float:
    """The rate for the step (or epoch) after ``done`` of ``total``.

    - cosine: ``cosine_lr`` (the SIRST-5K paper's annealing);
    - multistep: ``base * gamma ** k`` once ``k`` milestones (fractions of ``total``) are
      passed, as PyTorch's MultiStepLR stepped once per epoch or step (BasicIRSTD: epochs 200
      and 300 of 400 = fractions 0.5 and 0.75, gamma 0.1);
    - constant: ``base``.
    A linear warm-up multiplies the first ``warmup`` values by (done + 1) / warmup.
    """
    if total < 1:
        raise ValueError(f"total must be >= 1, got {total}")
    if schedule == "cosine":
        lr = cosine_lr(base, done, total)
    elif schedule == "multistep":
        lr = base * gamma ** sum(done >= m * total for m in milestones)
    elif schedule == "constant":
        lr = base
    else:
        raise ValueError(f"schedule must be cosine, multistep or constant, got {schedule!r}")
    if warmup and done < warmup:
        lr *= (max(done, 0) + 1) / warmup
    return lr
