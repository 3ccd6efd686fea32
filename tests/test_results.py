"""results.md from hand-made runs: what the verdict table says about each metric."""

from __future__ import annotations

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
    assert cells[3:7] == ["-30.00 [-30.00, -30.00]", "0.031", "0.00", "worse"]
    # nIoU: +1..+6, mean +3.50, sample std 1.8708, t(0.975, 5) = 2.5706: +-1.963
    assert cells[7:9] == ["+3.50 [+1.54, +5.46]", "better"]
    assert "| ΔnIoU [95% CI] | verdict (nIoU) |" in md
