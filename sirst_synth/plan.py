"""Which development samples to make: the 4-per-target pool, sampled to an exact count.

The pool holds, for every target of every training image, its 4 rotations (a *group*: the
4 negatives that L_Neg keeps together). ``count=None`` takes the pool once. ``count=N`` draws
whole groups without replacement in a seeded order until N samples are reached (the last
group may be cut); beyond the pool, further passes draw again, each with fresh noise.
"""

from __future__ import annotations

from dataclasses import dataclass

from sirst_synth.errors import DataError, UsageError
from sirst_synth.rotate import ANGLES
from sirst_synth.seeding import rng_for


@dataclass(frozen=True)
class ImageJob:
    """The development samples of one training image in one pass (one noise draw)."""

    stem: str
    pass_index: int
    picks: tuple[tuple[int, int], ...]  # (target index, angle)


def plan(
    stems: list[str],
    target_counts: list[int],
    count: int | None,
    seed: int,
    group_size: int = len(ANGLES),
) -> list[ImageJob]:
    """Jobs in a fixed order: pass-major, then the training split's order.

    ``group_size`` is the samples per group: 4 rotations of a target (SIRST-5K), or 1 for the
    Noise2Noise-only ablation, where every image is one group of one unrotated sample.
    """
    if count is not None and count < 0:
        raise UsageError(f"--count must be >= 0, got {count}")
    groups = [(i, t) for i, n in enumerate(target_counts) for t in range(n)]
    pool = len(groups) * group_size
    if count is None:
        count = pool
    if count and not pool:
        raise DataError(
            "no training mask holds a target, so there is nothing to augment; check the masks"
        )
    jobs: list[ImageJob] = []
    pass_index = 0
    remaining = count
    while remaining > 0:
        chosen: dict[int, list[tuple[int, int]]] = {}
        if remaining >= pool:
            order = groups
            remaining -= pool
            take = pool
        else:
            perm = rng_for(seed, "select", pass_index).permutation(len(groups))
            order = [groups[j] for j in perm[: -(-remaining // group_size)]]
            take = remaining
            remaining = 0
        for i, t in order:
            n = min(group_size, take)
            take -= n
            chosen.setdefault(i, []).extend((t, a) for a in ANGLES[:n])
        for i in sorted(chosen):
            jobs.append(ImageJob(stems[i], pass_index, tuple(sorted(chosen[i]))))
        pass_index += 1
    return jobs
