"""The run-length check of a study: a longer run of the same arm and seeds must gain less than
1.5 validation IoU points; hand-made runs with hand-computed gains."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import one_line

from sirst_synth.errors import DataError
from sirst_synth.study.length import final_val_iou, length_check
from sirst_synth.study.runner import RunResult


def _run(arm, seed, steps, vals):
    """A finished run whose validation IoU at 4 equally spaced points is ``vals``."""
    history = [
        {"step": steps * (i + 1) // 4, "IoU": v, "nIoU": v, "Pd": 0.9, "Fa": 1e-5}
        for i, v in enumerate(vals)
    ]
    return RunResult(
        arm, seed, steps, "x.pt", 0.5, 0.5, 0.9, 1e-5, 1.0, history=history, detected=9
    )


SHORT = [_run("reference", 0, 3000, [0.1, 0.6, 0.68, 0.70]),
         _run("reference", 1, 3000, [0.0, 0.5, 0.66, 0.67])]  # fmt: skip
LONG = [_run("reference-6000", 0, 6000, [0.5, 0.68, 0.70, 0.71]),
        _run("reference-6000", 1, 6000, [0.4, 0.66, 0.69, 0.68]),
        _run("reference-6000", 2, 6000, [0.4, 0.66, 0.69, 0.99])]  # fmt: skip


def test_gain_per_seed_and_the_verdict():
    check = length_check(SHORT, LONG)
    assert [r["seed"] for r in check["seeds"]] == [0, 1]  # seed 2 ran only long
    assert [round(r["gain"], 10) for r in check["seeds"]] == [0.01, 0.01]
    assert check["mean_gain"] == pytest.approx(0.01) and check["adequate"]
    assert not length_check(SHORT, LONG, margin=0.01)["adequate"]  # 0.01 is not below 0.01
    far = [
        dataclasses.replace(
            LONG[0], history=LONG[0].history[:3] + [{**LONG[0].history[3], "IoU": 0.74}]
        )
    ]
    check = length_check(SHORT, far)
    assert check["mean_gain"] == pytest.approx(0.04) and not check["adequate"]


def test_a_run_without_a_final_validation_point_or_no_common_seed_is_refused():
    cut = dataclasses.replace(SHORT[0], history=SHORT[0].history[:3])
    with pytest.raises(DataError, match="no validation point at its last step"):
        final_val_iou(cut)
    with pytest.raises(DataError, match="no seed was run at both lengths"):
        length_check(SHORT[:1], LONG[1:2])


def test_length_check_command_writes_the_table_and_the_curve(tmp_path, cli):
    for folder, runs in (("short", SHORT), ("long", LONG)):
        for r in runs:
            d = tmp_path / folder / "runs" / r.arm / f"seed{r.seed}"
            d.mkdir(parents=True)
            (d / "done.json").write_text(json.dumps(dataclasses.asdict(r)))
    args = ("length-check", tmp_path / "short", tmp_path / "long", "--long-arm", "reference-6000")
    r = cli(*args, "--out", tmp_path / "docs", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["adequate"] is True
    md = (tmp_path / "docs" / "length.md").read_text()
    assert "| 0 | 3000 | 70.00 | 6000 | 71.00 | +1.00 |" in md and "**adequate**" in md
    assert (tmp_path / "docs" / "length-iou-vs-step.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = cli(*args, "--out", tmp_path / "docs")
    assert r.code == 2 and "exists; pass --overwrite" in one_line(r.err)
    r = cli("length-check", tmp_path / "short", tmp_path / "long")  # no arm 'reference' in long
    assert r.code == 1 and "no finished run of arm 'reference'" in one_line(r.err)


def test_results_show_the_final_models_validation_iou():
    """The column a choice between arms may read: the final model on the validation split."""
    from sirst_synth.study.results import comparisons, results_markdown, summarise
    from sirst_synth.study.schema import load_study_recipe

    recipe = load_study_recipe(
        "seeds: 2\ntrain: {steps: 3000}\narms:\n  reference: {data: original}\n", "r.yaml"
    )
    table = summarise(recipe, SHORT)
    mean, std = table[0]["final_val_IoU"]
    assert mean == pytest.approx(0.685) and std == pytest.approx(0.0212132, abs=1e-6)
    md = results_markdown(recipe, table, comparisons(recipe, SHORT), [])
    assert "| reference | 1 | 2 | 0 | 68.50 ± 2.12 | 50.00 ± 0.00 |" in md
