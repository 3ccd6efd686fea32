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
