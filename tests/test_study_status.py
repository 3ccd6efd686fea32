"""study-status: a study's runs as done, part way or to do, read from its files only."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from sirst_synth.study import RunResult, load_study_recipe
from sirst_synth.study.status import study_status

RECIPE = (
    "seeds: 2\nreference: reference\ntrain: {steps: 100, batch_size: 4}\n"
    "arms:\n  reference: {data: original}\n  x: {data: original, train: {pos_prob: 0.0}}\n"
)


@pytest.fixture
def study(tmp_path):
    """reference seed 0 finished; x seed 0 stopped at step 25; both seed 1 runs not begun."""
    recipe = load_study_recipe(RECIPE, "r.yaml")
    identity = {"tool": "sirst-synth study", "version": "0", "data": {"name": "d"},
                "device": "auto", "splits": {"train": 3}, **recipe.to_dict()}  # fmt: skip
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(identity, sort_keys=False))
    done = tmp_path / "runs" / "reference" / "seed0"
    done.mkdir(parents=True)
    history = [{"step": 100, "IoU": 0.5, "nIoU": 0.5, "Pd": 0.9, "Fa": 0.0}]
    result = RunResult("reference", 0, 100, "x.pt", 0.4, 0.4, 0.9, 0.0, 60.0, history=history)
    (done / "done.json").write_text(json.dumps(dataclasses.asdict(result)))
    part = tmp_path / "runs" / "x" / "seed0" / "train"
    part.mkdir(parents=True)
    rows = [{"epoch": 1, "step": 10, "images_per_s": 10.0}, {"epoch": 2, "step": 20,
            "images_per_s": 30.0}, {"step": 20, "IoU": 0.1}, {"epoch": 3, "step": 25,
            "images_per_s": 20.0}]  # fmt: skip
    (part / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"ep')
    return tmp_path


def test_each_run_is_done_part_way_or_to_do_and_the_time_left_follows(study):
    status = study_status(study)
    got = [(r.arm, r.seed, r.state, r.steps_done, r.val_IoU, r.test_IoU) for r in status.runs]
    assert got == [
        ("reference", 0, "done", 100, 0.5, 0.4),
        ("x", 0, "partial", 25, None, None),  # the torn last line is a line being written
        ("reference", 1, "to do", 0, None, None),
        ("x", 1, "to do", 0, None, None),
    ]
    assert status.images_per_s == 20.0  # median of 10, 30, 20
    # 75 + 100 + 100 steps of batch 4 = 1,100 images at 20 a second: 55 s
    assert status.hours_left(1) == pytest.approx(55 / 3600)
    assert status.hours_left(2) == pytest.approx(55 / 7200)


def test_a_publish_folder_gives_the_rate_from_its_finished_runs_logs(study):
    """A --publish folder has no train/ folders: a finished run's log lies beside done.json."""
    log = study / "runs" / "reference" / "seed0" / "metrics.jsonl"
    log.write_text(json.dumps({"epoch": 1, "step": 100, "images_per_s": 40.0}) + "\n")
    status = study_status(study)
    assert status.images_per_s == 25.0  # median of 40 and the partial run's 10, 30, 20


def test_study_status_prints_a_cell_per_seed(study, cli):
    r = cli("study-status", study, "--jobs", "2")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert any("reference" in s and "50.00      ." in s for s in lines), r.out
    assert any(" x " in s and "25%      ." in s for s in lines), r.out
    assert "1 done, 1 part way, 2 to do, of 4" in r.out
    r = cli("study-status", study, "--json")
    assert json.loads(r.out)["hours_left"] == pytest.approx(55 / 3600)


def test_a_folder_without_a_study_record_is_a_usage_error(tmp_path, cli):
    from conftest import one_line

    r = cli("study-status", tmp_path)
    assert r.code == 2
    assert one_line(r.err) == (
        f"error: {tmp_path}: no study.yaml; give a study folder or its --publish folder"
    )


def _finish(study, arm: str, seed: int, iou: float, extra: dict) -> None:
    folder = study / "runs" / arm / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    history = [{"step": 100, "IoU": iou, "nIoU": iou, "Pd": 0.9, "Fa": 0.0}]
    result = RunResult(arm, seed, 100, "x.pt", iou, iou, 0.9, 1e-6, 60.0, history=history,
                       detected=9, extra=extra)  # fmt: skip
    (folder / "done.json").write_text(json.dumps(dataclasses.asdict(result)))


def test_study_report_writes_the_results_again_from_finished_runs_only(study, cli):
    """Seed 0 and 1 of reference (0.4, 0.5) and x (0.42, 0.56): the report pairs them (mean
    difference +0.04, one pair each sign-flip: too few seeds), names the extra test the runs
    carry, and trains nothing (x seed... partial runs stay as they are)."""
    v2 = {"IoU": 0.3, "nIoU": 0.3, "Pd": 0.8, "Fa": 1e-6, "images": 4,
          "images_with_false_alarm": 1}  # fmt: skip
    _finish(study, "reference", 0, 0.4, {"v2": v2})
    _finish(study, "reference", 1, 0.5, {"v2": v2})
    _finish(study, "x", 1, 0.56, {"v2": v2})
    (study / "runs" / "x" / "seed0" / "done.json").unlink(missing_ok=True)
    _finish(study, "x", 0, 0.42, {"v2": v2})
    r = cli("study-report", study, "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    (comp,) = data["comparisons"]
    assert (comp["arm"], comp["against"]) == ("x", "reference")
    assert comp["all"]["IoU"]["mean_diff"] == pytest.approx(0.04)
    assert comp["all"]["IoU"]["pairs"] == 2
    md = (study / "results.md").read_text()
    assert "| x | reference | 2 | 0/0 | +4.00 [" in md
    assert "## Extra test: v2" in md and "| reference | 2 | 30.00 ± 0.00 |" in md
    for name in ("results.json", "results.csv", "seeds.png", "differences.png"):
        assert (study / name).is_file(), name
    assert not (study / "runs" / "x" / "seed1" / "train").exists()  # nothing trained


def test_study_report_without_a_finished_run_says_so(tmp_path, cli):
    from conftest import one_line

    recipe = load_study_recipe(RECIPE, "r.yaml")
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    r = cli("study-report", tmp_path)
    assert r.code == 2
    assert one_line(r.err) == (
        f"error: {tmp_path}: no finished run yet, so there is nothing to report"
    )


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"arm": "reference"', "not JSON: Expecting ',' delimiter: line 1 column 20 (char 19)"),
        ("[1, 2]", "not a JSON object"),
        ('{"arm": "reference"}', "no seed, steps, checkpoint, IoU, nIoU, Pd, Fa, wall_s"),
        (
            json.dumps(dataclasses.asdict(RunResult("x", 0, 100, "x.pt", 0.4, 0.4, 0.9, 0, 60))),
            "it records x seed 0, not this folder's run",
        ),
    ],
)
def test_a_damaged_done_json_is_a_data_error_that_names_it(study, cli, text, why):
    from conftest import one_line

    done = study / "runs" / "reference" / "seed0" / "done.json"
    done.write_text(text)
    for command in ("study-status", "study-report"):
        r = cli(command, study)
        assert r.code == 1, r.err
        assert one_line(r.err) == (
            f"error: {done}: not a finished run's record ({why}); restore it (for example "
            "from git) or delete that run's folder so that --resume trains it again"
        )
