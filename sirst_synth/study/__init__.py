"""sirst-synth study: does synthesised data make a trained detector better than what I do now?

Every arm is a data choice plus training choices; every (arm, seed) trains the same number of
optimiser steps with the same batch, crop, model and seed, on the training split (or a seeded
fraction of it), validates on the validation split, and its final model is read once on the
test split (and on extra test sets of unseen scenes) with the same evaluate code. Each arm is
compared with the reference arm seed by seed (``sirst_synth.stats``).

Layout of STUDY:

    study.yaml                 the resolved recipe (a resume with another one is refused)
    precision.json             precision and narrow batch-norm kernel of every run (chosen once)
    views/VIEW/                the training subset and validation split as a dataset (links)
    banks/VIEW.h5              the noise bank of a view's training images
    data/KIND-...-VIEW-seedK/  generated data, shared by the arms that use the same data
    runs/ARM/seedK/            recipe.yaml, data.json, train/ (the run), eval.json, done.json
    results.json/.csv/.md      per run, per arm, and the verdicts against the reference
    iou_vs_step.png  seeds.png  differences.png  pdfa.png

Modules: ``schema`` (the recipe), ``identity`` (what --resume compares), ``runner`` (the
loop), ``results`` (tables, verdicts, plots), ``length`` (is a study long enough?),
``status`` (where a study stands, read only).
"""

from sirst_synth.study.identity import check_study_out
from sirst_synth.study.runner import ExtraTest, RunResult, StudySummary, run_study
from sirst_synth.study.schema import (
    STUDY_FILE,
    Arm,
    StudyRecipe,
    load_study_recipe,
    parse_study_recipe,
)

__all__ = [
    "STUDY_FILE",
    "Arm",
    "ExtraTest",
    "RunResult",
    "StudyRecipe",
    "StudySummary",
    "check_study_out",
    "load_study_recipe",
    "parse_study_recipe",
    "run_study",
]
