"""A study's results: per-arm summaries, paired comparisons with the reference and verdicts,
results.json/.csv/.md and the plots. Collapsed runs are counted and shown; every statistic is
given with and without them."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

from sirst_synth.io.files import write_bytes_atomic, write_text_atomic
from sirst_synth.names import UNITS_SENTENCE as UNITS
from sirst_synth.names import in_units
from sirst_synth.stats import compare, iqm, mean_std
from sirst_synth.study.schema import METRICS, StudyRecipe

#: An extra test set's count of images with any false-alarm pixel: compared like a metric.
FA_IMAGES = "images_with_false_alarm"
#: Column words of a compared quantity that is not named as it is.
LABEL = {FA_IMAGES: "images with false alarms"}


def fmt(metric: str, value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    if metric == FA_IMAGES:  # a count of images, shown as it is
        return f"{value:{'+' if signed else ''}.2f}"
    return in_units(metric, value, signed)


def _ms(metric: str, values: list[float]) -> str:
    if not values:
        return "-"
    mean, std = mean_std(values)
    return fmt(metric, mean) + ("" if std is None else f" ± {fmt(metric, std)}")


def summarise(recipe: StudyRecipe, runs: list) -> list[dict]:
    """Per arm: runs, collapsed runs, mean, sample std (None for one run) and IQM of each
    metric of the final models, and best.pt (chosen on validation) read on test."""
    rows = []
    for arm in recipe.arms:
        mine = [r for r in runs if r.arm == arm.name]
        if not mine:
            continue
        row: dict[str, Any] = {
            "arm": arm.name,
            "runs": len(mine),
            "collapsed": sum(r.collapsed for r in mine),
            "exploratory": arm.exploratory,
            "train_fraction": arm.train_fraction,
        }
        for k in METRICS:
            values = [getattr(r, k) for r in mine]
            row[k] = mean_std(values)
            row[f"{k}_iqm"] = iqm(values)
        best = [r.best_on_val["IoU"] for r in mine if r.best_on_val]
        row["best_val_IoU_on_test"] = mean_std(best) if best else None
        # the final model on the validation split: what a choice between arms may look at
        val = [r.final_val_IoU for r in mine if r.final_val_IoU is not None]
        row["final_val_IoU"] = mean_std(val) if val else None
        row["wall_s"] = sum(r.wall_s for r in mine)
        row["paper_iou"], row["paper_row"] = arm.paper_iou, arm.paper_row
        rows.append(row)
    return rows


def comparisons(recipe: StudyRecipe, runs: list) -> list[dict]:
    """Each arm against its baseline (``StudyRecipe.baseline_of``: the reference, or the
    reference's regime at the arm's own training fraction), seed by seed, named in
    ``against``; with and without collapsed runs."""
    out = []
    for arm in recipe.arms:
        against = recipe.baseline_of(arm)
        if against is None:
            continue
        mine = [r for r in runs if r.arm == arm.name]
        ref_runs = [r for r in runs if r.arm == against]
        if not mine or not ref_runs:
            continue
        row: dict[str, Any] = {"arm": arm.name, "against": against}
        for label, keep in (
            ("all", lambda r: True),
            ("without_collapsed", lambda r: not r.collapsed),
        ):
            row[label] = _paired(
                METRICS,
                {r.seed: {k: getattr(r, k) for k in METRICS} for r in mine if keep(r)},
                {r.seed: {k: getattr(r, k) for k in METRICS} for r in ref_runs if keep(r)},
            )
        out.append(row)
    return out


def _paired(metrics: tuple[str, ...], mine: dict[int, dict], ref: dict[int, dict]) -> dict:
    """Per metric, an arm's values (by seed) against its baseline's, paired by seed
    (``stats.compare``); a value a run does not have is left out."""
    block = {}
    for k in metrics:
        a = {seed: m[k] for seed, m in mine.items() if m.get(k) is not None}
        b = {seed: m[k] for seed, m in ref.items() if m.get(k) is not None}
        if a and b:
            block[k] = dataclasses.asdict(compare(k, a, b, lambda v, k=k: fmt(k, v)))
    return block


def _diff_cell(metric: str, c: dict | None) -> str:
    if not c or c["mean_diff"] is None:
        return "-"
    ci = c["ci"]
    text = fmt(metric, c["mean_diff"], signed=True)
    if ci is not None:
        text += f" [{fmt(metric, ci[0], True)}, {fmt(metric, ci[1], True)}]"
    return text


def glance(
    recipe: StudyRecipe, table: list[dict], comps: list[dict], runs: list, names: list[str]
) -> list[str]:
    """One row per arm, the numbers a reader (and the README) quotes: seeds, the final
    model's validation and test IoU, the paired test-IoU difference from the arm it is read
    against with its verdict, and each extra test set's headline: IoU where it has targets,
    the images with any false alarm where it has none (means ± std over seeds)."""
    head = ["arm", "against", "seeds", "val IoU", "test IoU", "ΔIoU [95% CI]", "verdict (IoU)"]
    keys = {n: "IoU" if _has_targets(runs, n) else FA_IMAGES for n in names}
    heads = {n: f"{n}: {LABEL.get(k, k)}" for n, k in keys.items()}
    lines = [
        "## At a glance",
        "",
        f"Final models, mean ± sample std over seeds; {UNITS}. The verdict rows are above; "
        "'against' is the arm each is paired with.",
        "",
        "| " + " | ".join(head + list(heads.values())) + " |",
        "| " + " | ".join("---" for _ in [*head, *heads]) + " |",
    ]
    by_arm = {c["arm"]: c for c in comps}
    for row in table:
        c = by_arm.get(row["arm"])
        iou = c["all"].get("IoU") if c else None
        cells = [
            row["arm"] + (" (exploratory)" if row["exploratory"] else ""),
            c["against"] if c else "-",
            str(row["runs"]),
            _pair("IoU", row["final_val_IoU"]) if row["final_val_IoU"] else "-",
            _pair("IoU", row["IoU"]),
            _diff_cell("IoU", iou),
            iou["verdict"] if iou else "-",
        ]
        for name in names:
            mine = [r.extra[name] for r in runs if r.arm == row["arm"] and name in r.extra]
            key = keys[name]
            cells.append(_ms(key, [m[key] for m in mine if m.get(key) is not None]))
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def results_markdown(
    recipe: StudyRecipe,
    table: list[dict],
    comps: list[dict],
    extras: list,
    summary: list[str] = (),
) -> str:
    """results.md: the verdict tables first, then ``summary`` (``glance``), every arm, and the
    extra test sets."""
    steps = recipe.arms[0].train.steps
    lines = []
    if comps:
        lines += [
            f"## Verdicts against `{recipe.reference}` (final models, test split)",
            "",
            "Each arm is read against the reference, or, where it trains on a fraction of the "
            "data, against the reference's regime on that same fraction (column 'against'). "
            "Per-seed paired differences (arm minus 'against'), their mean with a 95% paired "
            "t-interval, the exact two-sided sign-flip p-value, and P(improve): the chance that "
            "a run of the arm beats a run of 'against' (all pairs of runs, ties half; "
            f"unpaired by definition). {UNITS}. A verdict is 'better' or 'worse' only when the "
            "interval excludes 0 and p < 0.05, each comparison on its own (no correction for "
            "the several arms and metrics read at once: a lone 'better' among many deserves "
            "more seeds before it is believed). IoU sums intersections and unions over the "
            "split, so one image with a large false alarm can carry it; nIoU averages per "
            "image and shows whether the change is broad.",
            "",
            "| arm | against | pairs | collapsed (arm/against) | ΔIoU [95% CI] | p | P(improve) | verdict (IoU) | ΔnIoU [95% CI] | verdict (nIoU) | ΔPd [95% CI] | ΔFa [95% CI] | verdict (Fa) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        coll = {row["arm"]: row["collapsed"] for row in table}
        for c in comps:
            block = c["all"]
            iou, niou = block.get("IoU"), block.get("nIoU")
            pd, fa = block.get("Pd"), block.get("Fa")
            if iou is None:
                continue
            p = "-" if iou["p"] is None else f"{iou['p']:.3f}"
            poi = "-" if iou["prob_improvement"] is None else f"{iou['prob_improvement']:.2f}"
            label = c["arm"] + (" (exploratory)" if _row(table, c["arm"])["exploratory"] else "")
            lines.append(
                f"| {label} | {c['against']} | {iou['pairs']} | "
                f"{coll[c['arm']]}/{coll[c['against']]} | "
                f"{_diff_cell('IoU', iou)} | {p} | {poi} | {iou['verdict']} | "
                f"{_diff_cell('nIoU', niou)} | {niou['verdict'] if niou else '-'} | "
                f"{_diff_cell('Pd', pd)} | {_diff_cell('Fa', fa)} | "
                f"{fa['verdict'] if fa else '-'} |"
            )
        lines += ["", "Without collapsed runs:", ""]
        lines += [
            "| arm | against | pairs | ΔIoU [95% CI] | verdict (IoU) |",
            "| --- | --- | --- | --- | --- |",
        ]
        for c in comps:
            iou = c["without_collapsed"].get("IoU")
            if iou:
                lines.append(
                    f"| {c['arm']} | {c['against']} | {iou['pairs']} | {_diff_cell('IoU', iou)} | "
                    f"{iou['verdict']} |"
                )
        lines.append("")
    lines += list(summary)
    lines += [
        "## Every arm",
        "",
        f"Final model after {steps} optimiser steps, scored once on the test split; mean ± "
        f"sample std over seeds (no ± for one run), IQM = interquartile mean. {UNITS}. "
        "'best-val model' is best.pt, the validation point with the highest IoU, chosen on the "
        "validation split and read on the test split. 'val IoU' is the final model on the "
        "validation split: the only score a choice between arms or settings may use. A "
        "collapsed run predicts no target at all, or has Fa above 1e-2.",
        "",
        "| arm | fraction | runs | collapsed | val IoU | IoU | IoU IQM | nIoU | Pd | Fa | best-val model IoU | paper, NUDT-SIRST (IoU) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in table:
        cells = [_pair("IoU", row["final_val_IoU"]) if row["final_val_IoU"] else "-"]
        cells += [_pair(k, row[k]) for k in ("IoU",)]
        cells.append(fmt("IoU", row["IoU_iqm"]))
        cells += [_pair(k, row[k]) for k in ("nIoU", "Pd", "Fa")]
        best = _pair("IoU", row["best_val_IoU_on_test"]) if row["best_val_IoU_on_test"] else "-"
        paper = f"{row['paper_iou']:.2f} ({row['paper_row']})" if row["paper_iou"] else "-"
        name = row["arm"] + (" (exploratory)" if row["exploratory"] else "")
        lines.append(
            f"| {name} | {row['train_fraction']:g} | {row['runs']} | {row['collapsed']} | "
            f"{' | '.join(cells)} | {best} | {paper} |"
        )
    for name, rows in extras:
        lines += ["", f"## Extra test: {name}", "", rows]
    return "\n".join(lines) + "\n"


def _row(table: list[dict], arm: str) -> dict:
    return next(r for r in table if r["arm"] == arm)


def _pair(metric: str, ms: tuple[float, float | None]) -> str:
    mean, std = ms
    return fmt(metric, mean) + ("" if std is None else f" ± {fmt(metric, std)}")


def extra_comparisons(recipe: StudyRecipe, runs: list, names: list[str]) -> list[dict]:
    """Per extra test set, each arm against the arm it is read against on the test split,
    seed by seed: on IoU, nIoU, Pd and Fa where the set has targets; on Fa and the number of
    images with any false alarm where it has none (unseen backgrounds: what a robust model
    keeps low)."""
    out = []
    for name in names:
        metrics = METRICS if _has_targets(runs, name) else ("Fa", FA_IMAGES)
        for arm in recipe.arms:
            against = recipe.baseline_of(arm)
            if against is None:
                continue
            mine = {r.seed: r.extra[name] for r in runs if r.arm == arm.name and name in r.extra}
            ref = {r.seed: r.extra[name] for r in runs if r.arm == against and name in r.extra}
            if not mine or not ref:
                continue
            block = _paired(metrics, mine, ref)
            out.append({"test": name, "arm": arm.name, "against": against, "all": block})
    return out


def _has_targets(runs: list, name: str) -> bool:
    """Whether extra test set ``name`` has targets (runs recorded before the count: yes)."""
    return any(r.extra[name].get("targets", 1) for r in runs if name in r.extra)


def _extra_paired_table(comps: list[dict]) -> list[str]:
    """The paired rows of one extra test set (``extra_comparisons`` of that set)."""
    if not comps:
        return []
    metrics = [k for k in (*METRICS, FA_IMAGES) if any(k in c["all"] for c in comps)]
    head = ["arm", "against", "pairs"]
    for k in metrics:
        head += [f"Δ{LABEL.get(k, k)} [95% CI]", "p", f"verdict ({LABEL.get(k, k)})"]
    lines = [
        "",
        "Paired by seed against the arm each is read against on the test split (as in the "
        "verdict table; fewer false alarms is better):",
        "",
        "| " + " | ".join(head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
    ]
    for c in comps:
        first = next(iter(c["all"].values()), None)
        cells = [c["arm"], c["against"], str(first["pairs"] if first else 0)]
        for k in metrics:
            m = c["all"].get(k)
            p = "-" if not m or m["p"] is None else f"{m['p']:.3f}"
            cells += [_diff_cell(k, m), p, m["verdict"] if m else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def extra_tables(
    recipe: StudyRecipe, runs: list, names: list[str], paired: list[dict]
) -> list[tuple[str, str]]:
    """Per extra test set: each arm's final models there (mean ± std over seeds), then each
    arm paired with the arm it is read against (``paired``: ``extra_comparisons``)."""
    out = []
    for name in names:
        targets = _has_targets(runs, name)
        lines = [
            f"{UNITS}; 'images with false alarms' counts images where any pixel was predicted "
            "outside every target.",
            "",
            "| arm | runs | IoU | nIoU | Pd | Fa | images with false alarms |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for arm in recipe.arms:
            mine = [r.extra[name] for r in runs if r.arm == arm.name and name in r.extra]
            if not mine:
                continue
            cells = [_ms(k, [m[k] for m in mine]) for k in METRICS]
            if not targets:  # IoU, nIoU and Pd have nothing to measure there
                cells[:3] = ["- (no targets)"] * 3
            fa_images = [m.get("images_with_false_alarm") for m in mine]
            fa_cell = (
                "-"
                if None in fa_images
                else " / ".join(str(v) for v in fa_images) + f" of {mine[0].get('images', '?')}"
            )
            lines.append(f"| {arm.name} | {len(mine)} | {' | '.join(cells)} | {fa_cell} |")
        lines += _extra_paired_table([c for c in paired if c["test"] == name])
        out.append((name, "\n".join(lines)))
    return out


ENV_KEYS = ("commit", "precision", "narrow_bn", "cpu", "torch")


def environments(runs: list) -> str:
    """Where the runs of one study differ in commit, precision, narrow batch-norm kernel, CPU
    or torch (results are equal only on the same CPU kind, precision and kernel)."""
    seen: dict[tuple, int] = {}
    for r in runs:
        env = r.env or {}
        key = tuple(env.get(k, "unrecorded") for k in ENV_KEYS)
        seen[key] = seen.get(key, 0) + 1
    lines = [
        "## Where the runs ran",
        "",
        "| runs | commit | precision | narrow batch norm | CPU | torch |",
    ]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for key, n in sorted(seen.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {n} | " + " | ".join(key) + " |")
    return "\n".join(lines) + "\n"


def write_results(
    out: Path, recipe: StudyRecipe, runs: list, extra_names: list[str]
) -> tuple[list[dict], list[dict]]:
    """results.json, results.csv, results.md and the plots; returns (table, comparisons)."""
    table = summarise(recipe, runs)
    comps = comparisons(recipe, runs)
    paired = extra_comparisons(recipe, runs, extra_names)
    per_run = [
        {k: v for k, v in dataclasses.asdict(r).items() if k != "curve"}
        | {"collapsed": r.collapsed}
        for r in runs
    ]
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(
        out / "results.json",
        json.dumps(
            {
                "runs": per_run,
                "arms": table,
                "comparisons": comps,
                "extra_comparisons": paired,
            },
            indent=1,
        )  # fmt: skip
        + "\n",
    )
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["arm", "seed", "steps", *METRICS, "collapsed", "wall_s", "best_val_step",
                "best_val_model_IoU_on_test", "precision", "cpu"])  # fmt: skip
    for r in runs:
        w.writerow(
            [r.arm, r.seed, r.steps, *(f"{getattr(r, k):.6g}" for k in METRICS), r.collapsed,
             r.wall_s, r.best_on_val.get("step", ""), r.best_on_val.get("IoU", ""),
             (r.env or {}).get("precision", ""), (r.env or {}).get("cpu", "")]
        )  # fmt: skip
    write_text_atomic(out / "results.csv", buf.getvalue())
    extras = extra_tables(recipe, runs, extra_names, paired)
    summary = glance(recipe, table, comps, runs, extra_names)
    md = results_markdown(recipe, table, comps, extras, summary) + "\n" + environments(runs)
    write_text_atomic(out / "results.md", md)
    from sirst_synth.plots import study_differences, study_iou_vs_step, study_pd_fa, study_points

    arms = [a.name for a in recipe.arms if any(r.arm == a.name for r in runs)]
    against = {c["arm"]: c["against"] for c in comps}
    write_bytes_atomic(out / "iou_vs_step.png", study_iou_vs_step(arms, runs, against))
    write_bytes_atomic(out / "seeds.png", study_points(arms, runs))
    write_bytes_atomic(out / "pdfa.png", study_pd_fa(arms, runs))
    if comps:
        write_bytes_atomic(out / "differences.png", study_differences(comps))
    return table, comps
