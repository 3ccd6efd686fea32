"""Training subsets and validation splits, drawn from explicit seeds (pure: lists in, lists out).

A study trains on a training split, chooses and watches on a validation split, and reads the
test split once per final model; scarce-data arms train on a seeded fraction of the training
split, the same subset for every arm at one fraction and seed.
"""

from __future__ import annotations

from sirst_synth.seeding import rng_for


def fraction_subset(stems: list[str], fraction: float, seed: int) -> list[str]:
    """``round(fraction * n)`` stems (at least 1), drawn per (seed, fraction), in their order."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return list(stems)
    k = max(1, round(fraction * len(stems)))
    chosen = set(rng_for(seed, "train-fraction", f"{fraction:g}").permutation(len(stems))[:k])
    return [s for i, s in enumerate(stems) if i in chosen]


def carve_validation(stems: list[str], share: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train, validation): a seeded ``share`` of the stems (at least 1) held out."""
    if not 0 < share < 1 or len(stems) < 2:
        raise ValueError("a validation share in (0, 1) of at least 2 stems is needed")
    k = min(max(1, round(share * len(stems))), len(stems) - 1)
    held = set(rng_for(seed, "validation-split").permutation(len(stems))[:k])
    return (
        [s for i, s in enumerate(stems) if i not in held],
        [s for i, s in enumerate(stems) if i in held],
    )
