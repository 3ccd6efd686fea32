"""Where a study stands: which runs are finished, which stopped part way, what is left.

A study runs for days over sessions and machines; its folder (or its --publish folder) says
where it is without training anything. Read only: safe beside a running study.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from sirst_synth.errors import DataError, UsageError
from sirst_synth.recipe import parse_yaml
from sirst_synth.study.runner import finished_run, read_jsonl, report_order, run_order, run_path
from sirst_synth.study.schema import STUDY_FILE, StudyRecipe, parse_study_recipe

#: study.yaml keys that describe where a study ran, not its recipe.
_IDENTITY_KEYS = ("tool", "version", "data", "device", "splits")


@dataclass(frozen=True)
class RunState:
    arm: str
    seed: int
    state: str  # "done", "partial" (stopped or running) or "to do"
    steps_done: int
    steps: int
    val_IoU: float | None = None  # the final model's, for a finished run
    test_IoU: float | None = None


@dataclass(frozen=True)
class StudyStatus:
    runs: list[RunState]  # in the order the study runs them
    images_per_s: float | None  # median training rate of one run, from the runs' own logs
    batch_size: int

    def count(self, state: str) -> int:
        return sum(r.state == state for r in self.runs)

    def hours_left(self, jobs: int = 1) -> float | None:
        """Training time left at ``jobs`` runs at a time, at the measured rate of one run
        (validation and set-up not counted); None before any run has logged a rate."""
        if not self.images_per_s:
            return None
        steps = sum(r.steps - r.steps_done for r in self.runs)
        return steps * self.batch_size / self.images_per_s / jobs / 3600


def recipe_of(study: Path) -> StudyRecipe:
    """The recipe a study recorded in its study.yaml (also in a --publish folder)."""
    path = Path(study) / STUDY_FILE
    if not path.is_file():
        raise UsageError(f"{study}: no {STUDY_FILE}; give a study folder or its --publish folder")
    recorded = parse_yaml(path.read_text(), str(path))
    if not isinstance(recorded, dict):
        raise DataError(f"{path}: not a study record; it was changed by hand or is damaged")
    return parse_study_recipe(
        {k: v for k, v in recorded.items() if k not in _IDENTITY_KEYS}, str(path)
    )


def study_status(study: Path) -> StudyStatus:
    """Every planned run's state: done (done.json), partial (a training log without done.json:
    stopped, or running now) or to do."""
    study = Path(study)
    recipe = recipe_of(study)
    runs, rates = [], []
    for arm, seed in run_order(recipe):
        folder = run_path(study, arm.name, seed)
        steps = arm.train.steps
        log = folder / "train" / "metrics.jsonl"
        if not log.is_file():  # a --publish folder keeps a finished run's log beside done.json
            log = folder / "metrics.jsonl"
        logged = read_jsonl(log, growing=True)
        r = finished_run(study, arm.name, seed)
        if r is not None:
            runs.append(RunState(arm.name, seed, "done", steps, steps, r.final_val_IoU, r.IoU))
        else:
            done = max((int(row.get("step", 0)) for row in logged), default=0)
            runs.append(RunState(arm.name, seed, "partial" if done else "to do", done, steps))
        rates += [float(row["images_per_s"]) for row in logged if row.get("images_per_s")]
    return StudyStatus(
        runs,
        statistics.median(rates) if rates else None,
        recipe.arms[0].train.batch_size,
    )


def rewrite_results(study: Path) -> tuple[list[dict], list[dict]]:
    """results.json/.csv/.md and the plots of a study folder (or its --publish folder), again,
    from its finished runs' done.json files, training nothing: for a stopped study, or after
    the report itself changed. Returns (table, comparisons)."""
    from sirst_synth.study.results import write_results

    study = Path(study)
    recipe = recipe_of(study)
    done = {
        (arm.name, seed): finished_run(study, arm.name, seed) for arm, seed in run_order(recipe)
    }
    finished = {key: r for key, r in done.items() if r is not None}
    if not finished:
        raise UsageError(f"{study}: no finished run yet, so there is nothing to report")
    runs = report_order(recipe, finished)
    extra_names = list(dict.fromkeys(name for r in runs for name in r.extra))
    return write_results(study, recipe, runs, extra_names)
