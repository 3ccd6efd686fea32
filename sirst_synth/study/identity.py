"""A study's identity: what was run before must not change on --resume (arms may be added)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import yaml

from sirst_synth.diffs import differences
from sirst_synth.errors import UsageError
from sirst_synth.io.files import check_folder_path, inside, write_text_atomic
from sirst_synth.recipe import SynthRecipe, TrainRecipe, recipe_dict
from sirst_synth.study.schema import PAPER_KEYS, STUDY_FILE

#: Arm keys that describe an arm and change no run: not compared on resume.
FREE_KEYS = (*PAPER_KEYS, "exploratory")


def check_study_out(out: Path, data: Path, bank: Path | None, identity: dict, resume: bool) -> None:
    from sirst_synth.io.outdir import check_out_path

    check_out_path(out, data)
    check_folder_path(out, "--out", "for the study")
    if bank is not None and inside(bank, out):
        raise UsageError(f"--bank {bank} lies inside --out {out}; keep the bank outside the study")
    study_file = out / STUDY_FILE
    entries = list(out.iterdir()) if out.is_dir() else []
    if entries and not resume:
        raise UsageError(
            f"--out {out} is not empty; pass --resume to continue it or choose a new folder"
        )
    if entries and resume:
        if not study_file.is_file():
            raise UsageError(f"--out {out} was not written by sirst-synth study; nothing to resume")
        old = yaml.safe_load(study_file.read_text())
        # Arms may be added to a study; what was run before must not change. The paper's
        # reference numbers and the exploratory label describe an arm and change no run.
        old_arms, new_arms = (
            {
                k: _resolved({f: v for f, v in a.items() if f not in FREE_KEYS})
                for k, a in arms.items()
            }
            for arms in (old.get("arms") or {}, identity["arms"])
        )
        # Seeds may be added (or a resume may stop at fewer): a run of seed k is the same run
        # whatever the number of seeds. The reference arm only changes the comparisons.
        free = {"arms", "seeds", "seeds_exploratory", "reference"}
        diff = differences(
            {k: v for k, v in old.items() if k not in free},
            {k: v for k, v in identity.items() if k not in free},
        )
        diff += differences(old_arms, {k: new_arms.get(k) for k in old_arms}, "arms.")
        if diff:
            raise UsageError(
                f"--out {out}: cannot resume a different study ({'; '.join(diff[:6])}); use a new --out"
            )
        if identity != old:  # added arms or paper numbers: recorded for the next resume
            write_text_atomic(study_file, yaml.safe_dump(identity, sort_keys=False))
        return
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(study_file, yaml.safe_dump(identity, sort_keys=False))


def _resolved(arm: dict) -> dict:
    """An arm as this version resolves it: a recipe field added since the study was written
    takes its default, which is what the finished runs used."""
    out = dict(arm)
    for key, cls in (("synth", SynthRecipe), ("train", TrainRecipe)):
        # not a recipe this version reads: compared as written, so it differs
        with contextlib.suppress(KeyError, TypeError, ValueError):
            out[key] = recipe_dict(cls(**arm[key]))
    return out
