"""Is a study long enough? Its reference arm, run at twice the steps with the same seeds, must
gain less than ``margin`` validation IoU over the study's own reference runs.

A decayed learning rate flattens the end of any curve, so "gained little over the last
quarter" proves nothing; only a longer run with its own full schedule shows what more steps
would buy. Both lengths are read on the validation split, never on test.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sirst_synth.errors import DataError

if TYPE_CHECKING:
    from sirst_synth.study.runner import RunResult

#: The study issue's bound: 1.5 IoU points (x100) of validation IoU.
MARGIN = 0.015


def final_val_iou(run: RunResult) -> float:
    """``run.final_val_IoU``, which a length check cannot do without."""
    if run.final_val_IoU is None:
        raise DataError(
            f"run {run.arm} seed {run.seed} has no validation point at its last step "
            f"({run.steps}); it cannot show what its final model scores on validation"
        )
    return run.final_val_IoU


def length_check(short: list, long: list, margin: float = MARGIN) -> dict:
    """Per seed run at both lengths: the final validation IoU of each and the gain of the longer
    run; the length is adequate when the mean gain over those seeds is below ``margin``."""
    by_short, by_long = {r.seed: r for r in short}, {r.seed: r for r in long}
    seeds = sorted(set(by_short) & set(by_long))
    if not seeds:
        raise DataError("no seed was run at both lengths; run the longer arm with the same seeds")
    rows = []
    for seed in seeds:
        a, b = by_short[seed], by_long[seed]
        if b.steps <= a.steps:
            raise DataError(
                f"seed {seed}: the longer run has {b.steps} steps, not more than {a.steps}"
            )
        va, vb = final_val_iou(a), final_val_iou(b)
        rows.append(
            {"seed": seed, "short_steps": a.steps, "long_steps": b.steps,
             "short_val_IoU": va, "long_val_IoU": vb, "gain": vb - va}
        )  # fmt: skip
    gain = sum(r["gain"] for r in rows) / len(rows)
    return {"seeds": rows, "mean_gain": gain, "margin": margin, "adequate": gain < margin}


def load_arm(folder: Path, arm: str) -> list:
    """The finished runs of ``arm`` in a study folder or its publish folder (done.json)."""
    from sirst_synth.study.runner import load_result

    paths = sorted((Path(folder) / "runs" / arm).glob("seed*/done.json"))
    if not paths:
        raise DataError(f"{folder}: no finished run of arm {arm!r} under runs/{arm}/")
    return [load_result(p) for p in paths]


def length_markdown(check: dict, short_arm: str, long_arm: str) -> str:
    verdict = "adequate" if check["adequate"] else "too short"
    lines = [
        f"## Run length: `{short_arm}` against `{long_arm}` (validation split)",
        "",
        f"Final-model validation IoU x100 of each seed at both lengths. The length is adequate "
        f"when the longer runs gain less than {check['margin'] * 100:.1f} points on average; "
        f"here the mean gain is {check['mean_gain'] * 100:+.2f}: **{verdict}**.",
        "",
        "| seed | steps | val IoU | steps (longer) | val IoU (longer) | gain |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in check["seeds"]:
        lines.append(
            f"| {r['seed']} | {r['short_steps']} | {r['short_val_IoU'] * 100:.2f} | "
            f"{r['long_steps']} | {r['long_val_IoU'] * 100:.2f} | {r['gain'] * 100:+.2f} |"
        )
    return "\n".join(lines) + "\n"
