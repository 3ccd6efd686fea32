"""results.md from hand-made runs: what the verdict table says about each metric."""

from __future__ import annotations

import pytest

from sirst_synth.study import RunResult
from sirst_synth.study.results import comparisons, results_markdown, summarise
from sirst_synth.study.schema import load_study_recipe


def _run(arm: str, seed: int, iou: float, niou: float) -> RunResult:
    history = [{"step": 8, "IoU": iou, "nIoU": niou, "Pd": 0.9, "Fa": 1e-5}]
    return RunResult(arm, seed, 8, "x.pt", iou, niou, 0.9, 1e-5, 1.0, history=history, detected=9)


def test_the_verdict_table_reads_niou_beside_iou():
    """An arm whose summed IoU falls on every seed (one image's false alarm) while its
    per-image IoU rises on every seed: the table gives both verdicts, not only IoU's."""
    recipe = load_study_recipe(
        "seeds: 6\nreference: reference\ntrain: {steps: 8}\narms:\n  reference: {data: original}\n"
        "  x: {data: original, train: {pos_prob: 0.0}}\n",
        "r.yaml",
    )
    ref_iou = [0.70, 0.72, 0.68, 0.71, 0.69, 0.73]
    runs = [_run("reference", s, v, 0.70) for s, v in enumerate(ref_iou)]
    runs += [_run("x", s, v - 0.30, 0.70 + 0.01 * (s + 1)) for s, v in enumerate(ref_iou)]
    md = results_markdown(recipe, summarise(recipe, runs), comparisons(recipe, runs), [])
    row = next(line for line in md.splitlines() if line.startswith("| x |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # IoU: -30 on all 6 seeds (no spread: the interval is the point); p = 2/64 (sign flips)
    assert cells[1] == "reference"
    assert cells[4:8] == ["-30.00 [-30.00, -30.00]", "0.031", "0.00", "worse"]
    # nIoU: +1..+6, mean +3.50, sample std 1.8708, t(0.975, 5) = 2.5706: +-1.963
    assert cells[8:10] == ["+3.50 [+1.54, +5.46]", "better"]
    assert "| ΔnIoU [95% CI] | verdict (nIoU) |" in md


SCARCE = (
    "seeds: 6\nreference: reference\ntrain: {steps: 8}\narms:\n"
    "  reference: {data: original}\n"
    "  paste: {data: paste}\n"
    "  reference-quarter: {data: original, train_fraction: 0.25}\n"
    "  paste-quarter: {data: paste, train_fraction: 0.25}\n"
    "  flips-quarter: {data: original, train_fraction: 0.25, train: {augment: flips}}\n"
    "  paste-half: {data: paste, train_fraction: 0.5}\n"
)


def test_a_scarce_data_arm_is_read_against_the_reference_on_the_same_fraction():
    """paste-quarter against reference-quarter (same data fraction, reference regime), not
    against the reference on all the data; where no such arm exists, the reference."""
    recipe = load_study_recipe(SCARCE, "r.yaml")
    arm = {a.name: a for a in recipe.arms}
    against = {name: recipe.baseline_of(a) for name, a in arm.items()}
    assert against == {
        "reference": None,
        "paste": "reference",
        "reference-quarter": "reference",  # its own regime on less data: the cost of scarcity
        "paste-quarter": "reference-quarter",
        "flips-quarter": "reference-quarter",  # another regime, same fraction
        "paste-half": "reference",  # no reference at one half
    }
    ref = [0.70, 0.72, 0.68, 0.71, 0.69, 0.73]
    quarter = [0.60, 0.61, 0.59, 0.62, 0.58, 0.60]
    runs = [_run("reference", s, v, 0.7) for s, v in enumerate(ref)]
    runs += [_run("reference-quarter", s, v, 0.6) for s, v in enumerate(quarter)]
    runs += [_run("paste-quarter", s, v + 0.02, 0.6) for s, v in enumerate(quarter)]
    comps = {c["arm"]: c for c in comparisons(recipe, runs)}
    assert set(comps) == {"reference-quarter", "paste-quarter"}
    assert comps["paste-quarter"]["against"] == "reference-quarter"
    iou = comps["paste-quarter"]["all"]["IoU"]
    # +2 points on every seed against the quarter reference (against the full one: about -8)
    assert iou["mean_diff"] == pytest.approx(0.02) and iou["verdict"] == "better"
    assert comps["reference-quarter"]["all"]["IoU"]["mean_diff"] == pytest.approx(
        (sum(quarter) - sum(ref)) / 6
    )
    md = results_markdown(recipe, summarise(recipe, runs), list(comps.values()), [])
    row = next(line for line in md.splitlines() if line.startswith("| paste-quarter |"))
    assert [c.strip() for c in row.strip("|").split("|")][1:4] == ["reference-quarter", "6", "0/0"]
