"""The study's run loop: one training per (arm, seed) on its arm's data, then scoring.

Every run trains on the training split (or its seeded fraction), validates on the validation
split, and its final model is read once on the test split and on every extra test set.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sirst_synth import __version__
from sirst_synth.errors import DataError, SirstError, UsageError
from sirst_synth.io.files import write_text_atomic
from sirst_synth.io.layouts import check_dataset_root
from sirst_synth.io.manifest import read_manifest
from sirst_synth.io.samples import parse_split_source, split_items
from sirst_synth.io.views import Splits, has_test_split, study_splits, write_view
from sirst_synth.names import in_units
from sirst_synth.pool import LanePool
from sirst_synth.progress import Labelled, Progress
from sirst_synth.recipe import SynthRecipe, TrainRecipe, to_yaml
from sirst_synth.splits import fraction_subset
from sirst_synth.study.arm_data import bank_for, ensure_data, view_key
from sirst_synth.study.identity import check_study_out
from sirst_synth.study.schema import METRICS, STUDY_FILE, VAL_SHARE, Arm, StudyRecipe

#: What a finished run keeps beside its checkpoints, and what --publish copies.
SMALL_FILES = ("done.json", "eval.json", "train/metrics.jsonl", "recipe.yaml")
#: Every image's counts for the final model on the test split (and per extra test set, named
#: ``per-image-NAME.csv``, all matched by PER_IMAGE_FILES): small, published, so later
#: analyses need no checkpoint.
PER_IMAGE = "per-image.csv"
PER_IMAGE_FILES = "per-image*.csv"


@dataclass(frozen=True)
class ExtraTest:
    """A test set beyond the dataset's own test split (``--extra-test NAME=DIR[:SPLITFILE]``)."""

    name: str
    root: Path
    split_file: Path | None = None

    @classmethod
    def parse(cls, text: str) -> ExtraTest:
        name, sep, rest = text.partition("=")
        if not sep or not name or not rest:
            raise UsageError(f"--extra-test {text!r}: write NAME=DIR or NAME=DIR:SPLITFILE")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):  # it names files and columns
            raise UsageError(
                f"--extra-test {text!r}: NAME may hold letters, digits, '-', '_' and '.' only"
            )
        return cls(name, *parse_split_source(rest, "--extra-test"))

    def check(self) -> None:
        """Read its split before any run trains, so that a wrong folder or split file is one
        line now, not an error after the first hour (pairs that cannot be scored are left out
        and listed then, as on the test split)."""
        try:
            items, _ = split_items(self.root, "test", self.split_file, skip_errors=True)
        except SirstError as exc:
            raise type(exc)(f"--extra-test {self.name}: {exc}") from None
        if not items:
            raise DataError(f"--extra-test {self.name}: {self.root} has no image to score there")


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
    best_on_val: dict = field(default_factory=dict)  # best.pt (chosen on val), read on test
    curve: list = field(default_factory=list, repr=False)
    history: list = field(default_factory=list, repr=False)  # validation points
    detected: int = 0
    fa_pixels: int = 0
    extra: dict = field(default_factory=dict)  # extra test name -> metrics
    env: dict = field(default_factory=dict)  # commit, precision, cpu, torch

    @property
    def final_val_IoU(self) -> float | None:
        """Validation IoU of the final model: the validation point at the run's last step (None
        where the run has none)."""
        if not self.history or self.history[-1]["step"] != self.steps:
            return None
        return float(self.history[-1]["IoU"])

    @property
    def collapsed(self) -> bool:
        """No target predicted at all, or false alarms everywhere (Fa above 1e-2)."""
        return (self.detected == 0 and self.fa_pixels == 0) or self.Fa > 1e-2


@dataclass
class StudySummary:
    out: Path
    runs: list[RunResult]
    reused: int
    table: list[dict]  # per arm: mean/std of each metric
    comparisons: list[dict] = field(default_factory=list)


def environment(precision: str, narrow_bn: str = "contiguous") -> dict:
    """Where a run ran: results are equal only on the same CPU kind, precision, batch-norm
    kernel and torch."""
    import platform

    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    device = "cuda: " + torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {
        "version": __version__,
        "commit": commit or "unknown",
        "precision": precision,
        "narrow_bn": narrow_bn,
        "cpu": cpu,
        "device": device,
        "torch": torch.__version__,
    }


def run_study(
    data: Path,
    bank: Path | None,
    out: Path,
    recipe: StudyRecipe,
    resume: bool = False,
    device: str = "auto",
    overall: Progress | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] = lambda msg: None,
    extra_tests: tuple[ExtraTest, ...] = (),
    publish: Path | None = None,
    jobs: int = 1,
) -> StudySummary:
    """Train every (arm, seed), score each final model on the test split (and extra test
    sets), and write results and plots. Finished runs are kept on --resume, also from the
    small files of a ``publish`` folder when their checkpoints are gone. ``jobs``: runs trained at
    once, each in its own process with the recipe's ``threads`` (on a few cores, two 1-thread
    runs do more per hour than one 2-thread run; the results are the same either way)."""
    import torch

    from sirst_synth.study.results import write_results
    from sirst_synth.train.device import pick_device, resolve_precision
    from sirst_synth.train.model import has_narrow_norm

    overall, progress = overall or Progress(), progress or Progress()
    data, out = Path(data), Path(out)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UsageError(f"jobs must be a whole number >= 1, got {jobs!r}")
    check_dataset_root(data)
    if not has_test_split(data):
        raise UsageError(f"{data}: no test split found; a study reads its final models there")
    names = [t.name for t in extra_tests]
    if len(set(names)) < len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise UsageError(f"--extra-test {twice[0]} is given twice; give each test set its own NAME")
    for t in extra_tests:
        t.check()
    if bank is not None:  # a missing or foreign bank is one line before the study folder
        from sirst_synth.io.bank import read_bank_index

        read_bank_index(Path(bank))
    splits = study_splits(data, VAL_SHARE)
    identity = {
        "tool": "sirst-synth study",
        "version": __version__,
        # the dataset by its name and content, not by where it lies on this machine
        "data": {"name": data.resolve().name, "fingerprint": splits.fingerprint},
        "device": device,
        "splits": {"train": len(splits.train), "val": len(splits.val), "how": splits.how},
        **recipe.to_dict(),
    }
    check_study_out(out, data, bank, identity, resume)
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    narrow_models = any(has_narrow_norm(arm.train.model) for arm in recipe.arms)
    chosen = None if publish is None else publish / PRECISION_FILE
    if chosen is not None and chosen.is_file() and not (out / PRECISION_FILE).is_file():
        write_text_atomic(out / PRECISION_FILE, chosen.read_text())  # continued elsewhere
    precision, narrow_bn = _study_precision(
        out, recipe.precision, pick_device(device), resolve_precision, narrow_models
    )
    log(
        f"splits: {len(splits.train)} training, {len(splits.val)} validation ({splits.how}); "
        f"precision {precision}; narrow batch norm: {narrow_bn}"
    )
    env = environment(precision, narrow_bn)  # the code this process runs: recorded at its start
    finished: dict[tuple[str, int], RunResult] = {}
    run_jobs = run_order(recipe)
    overall.start("study runs", len(run_jobs))
    for arm, seed in run_jobs:  # every finished run first, so interim results hold all of them
        run_dir = run_path(out, arm.name, seed)
        if not (run_dir / "done.json").is_file() and publish is not None:
            _restore(run_path(publish, arm.name, seed), run_dir)
        done = finished_run(out, arm.name, seed)
        if done is not None:
            finished[arm.name, seed] = done
            overall.advance()
    reused = len(finished)

    def record(result: RunResult) -> None:
        finished[result.arm, result.seed] = result
        val = result.final_val_IoU
        log(
            f"{result.arm} seed {result.seed} done in {result.wall_s / 60:.0f} min: final model "
            f"IoU x100 {'-' if val is None else in_units('IoU', val)} (validation), "
            f"{in_units('IoU', result.IoU)} (test)"
        )
        if publish is not None:  # a study spans sessions: its results follow every run
            _publish_run(
                run_path(out, result.arm, result.seed), run_path(publish, result.arm, result.seed)
            )
            write_results(
                publish, recipe, report_order(recipe, finished), [t.name for t in extra_tests]
            )
            _publish_study_files(out, publish)
        overall.advance()

    threads = recipe.threads or (max(1, torch.get_num_threads() // jobs) if jobs > 1 else None)
    prepare = functools.partial(
        _prepare_run, data, bank, out, splits=splits, precision=precision, device=device,
        extra=extra_tests, log=log, env=env, threads=threads,
    )  # fmt: skip
    with LanePool(_train_and_score, jobs, progress) as pool:
        for arm, seed in run_jobs:
            if (arm.name, seed) in finished:
                continue
            for result in pool.free_lane():
                record(result)
            pool.submit(prepare(arm, seed))
        for result in pool.drain():
            record(result)
    runs = report_order(recipe, finished)
    overall.stop()
    table, comparisons = write_results(out, recipe, runs, [t.name for t in extra_tests])
    if publish is not None:
        write_results(publish, recipe, runs, [t.name for t in extra_tests])
        _publish_study_files(out, publish)
    return StudySummary(out, runs, reused, table, comparisons)


def _study_precision(
    out: Path, requested: str, dev, resolve, narrow_models: bool = True
) -> tuple[str, str]:
    """One precision and one narrow batch-norm kernel for every run of a study, chosen once
    and recorded (a probe on another day, under other load, could choose otherwise). The
    kernel is the one this CPU runs fastest (``device.choose_narrow_bn``); a study recorded
    before the kernel was chosen keeps the fixed one its runs used."""
    from sirst_synth.train.device import choose_narrow_bn

    path = out / PRECISION_FILE
    if path.is_file():
        recorded = json.loads(path.read_text())
        return recorded["precision"], recorded.get("narrow_bn", "contiguous")
    chosen, why = resolve(requested, dev)
    narrow = choose_narrow_bn(dev, chosen == "bf16", True, narrow_models)
    record = {"precision": chosen, "why": why, "narrow_bn": narrow}
    write_text_atomic(path, json.dumps(record) + "\n")
    return chosen, narrow


def report_order(
    recipe: StudyRecipe, finished: dict[tuple[str, int], RunResult]
) -> list[RunResult]:
    """Results list runs seed by seed in the recipe's arm order, whatever order they ran in."""
    return [
        finished[arm.name, seed]
        for seed in range(recipe.seeds)
        for arm in recipe.arms
        if (arm.name, seed) in finished
    ]


def run_order(recipe: StudyRecipe) -> list[tuple[Arm, int]]:
    """Core arms seed by seed first, exploratory arms after them.

    A study spans sessions: stopped at any point, the runs it has are the ones a verdict
    needs (every core arm at the same number of seeds), not extra seeds of side questions.
    """
    order = []
    for exploratory in (False, True):
        order += [
            (arm, seed)
            for seed in range(recipe.seeds)
            for arm in recipe.arms
            if arm.exploratory == exploratory and seed < recipe.seeds_of(arm)
        ]
    return order


@dataclass(frozen=True)
class RunJob:
    """One prepared run: everything its training and scoring read, for this process or a
    worker (``--jobs``)."""

    data: Path
    out: Path
    arm: Arm
    seed: int
    train_data: Path
    synth: SynthRecipe
    bank: Path | None  # the view's noise bank (online synthesis reads it)
    recipe: TrainRecipe
    precision: str
    device: str
    extra: tuple[ExtraTest, ...]
    env: dict
    threads: int | None
    prep_s: float  # seconds spent preparing its data


def _prepare_run(
    data, bank, out, arm, seed, *, splits: Splits, precision, device, extra, log, env, threads
) -> RunJob:
    """The run's view, noise bank and synthesised data (made once, in the study's process)."""
    t0 = time.perf_counter()
    run_dir = run_path(out, arm.name, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = view_key(arm, seed)
    train_stems = fraction_subset(list(splits.train), arm.train_fraction, seed)
    view = write_view(data, out / "views" / key, train_stems, list(splits.val))
    view_bank = bank_for(view, bank, out / "banks" / f"{key}.h5", log)
    synth = dataclasses.replace(arm.synth, seed=seed)
    if arm.data in ("original", "online"):
        train_data = view
    else:
        if arm.data in ("n2n", "paste") and synth.count is None:
            # As many development samples as the SIRST-5K set of the same seed and view.
            paper = dataclasses.replace(synth, mode="sirst5k")
            ref = ensure_data(view, view_bank, out, Arm("ref", "sirst5k", paper, arm.train), seed)
            dev = sum(r.split == "development" for r in read_manifest(ref))
            synth = dataclasses.replace(synth, count=dev)
        train_data = ensure_data(view, view_bank, out, dataclasses.replace(arm, synth=synth), seed)
    recipe = dataclasses.replace(arm.train, seed=seed)
    write_text_atomic(run_dir / "recipe.yaml", to_yaml(recipe))
    write_text_atomic(
        run_dir / "data.json",
        json.dumps({"data": str(train_data.relative_to(out)), "train_images": len(train_stems)})
        + "\n",
    )
    log(f"{arm.name} seed {seed}: {recipe.steps} steps on {train_data.relative_to(out)}")
    return RunJob(
        data, out, arm, seed, train_data, synth, view_bank, recipe, precision, device, extra,
        env, threads, time.perf_counter() - t0,
    )  # fmt: skip


def _train_and_score(job: RunJob, progress: Progress) -> RunResult:
    """Train the run, then read its final model (and best.pt) on the test split and on every
    extra test set. Runs in a worker under ``--jobs``: it reads and writes only its own run
    folder."""
    import torch

    from sirst_synth.evaluation import evaluate
    from sirst_synth.train.checkpoint import holds_run
    from sirst_synth.train.loop import train

    if job.threads:
        torch.set_num_threads(job.threads)
    t0 = time.perf_counter()
    data, out, arm, seed, recipe = job.data, job.out, job.arm, job.seed, job.recipe
    train_dir = run_path(out, arm.name, seed) / "train"
    online = arm.data == "online"
    res = train(
        job.train_data,
        train_dir,
        recipe,
        job.device,
        job.precision,
        resume=holds_run(train_dir),  # one stopped before its first checkpoint starts over
        skip_errors=True,
        progress=Labelled(progress, f"{arm.name} seed {seed}"),
        narrow_bn=job.env.get("narrow_bn"),
        synth="online" if online else "offline",
        bank=job.bank if online else None,
        synth_recipe=job.synth if online else None,
    )
    score = dict(
        threshold=recipe.threshold, device=job.device, skip_errors=True, precision=job.precision
    )
    final = train_dir / "last.pt"
    run_dir = train_dir.parent
    m = evaluate(data, checkpoint=final, split="test", curve_points=True,
                 per_image=run_dir / PER_IMAGE, overwrite=True, **score)  # fmt: skip
    history = [
        {k: r[k] for k in ("step", *METRICS)}
        for r in read_jsonl(train_dir / "metrics.jsonl")
        if "IoU" in r
    ]
    best_val = max(history, key=lambda r: r["IoU"], default=None)
    best = {}
    if best_val is not None and (train_dir / "best.pt").is_file():
        b = evaluate(data, checkpoint=train_dir / "best.pt", split="test", **score)
        best = {"step": best_val["step"], "val_IoU": best_val["IoU"], **_scores(b)}
    extras = {}
    for t in job.extra:
        e = evaluate(t.root, checkpoint=final, split="test", split_file=t.split_file,
                     per_image=run_dir / _per_image_name(t.name), overwrite=True, **score)  # fmt: skip
        extras[t.name] = _scores(e)
    wall_s = round(job.prep_s + time.perf_counter() - t0, 1)
    result = RunResult(
        arm.name, seed, res.steps, str(final.relative_to(out)),
        m["IoU"], m["nIoU"], m["Pd"], m["Fa"], wall_s,
        best, m.get("curve", []), history, m["detected"], m["fa_pixels"], extras, job.env,
    )  # fmt: skip
    write_text_atomic(run_dir / "eval.json", json.dumps(m, indent=1) + "\n")
    write_text_atomic(run_dir / "done.json", json.dumps(dataclasses.asdict(result)) + "\n")
    return result


def run_path(root: Path, arm: str, seed: int) -> Path:
    """A run's folder in a study (or its --publish folder)."""
    return root / "runs" / arm / f"seed{seed}"


def _scores(m: dict) -> dict:
    keys = (*METRICS, "targets", "detected", "fa_pixels", "pixels", "images")
    out = {k: m[k] for k in keys if k in m}
    if "images_with_false_alarm" in m:
        out["images_with_false_alarm"] = m["images_with_false_alarm"]
    return out


def _per_image_name(extra_test: str) -> str:
    return f"per-image-{extra_test}.csv"


#: The study's one precision and narrow batch-norm kernel (``_study_precision``).
PRECISION_FILE = "precision.json"


def _publish_study_files(out: Path, publish: Path) -> None:
    """The study's record and its precision choice beside the published runs, so that a
    study continued from them elsewhere is the same study, run in the same precision."""
    for name in (STUDY_FILE, PRECISION_FILE):
        if (out / name).is_file():
            write_text_atomic(publish / name, (out / name).read_text())


def _publish_run(run_dir: Path, dest: Path) -> None:
    """Copy a finished run's small files (no checkpoints) to the publish folder."""
    _copy_finished(run_dir, dest, SMALL_FILES)


def _restore(published: Path, run_dir: Path) -> None:
    """A published finished run counts as finished: its small files are copied back."""
    if (published / "done.json").is_file():
        _copy_finished(published, run_dir, ("eval.json", "recipe.yaml", "done.json"))


def _copy_finished(src: Path, dest: Path, names: tuple[str, ...]) -> None:
    """Copy a finished run's named files and per-image tables flat into ``dest``, done.json
    last: a copy cut short leaves no record that claims a finished run."""
    paths = [src / rel for rel in names] + sorted(src.glob(PER_IMAGE_FILES))
    paths.sort(key=lambda path: path.name == "done.json")  # stable: the rest keep their order
    dest.mkdir(parents=True, exist_ok=True)
    for path in paths:
        if path.is_file():
            write_text_atomic(dest / path.name, path.read_text())


def read_jsonl(path: Path, growing: bool = False) -> list[dict]:
    """The rows of a JSON-lines file ([] where there is none). ``growing``: a file a running
    process is writing, so a line that does not parse (one being written) is left out."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if not growing:
                raise
    return rows


def load_result(path: Path, expect: tuple[str, int] | None = None) -> RunResult:
    """A finished run from its done.json; a file that cannot be one is a one-line data error
    (done.json is written atomically, so it was changed by hand, or by a merge). ``expect``:
    the (arm, seed) of the folder it lies in, which the record must name (a record copied into
    another run's folder would count twice)."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise DataError(f"{path}: cannot read a finished run's record ({exc.strerror})") from None
    except ValueError as exc:
        raise DataError(_damaged(path, f"not JSON: {exc}")) from None
    if not isinstance(data, dict):
        raise DataError(_damaged(path, "not a JSON object"))
    data.pop("best_on_test", None)  # written before validation splits: chosen on test
    fields = dataclasses.fields(RunResult)
    required = [f.name for f in fields if f.default is f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in data]  # in the record's own order
    unknown = sorted(set(data) - {f.name for f in fields})
    if missing:
        raise DataError(_damaged(path, f"no {', '.join(missing)}"))
    if unknown:
        raise DataError(
            _damaged(path, f"unknown {', '.join(unknown)}: another version's, or edited")
        )
    if expect is not None and (data["arm"], data["seed"]) != expect:
        raise DataError(
            _damaged(path, f"it records {data['arm']} seed {data['seed']}, not this folder's run")
        )
    return RunResult(**data)


def finished_run(root: Path, arm: str, seed: int) -> RunResult | None:
    """The finished run of (arm, seed) in a study or its --publish folder; None where there is
    none yet."""
    path = run_path(root, arm, seed) / "done.json"
    return load_result(path, (arm, seed)) if path.is_file() else None


def _damaged(path: Path, why: str) -> str:
    return (
        f"{path}: not a finished run's record ({why}); restore it (for example from git) or "
        "delete that run's folder so that --resume trains it again"
    )
