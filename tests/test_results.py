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


def _with_extra(run: RunResult, bg_fa_images: int, bg_fa: float, v2_iou: float) -> RunResult:
    run.extra = {
        "v2": {"IoU": v2_iou, "nIoU": v2_iou, "Pd": 0.8, "Fa": 2e-5, "targets": 5,
               "images": 4, "images_with_false_alarm": 1},
        "bg": {"IoU": 0.0, "nIoU": 0.0, "Pd": 0.0, "Fa": bg_fa, "targets": 0, "images": 40,
               "images_with_false_alarm": bg_fa_images},
    }  # fmt: skip
    return run


def test_extra_test_sets_are_paired_like_the_test_split():
    """On a set without targets only Fa and the images with a false alarm are compared
    (fewer is better); an arm with 3 more such images on all 6 seeds is 'worse' (p = 2/64),
    its Fa +1e-5 on every seed likewise; on a set with targets all four metrics."""
    from sirst_synth.study.results import extra_comparisons, extra_tables

    recipe = load_study_recipe(SCARCE, "r.yaml")
    ref_bg = [20, 22, 21, 23, 22, 20]
    runs = [_with_extra(_run("reference", s, 0.7, 0.7), n, 4e-5, 0.3) for s, n in enumerate(ref_bg)]
    runs += [
        _with_extra(_run("paste", s, 0.7, 0.7), n + 3, 5e-5, 0.3 + 0.01 * (s % 2))
        for s, n in enumerate(ref_bg)
    ]
    comps = {(c["test"], c["arm"]): c for c in extra_comparisons(recipe, runs, ["v2", "bg"])}
    assert set(comps) == {("v2", "paste"), ("bg", "paste")}
    bg = comps["bg", "paste"]["all"]
    assert set(bg) == {"Fa", "images_with_false_alarm"}
    assert bg["images_with_false_alarm"]["mean_diff"] == 3.0
    assert bg["images_with_false_alarm"]["p"] == pytest.approx(2 / 64)
    assert bg["images_with_false_alarm"]["verdict"] == "worse"
    assert bg["Fa"]["mean_diff"] == pytest.approx(1e-5) and bg["Fa"]["verdict"] == "worse"
    v2 = comps["v2", "paste"]["all"]
    assert set(v2) == {"IoU", "nIoU", "Pd", "Fa"}
    # +0, +1, +0, +1, +0, +1 points: mean +0.5, sample std 0.5477, t 2.5706: +-0.5748
    assert v2["IoU"]["ci"] == pytest.approx((0.005 - 0.005748, 0.005 + 0.005748), abs=1e-6)
    assert v2["IoU"]["verdict"] == "no detectable difference (95% CI [-0.07, 1.07])"
    text = dict(extra_tables(recipe, runs, ["v2", "bg"], list(comps.values())))
    row = next(line for line in text["bg"].splitlines() if line.startswith("| paste | reference"))
    assert [c.strip() for c in row.strip("|").split("|")][2:6] == [
        "6",
        "+10.00 [+10.00, +10.00]",
        "0.031",
        "worse",
    ]
    assert (
        "| reference | 6 | - (no targets) | - (no targets) | - (no targets) | 40.00 ± 0.00 |"
        in text["bg"]
    )


def test_the_glance_table_gives_each_arm_its_headline_numbers():
    from sirst_synth.study.results import glance

    recipe = load_study_recipe(SCARCE, "r.yaml")
    ref_bg = [20, 22, 21, 23, 22, 20]
    runs = [_with_extra(_run("reference", s, 0.7, 0.7), n, 4e-5, 0.3) for s, n in enumerate(ref_bg)]
    runs += [
        _with_extra(_run("paste", s, 0.72, 0.7), n + 3, 5e-5, 0.4) for s, n in enumerate(ref_bg)
    ]
    table = summarise(recipe, runs)
    lines = glance(recipe, table, comparisons(recipe, runs), runs, ["v2", "bg"])
    assert lines[4] == (
        "| arm | against | seeds | val IoU | test IoU | ΔIoU [95% CI] | verdict (IoU) | "
        "v2: IoU | bg: images with false alarms |"
    )
    cells = {ln.split("|")[1].strip(): [c.strip() for c in ln.strip("|").split("|")]
             for ln in lines[6:-1]}  # fmt: skip
    # validation IoU 0.72 (its history row); +2 points on every seed: "better"; 20..23 + 3
    assert cells["paste"] == [
        "paste", "reference", "6", "72.00 ± 0.00", "72.00 ± 0.00", "+2.00 [+2.00, +2.00]",
        "better", "40.00 ± 0.00", "24.33 ± 1.21",
    ]  # fmt: skip
    assert cells["reference"][1:3] == ["-", "6"] and cells["reference"][-1] == "21.33 ± 1.21"
