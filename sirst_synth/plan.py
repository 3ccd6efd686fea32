"""Which development samples to make: the 4-per-target pool, sampled to an exact count.

The pool holds, for every target of every training image, its 4 rotations (a *group*: the
4 negatives that L_Neg keeps together). ``count=None`` takes the pool once. ``count=N`` draws
whole groups without replacement in a seeded order until N samples are reached (the last
group may be cut); beyond the pool, further passes draw again, each with fresh noise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sirst_synth.errors import DataError
from sirst_synth.rotate import ANGLES
from sirst_synth.seeding import rng_for


@dataclass(frozen=True)
class ImageJob:
    """The development samples of one training image in one pass (one noise draw)."""

    stem: str
    pass_index: int
    picks: tuple[tuple[int, int], ...]  # (target index, angle)


def _groups(target_counts: list[int]) -> list[tuple[int, int]]:
    return [(i, t) for i, n in enumerate(target_counts) for t in range(n)]


def plan_pass(
    stems: list[str],
    target_counts: list[int],
    take: int | None,
    seed: int,
    pass_index: int,
    group_size: int = len(ANGLES),
) -> list[ImageJob]:
    """The jobs of one pass (one noise draw per image): every group where ``take`` covers the
    pool (or is None), else ``take`` samples from a seeded subset of whole groups (the last one
    may be cut). ``train --synth online`` makes epoch e from pass e, as generate does."""
    groups = _groups(target_counts)
    pool = len(groups) * group_size
    if take is None or take >= pool:
        order, take = groups, pool
    else:
        perm = rng_for(seed, "select", pass_index).permutation(len(groups))
        order = [groups[j] for j in perm[: -(-take // group_size)]]
    chosen: dict[int, list[tuple[int, int]]] = {}
    for i, t in order:
        n = min(group_size, take)
        take -= n
        chosen.setdefault(i, []).extend((t, a) for a in ANGLES[:n])
    return [ImageJob(stems[i], pass_index, tuple(sorted(chosen[i]))) for i in sorted(chosen)]


def pool_size(target_counts: list[int], group_size: int = len(ANGLES)) -> int:
    return len(_groups(target_counts)) * group_size


def plan(
    stems: list[str],
    target_counts: list[int],
    count: int | None,
    seed: int,
    group_size: int = len(ANGLES),
) -> Iterator[ImageJob]:
    """Jobs in a fixed order: pass-major, then the training split's order; made one pass at a
    time, so memory does not grow with ``count``.

    ``group_size`` is the samples per group: 4 rotations of a target (SIRST-5K), or 1 for the
    Noise2Noise-only ablation, where every image is one group of one unrotated sample.
    """
    if count is not None and count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    pool = pool_size(target_counts, group_size)
    remaining = pool if count is None else count
    if remaining and not pool:
        raise DataError(
            "no training mask holds a target, so there is nothing to augment; check the masks"
        )

    def passes(remaining: int) -> Iterator[ImageJob]:
        pass_index = 0
        while remaining > 0:
            take = min(remaining, pool)
            yield from plan_pass(stems, target_counts, take, seed, pass_index, group_size)
            remaining -= take
            pass_index += 1

    return passes(remaining)  # checked now, planned lazily


def plan_shape(
    stems: list[str],
    target_counts: list[int],
    count: int | None,
    seed: int,
    group_size: int = len(ANGLES),
) -> tuple[int, int, int]:
    """(passes, jobs of pass 0, jobs of later passes) of ``plan``, without planning every
    pass: full passes hold one job per image with a group, and only a last, partial pass is
    planned."""
    pool = pool_size(target_counts, group_size)
    remaining = pool if count is None else count
    if not pool or remaining <= 0:
        return 0, 0, 0
    full, rest = divmod(remaining, pool)
    per_full = sum(1 for n in target_counts if n)
    last = len(plan_pass(stems, target_counts, rest, seed, full, group_size)) if rest else 0
    first = per_full if full else last
    return full + (rest > 0), first, full * per_full + last - first
