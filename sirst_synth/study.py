"""sirst-synth study: the paper's ablation (Table V) as one resumable command.

Every arm is a data choice plus training choices; every (arm, seed) trains the same number of
optimiser steps with the same batch, crop, model and seed, so the data is the only difference,
and is scored on the untouched test split with the same evaluate code. The primary number is
the final model's; the best validation point is reported beside it, labelled as selected on the
test split (what the field usually publishes).

Layout of STUDY:

    study.yaml                 the resolved recipe (a resume with another one is refused)
    data/KIND-...-seedK/       generated data, shared by the arms that use the same data
    runs/ARM/seedK/            data.json (which data), train/ (the run), eval.json, done.json
    results.json/.csv/.md      per run and mean +- std per arm
    iou_vs_step.png  bars.png  pdfa.png
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sirst_synth import __version__
from sirst_synth.errors import UsageError
from sirst_synth.generate import generate
from sirst_synth.io.files import inside, write_bytes_atomic, write_text_atomic
from sirst_synth.io.manifest import MANIFEST, read_manifest
from sirst_synth.names import PRECISIONS
from sirst_synth.progress import Progress
from sirst_synth.recipe import SynthRecipe, TrainRecipe, from_mapping, parse_yaml, recipe_dict

DATA_KINDS = ("original", "sirst5k", "n2n", "online")
METRICS = ("IoU", "nIoU", "Pd", "Fa")
STUDY_FILE = "study.yaml"
PAPER_KEYS = ("paper_iou", "paper_row")


@dataclass(frozen=True)
class Arm:
    """One arm: which data (and how it is synthesised) and how the detector trains on it."""

    name: str
    data: str  # original | sirst5k | n2n (generated once) | online (fresh every epoch)
    synth: SynthRecipe
    train: TrainRecipe
    paper_iou: float | None = None  # the paper's NUDT-SIRST IoU of the matching row, if any
    paper_row: str | None = None


@dataclass(frozen=True)
class StudyRecipe:
    seeds: int
    precision: str
    threads: int | None
    arms: tuple[Arm, ...]

    def to_dict(self) -> dict:
        return {
            "seeds": self.seeds,
            "precision": self.precision,
            "threads": self.threads,
            "arms": {
                a.name: {
                    "data": a.data,
                    "synth": recipe_dict(a.synth),
                    "train": recipe_dict(a.train),
                    "paper_iou": a.paper_iou,
                    "paper_row": a.paper_row,
                }
                for a in self.arms
            },
        }


def parse_study_recipe(data: Any, source: str, seeds: int | None = None) -> StudyRecipe:
    """A study recipe from its YAML mapping: shared ``synth`` and ``train`` sections, then arms
    that override them. Every arm must train by ``steps`` (equal optimisation per arm)."""
    if not isinstance(data, dict):
        raise UsageError(f"{source}: a study recipe is a YAML mapping with an 'arms' section")
    known = {"seeds", "precision", "threads", "synth", "train", "arms"}
    unknown = sorted(str(k) for k in set(data) - known)
    if unknown:
        raise UsageError(
            f"{source}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    n_seeds = seeds if seeds is not None else data.get("seeds", 1)
    if not isinstance(n_seeds, int) or isinstance(n_seeds, bool) or n_seeds < 1:
        raise UsageError(f"{source}: seeds must be a whole number >= 1, got {n_seeds!r}")
    precision = str(data.get("precision", "auto"))
    if precision not in PRECISIONS:
        raise UsageError(f"{source}: precision must be one of {', '.join(PRECISIONS)}")
    threads = data.get("threads")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise UsageError(f"{source}: threads must be a whole number >= 1, got {threads!r}")
    base_synth = _section(data, "synth", source)
    base_train = _section(data, "train", source)
    arms_data = data.get("arms")
    if not isinstance(arms_data, dict) or not arms_data:
        raise UsageError(f"{source}: 'arms' must map arm names to their settings")
    arms = []
    for name, spec in arms_data.items():
        where = f"{source}: arm {name!r}"
        if not isinstance(spec, dict):
            raise UsageError(f"{where} must be a mapping (data, synth, train)")
        extra = sorted(
            str(k) for k in set(spec) - {"data", "synth", "train", "paper_iou", "paper_row"}
        )
        if extra:
            raise UsageError(f"{where}: unknown key(s) {', '.join(extra)}")
        kind = spec.get("data")
        if kind not in DATA_KINDS:
            raise UsageError(f"{where}: data must be one of {', '.join(DATA_KINDS)}, got {kind!r}")
        synth = from_mapping(SynthRecipe, {**base_synth, **_section(spec, "synth", where)}, where)
        if kind == "n2n":
            synth = dataclasses.replace(synth, mode="n2n")
        train = from_mapping(TrainRecipe, {**base_train, **_section(spec, "train", where)}, where)
        if train.steps is None:
            raise UsageError(f"{where}: train.steps is required (arms are compared at equal steps)")
        paper = spec.get("paper_iou")
        arms.append(
            Arm(
                str(name),
                kind,
                synth,
                train,
                None if paper is None else float(paper),
                spec.get("paper_row"),
            )
        )
    steps = {(a.train.steps, a.train.batch_size, a.train.crop) for a in arms}
    if len(steps) > 1:
        raise UsageError(
            f"{source}: every arm must train the same steps, batch_size and crop "
            "(the data is the only difference); move them to the shared train section"
        )
    return StudyRecipe(n_seeds, precision, threads, tuple(arms))


def _section(data: dict, key: str, source: str) -> dict:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise UsageError(f"{source}: '{key}' must be a mapping of recipe keys")
    return value


def load_study_recipe(text: str, source: str, seeds: int | None = None) -> StudyRecipe:
    return parse_study_recipe(parse_yaml(text, source), source, seeds)


# --------------------------------------------------------------------------- running


@dataclass
class RunResult:
    arm: str
    seed: int
    steps: int
    checkpoint: str  # relative to STUDY
    IoU: float
    nIoU: float
    Pd: float
    Fa: float
    wall_s: float
    best_on_test: dict = field(default_factory=dict)  # selected on the test split: labelled so
    curve: list = field(default_factory=list, repr=False)
    history: list = field(default_factory=list, repr=False)


@dataclass
class StudySummary:
    out: Path
    runs: list[RunResult]
    reused: int
    table: list[dict]  # per arm: mean/std of each metric


def _data_key(arm: Arm, seed: int) -> str:
    s = arm.synth
    if arm.data == "original":
        return "original"
    parts = [arm.data, f"a{s.alpha:g}"]
    if arm.data == "sirst5k":
        parts.append(f"s{s.s}")
    if s.count is not None:
        parts.append(f"n{s.count}")
    return "-".join(parts + [f"seed{seed}"])


def _check_study_out(out: Path, data: Path, bank: Path, identity: dict, resume: bool) -> None:
    from sirst_synth.io.outdir import check_out_path

    check_out_path(out, data)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the study")
    if inside(bank, out):
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
        # reference numbers describe an arm and change no run: they are not compared.
        old_arms, new_arms = (
            {
                k: _resolved({f: v for f, v in a.items() if f not in PAPER_KEYS})
                for k, a in arms.items()
            }
            for arms in (old.get("arms") or {}, identity["arms"])
        )
        diff = _diff(
            {k: v for k, v in old.items() if k != "arms"},
            {k: v for k, v in identity.items() if k != "arms"},
        )
        diff += _diff(old_arms, {k: new_arms.get(k) for k in old_arms}, "arms.")
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


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in list(old) + [k for k in new if k not in old]:
            out += _diff(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: was {old!r}, now {new!r}"]


def run_study(
    data: Path,
    bank: Path,
    out: Path,
    recipe: StudyRecipe,
    resume: bool = False,
    device: str = "auto",
    overall: Progress | None = None,
    progress: Progress | None = None,
    log=lambda msg: None,
) -> StudySummary:
    """Generate each arm's data, train every (arm, seed), score the final model on the untouched
    test split, and write results and plots. Finished runs are kept as they are on --resume."""
    import torch

    from sirst_synth.evaluation import evaluate
    from sirst_synth.io.bank import read_bank_index
    from sirst_synth.train.loop import train

    overall, progress = overall or Progress(), progress or Progress()
    data, bank, out = Path(data), Path(bank), Path(out)
    bank_fp = read_bank_index(bank).attrs.get("fingerprint")
    identity = {
        "tool": "sirst-synth study",
        "version": __version__,
        "data": str(data.resolve()),
        "bank_fingerprint": bank_fp,
        "device": device,
        **recipe.to_dict(),
    }
    _check_study_out(out, data, bank, identity, resume)
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    runs: list[RunResult] = []
    reused = 0
    jobs = [(arm, seed) for seed in range(recipe.seeds) for arm in recipe.arms]
    overall.start("study runs", len(jobs))
    for arm, seed in jobs:
        run_dir = out / "runs" / arm.name / f"seed{seed}"
        done = run_dir / "done.json"
        if done.is_file():
            runs.append(_load_result(done))
            reused += 1
            overall.advance()
            continue
        t0 = time.perf_counter()
        run_dir.mkdir(parents=True, exist_ok=True)
        if arm.data in ("original", "online"):
            train_data = data
        else:
            synth = dataclasses.replace(arm.synth, seed=seed)
            if arm.data == "n2n" and synth.count is None:
                # As many development samples as the SIRST-5K set of the same seed.
                paper = dataclasses.replace(synth, mode="sirst5k")
                ref = _ensure_data(data, bank, out, Arm("ref", "sirst5k", paper, arm.train), seed)
                dev = sum(r.split == "development" for r in read_manifest(ref))
                synth = dataclasses.replace(synth, count=dev)
            arm_s = dataclasses.replace(arm, synth=synth)
            train_data = _ensure_data(data, bank, out, arm_s, seed)
        ref = str(train_data.resolve()) if train_data == data else str(train_data.relative_to(out))
        write_text_atomic(run_dir / "data.json", json.dumps({"data": ref}) + "\n")
        train_recipe = dataclasses.replace(arm.train, seed=seed)
        log(f"{arm.name} seed {seed}: training {train_recipe.steps} steps on {ref}")
        train_dir = run_dir / "train"
        res = train(
            train_data,
            train_dir,
            train_recipe,
            device,
            recipe.precision,
            resume=(train_dir / "last.pt").is_file(),
            skip_errors=True,
            progress=progress,
            synth="online" if arm.data == "online" else "offline",
            bank=bank if arm.data == "online" else None,
            synth_recipe=dataclasses.replace(arm.synth, seed=seed),
        )
        final = train_dir / "last.pt"
        m = evaluate(
            data,
            checkpoint=final,
            split="test",
            threshold=train_recipe.threshold,
            device=device,
            skip_errors=True,
            precision=recipe.precision,
            curve_points=True,
        )
        history = [
            {k: r[k] for k in ("step", *METRICS)}
            for r in _read_jsonl(train_dir / "metrics.jsonl")
            if "IoU" in r
        ]
        best = max(history, key=lambda r: r["IoU"], default={})
        result = RunResult(
            arm.name,
            seed,
            res.steps,
            str(final.relative_to(out)),
            m["IoU"],
            m["nIoU"],
            m["Pd"],
            m["Fa"],
            round(time.perf_counter() - t0, 1),
            best,
            m.get("curve", []),
            history,
        )
        write_text_atomic(run_dir / "eval.json", json.dumps(m, indent=1) + "\n")
        write_text_atomic(done, json.dumps(dataclasses.asdict(result)) + "\n")  # last: run done
        runs.append(result)
        overall.advance()
    overall.stop()
    table = write_results(out, recipe, runs)
    return StudySummary(out, runs, reused, table)


def _ensure_data(data: Path, bank: Path, out: Path, arm: Arm, seed: int) -> Path:
    """The generated folder of this data choice and seed, shared by every arm that uses it."""
    target = out / "data" / _data_key(arm, seed)
    if (target / MANIFEST).is_file():
        return target
    synth = dataclasses.replace(arm.synth, seed=seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    generate(
        data,
        bank,
        target,
        synth,
        workers=1,
        resume=target.is_dir() and any(target.iterdir()),
        skip_errors=True,
    )
    return target


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _load_result(path: Path) -> RunResult:
    return RunResult(**json.loads(path.read_text()))


# --------------------------------------------------------------------------- results


def _mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def summarise(recipe: StudyRecipe, runs: list[RunResult]) -> list[dict]:
    """Mean and sample std over seeds per arm, final model and best-on-test beside it."""
    rows = []
    for arm in recipe.arms:
        mine = [r for r in runs if r.arm == arm.name]
        if not mine:
            continue
        row: dict[str, Any] = {"arm": arm.name, "runs": len(mine)}
        for k in METRICS:
            row[k] = _mean_std([getattr(r, k) for r in mine])
        best = [r.best_on_test["IoU"] for r in mine if r.best_on_test]
        row["best_IoU_on_test"] = _mean_std(best) if best else None
        row["wall_s"] = sum(r.wall_s for r in mine)
        row["paper_iou"], row["paper_row"] = arm.paper_iou, arm.paper_row
        rows.append(row)
    return rows


def _fmt(k: str, ms: tuple[float, float]) -> str:
    scale = 1e6 if k == "Fa" else 100.0
    return f"{ms[0] * scale:.2f} ± {ms[1] * scale:.2f}"


def results_markdown(recipe: StudyRecipe, table: list[dict]) -> str:
    steps = recipe.arms[0].train.steps
    lines = [
        f"Final model after {steps} optimiser steps, scored on the untouched test split; "
        f"mean ± sample std over {recipe.seeds} seed(s). IoU, nIoU, Pd x100; Fa x1e-6.",
        "'best IoU (selected on test)' is the best validation point of each run, picked on the "
        "test split itself: optimistic, shown only because the field often reports it.",
        "",
        "| arm | IoU | nIoU | Pd | Fa | best IoU (selected on test) | paper, NUDT-SIRST (IoU) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in table:
        best = _fmt("IoU", row["best_IoU_on_test"]) if row["best_IoU_on_test"] else "-"
        paper = f"{row['paper_iou']:.2f} ({row['paper_row']})" if row["paper_iou"] else "-"
        cells = [_fmt(k, row[k]) for k in METRICS]
        lines.append(f"| {row['arm']} | {' | '.join(cells)} | {best} | {paper} |")
    return "\n".join(lines) + "\n"


def write_results(out: Path, recipe: StudyRecipe, runs: list[RunResult]) -> list[dict]:
    """results.json, results.csv, results.md and the three plots."""
    table = summarise(recipe, runs)
    per_run = [
        {k: v for k, v in dataclasses.asdict(r).items() if k not in ("curve",)} for r in runs
    ]
    write_text_atomic(
        out / "results.json", json.dumps({"runs": per_run, "arms": table}, indent=1) + "\n"
    )
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "arm",
            "seed",
            "steps",
            "checkpoint",
            *METRICS,
            "wall_s",
            "best_IoU_on_test",
            "best_step_on_test",
        ]
    )
    for r in runs:
        w.writerow(
            [
                r.arm,
                r.seed,
                r.steps,
                r.checkpoint,
                *(f"{getattr(r, k):.6g}" for k in METRICS),
                r.wall_s,
                r.best_on_test.get("IoU", ""),
                r.best_on_test.get("step", ""),
            ]
        )
    write_text_atomic(out / "results.csv", buf.getvalue())
    write_text_atomic(out / "results.md", results_markdown(recipe, table))
    from sirst_synth.plots import study_bars, study_iou_vs_step, study_pd_fa

    arms = [a.name for a in recipe.arms if any(r.arm == a.name for r in runs)]
    write_bytes_atomic(out / "iou_vs_step.png", study_iou_vs_step(arms, runs))
    write_bytes_atomic(out / "bars.png", study_bars(table))
    write_bytes_atomic(out / "pdfa.png", study_pd_fa(arms, runs))
    return table
