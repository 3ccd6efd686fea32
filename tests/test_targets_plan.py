import numpy as np
import pytest

from sirst_synth.errors import DataError
from sirst_synth.plan import plan, plan_shape
from sirst_synth.targets import components, target_centers


def test_components_8_connected_with_centroids():
    m = np.zeros((8, 8), np.uint8)
    m[1, 1] = m[2, 2] = 1  # diagonal: one target (8-connectivity)
    m[5:7, 4:7] = 255  # 2x3 block
    m[0, 7] = 1
    c = components(m)
    assert c.count == 3
    areas = sorted(c.areas.tolist())
    assert areas == [1, 2, 6]
    cents = {tuple(x) for x in c.centroids.tolist()}
    assert cents == {(1.5, 1.5), (5.5, 5.0), (0.0, 7.0)}
    # rounding half up: (1.5, 1.5) -> (2, 2), (5.5, 5.0) -> (6, 5)
    assert {tuple(x) for x in target_centers(m).tolist()} == {(2, 2), (6, 5), (0, 7)}


def test_empty_and_full_masks():
    assert components(np.zeros((4, 4), np.uint8)).count == 0
    full = components(np.ones((4, 5), np.uint8))
    assert (
        full.count == 1 and full.areas.tolist() == [20] and full.centroids.tolist() == [[1.5, 2.0]]
    )


def test_plan_one_pass_takes_every_rotation():
    jobs = list(plan(["a", "b", "c"], [2, 0, 1], None, seed=0))
    assert [(j.stem, j.pass_index) for j in jobs] == [("a", 0), ("c", 0)]
    assert sum(len(j.picks) for j in jobs) == 12
    assert jobs[0].picks == tuple((t, a) for t in (0, 1) for a in (0, 90, 180, 270))


def test_plan_exact_count_keeps_groups_and_is_seeded():
    counts = [1, 3, 2, 0, 4]
    stems = list("abcde")
    for n in (0, 1, 5, 13, 40, 41, 99):
        jobs = list(plan(stems, counts, n, seed=3))
        picks = [(j.stem, j.pass_index, t, a) for j in jobs for t, a in j.picks]
        assert len(picks) == n
        assert len(set(picks)) == n  # without replacement within a pass
        # every group except possibly one is complete (the 4 rotations stay together)
        groups = {}
        for s, p, t, a in picks:
            groups.setdefault((s, p, t), []).append(a)
        partial = [g for g in groups.values() if len(g) != 4]
        assert len(partial) <= 1
    assert list(plan(stems, counts, 13, seed=3)) == list(plan(stems, counts, 13, seed=3))
    assert list(plan(stems, counts, 13, seed=3)) != list(plan(stems, counts, 13, seed=4))
    # 40 = the pool (10 targets x 4) exactly: one full pass; 41: a second pass starts
    assert max(j.pass_index for j in plan(stems, counts, 40, 0)) == 0
    assert max(j.pass_index for j in plan(stems, counts, 41, 0)) == 1


def test_plan_errors():
    with pytest.raises(DataError, match="no training mask"):
        plan(["a"], [0], 4, 0)
    with pytest.raises(ValueError, match="count must be >= 0, got -1"):
        plan(["a"], [1], -1, 0)


@pytest.mark.parametrize("group", [4, 1])
@pytest.mark.parametrize("count", [None, 0, 1, 5, 23, 24, 25, 48, 61, 240])
def test_plan_shape_equals_the_enumerated_plan(count, group):
    """passes and job counts come from arithmetic plus one partial pass; they equal what
    enumerating every pass gives (images without targets included)."""
    stems, counts = ["a", "b", "c", "d", "e"], [2, 0, 1, 3, 0]
    sizes = counts if group == 4 else [1] * len(stems)
    jobs = list(plan(stems, sizes, count, 7, group_size=group))
    passes = max((j.pass_index for j in jobs), default=-1) + 1
    first = sum(j.pass_index == 0 for j in jobs)
    assert plan_shape(stems, sizes, count, 7, group) == (passes, first, len(jobs) - first)


def test_plan_is_lazy_for_any_count():
    """A count of 10^15 samples is planned one pass at a time: the first jobs and the shape
    come at once (generate refuses such a run for its size before planning it). Pool: 3
    groups of 4 = 12 samples; 10^15 = 83,333,333,333,333 full passes of 2 jobs + 4 samples
    (one group, one job) in a last pass."""
    stems, counts = ["a", "b"], [1, 2]
    jobs = plan(stems, counts, 10**15, 0)
    assert [(j.stem, j.pass_index) for j in (next(jobs), next(jobs), next(jobs))] == [
        ("a", 0), ("b", 0), ("a", 1),
    ]  # fmt: skip
    assert plan_shape(stems, counts, 10**15, 0) == (83_333_333_333_334, 2, 166_666_666_666_665)
