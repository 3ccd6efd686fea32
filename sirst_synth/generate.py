"""generate: the run (checks, identity, the pool over its jobs, the finish). The jobs and
what a worker does for one are in ``jobs.py``, the journal and the finish in ``io/journal.py``.

Every random draw comes from a generator derived from (seed, item key), and every job's results
are gathered in a fixed order, so outputs are byte-identical for any ``workers``. A journal of
finished jobs makes ``--resume`` continue a killed run to the same bytes (``io/outdir.py``).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from sirst_synth import __version__
from sirst_synth.errors import DataError, UsageError
from sirst_synth.io.bank import BankIndex, bank_range, check_bank_source, read_bank_index
from sirst_synth.io.files import check_folder_path, fingerprint
from sirst_synth.io.journal import JOURNAL, STATE_DIR, count_rows, finish_run
from sirst_synth.io.layouts import LAYOUTS, Dataset, open_dataset, source_files
from sirst_synth.io.manifest import SPLITS
from sirst_synth.io.outdir import check_free_space, check_out_path, locked, prepare_out
from sirst_synth.jobs import gen_init, gen_job, job_order, scan_init, scan_job
from sirst_synth.naming import SAMPLE_NAME
from sirst_synth.plan import plan_shape, pool_size
from sirst_synth.pool import ordered_map
from sirst_synth.progress import Progress
from sirst_synth.recipe import SynthRecipe, recipe_dict


@dataclass
class GenerateSummary:
    out: Path
    originals: int = 0
    development: int = 0
    test: int = 0
    targets: int = 0
    images_without_target: int = 0
    passes: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    resumed_jobs: int = 0
    # recipe values the bank replaced: "sigma 50.0 -> 60.0" (they describe the bank)
    replaced_by_bank: list[str] = field(default_factory=list)


def _run_identity(
    ds: Dataset,
    bank: BankIndex,
    recipe: SynthRecipe,
    layout: str,
    name: str,
    hashes: dict,
    test_gray: bool = False,
) -> dict:
    files = source_files(ds, ds.train) + source_files(ds, ds.test)
    return {
        "tool": "sirst-synth",
        "version": __version__,
        "recipe": recipe_dict(recipe),
        "layout": layout,
        "name": name,
        "test_gray": test_gray,
        "source_fingerprint": fingerprint(ds.root, files, hashes),
        "bank_fingerprint": bank.attrs.get("fingerprint"),
        "bank_params": {k: bank.attrs.get(k) for k in ("sigma", "mu", "grid")},
        # written only when set, so outputs made before --range resume unchanged
        **({"value_range": list(ds.value_range)} if ds.value_range is not None else {}),
    }


def _check_unique_names(train: list[str], test: list[str]) -> None:
    """Every output stem once. Sample names never repeat among themselves (source stem, pass,
    target and angle read back from the name, right to left), so only a source file can take
    one: when the source is itself a generate output, its samples would be written over."""
    sources = set(train)
    seen: set[str] = set()
    for stem in [*train, *test]:
        m = SAMPLE_NAME.fullmatch(stem)
        if stem in seen or (m and m["base"] in sources):
            raise UsageError(
                f"{stem} would be written twice: the source already holds a file of that "
                "name (is it a generate output?); generate from the original dataset"
            )
        seen.add(stem)


def generate(
    root: Path,
    bank_path: Path,
    out: Path,
    recipe: SynthRecipe,
    workers: int = 1,
    layout: str = "both",
    name: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    skip_errors: bool = False,
    train_split: Path | None = None,
    test_split: Path | None = None,
    allow_foreign_bank: bool = False,
    progress: Progress | None = None,
    test_gray: bool = False,
    no_test: bool = False,
) -> GenerateSummary:
    """Materialise SIRST-5K: originals + development samples + the test split (copied byte for
    byte, or with ``test_gray`` converted like the training images).

    Split files of both toolboxes are written (``layout="both"``), so one output loads
    unchanged in BasicIRSTD and in DNA-Net; ``layout`` narrows that to one.
    """
    progress = progress or Progress()
    if layout not in LAYOUTS:
        raise UsageError(f"--split-files must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    folder = Path(out).resolve().name
    if name is not None and name != folder:
        raise UsageError(
            f"--name {name!r} differs from OUT's folder name {folder!r}: BasicIRSTD finds "
            f"img_idx/train_NAME.txt by the dataset folder's name; name the OUT folder {name!r} instead"
        )
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    ds = open_dataset(root, train_split, test_split, skip_errors=skip_errors)
    out = Path(out)
    check_out_path(out, ds.root)
    check_folder_path(out, "--out", "for the dataset")
    if not out.exists() and not out.parent.is_dir():
        raise UsageError(
            f"--out {out}: {out.parent} is not a folder; choose a folder you can write to"
        )
    bank = read_bank_index(bank_path)
    # sigma, mu and grid describe the bank: the resolved recipe records the bank's values, and
    # the summary reports every value of the recipe that this replaced.
    from_bank = {
        "sigma": float(bank.attrs["sigma"]),
        "mu": float(bank.attrs["mu"]),
        "grid": int(bank.attrs["grid"]),
    }
    replaced = [
        f"{k} {getattr(recipe, k)!r} -> {v!r}"
        for k, v in from_bank.items()
        if getattr(recipe, k) != v
    ]
    recipe = replace(recipe, **from_bank)
    if not ds.test and not no_test:
        raise UsageError(
            f"{ds.root}: no test split found; pass --test-split FILE, or --no-test to write a "
            "training set only"
        )
    hashes: dict[Path, str] = {}
    train_fp = fingerprint(ds.root, source_files(ds, ds.train), hashes)
    if not allow_foreign_bank:
        check_bank_source(bank, ds.root, train_fp, "--allow-foreign-bank")
    name = folder
    ds = replace(ds, value_range=bank_range(bank))  # images are read the bank's way
    identity = _run_identity(ds, bank, recipe, layout, name, hashes, test_gray)
    summary = GenerateSummary(out, skipped=list(ds.skipped), replaced_by_bank=replaced)

    checks = [("train", s) for s in ds.train] + [("test", s) for s in ds.test]
    progress.start("checking image and mask pairs", len(checks))
    counts: dict[str, int] = {}
    bad_test: set[str] = set()
    for split, stem, n, problem in ordered_map(
        scan_job, checks, workers, scan_init, (ds, recipe.s, skip_errors)
    ):
        progress.advance()
        if problem:
            summary.skipped.append((stem, problem))
            if split == "test":
                bad_test.add(stem)
        elif split == "train":
            counts[stem] = n
    progress.stop()
    train = [s for s in ds.train if s in counts]
    test = [s for s in ds.test if s not in bad_test]
    summary.targets = sum(counts.values())
    summary.images_without_target = sum(1 for s in train if counts[s] == 0)
    if not test and not no_test:
        raise UsageError(
            f"{ds.root}: the run would have no test split (none found, or every pair skipped); "
            "pass --test-split FILE, or --no-test to write a training set only"
        )
    if recipe.mode == "n2n":  # every training image is one group of one sample
        sizes = [1] * len(train)
    else:
        # paste: one sample per image and pass, as n2n, drawing targets from all of them
        sizes = [1] * len(train) if recipe.mode == "paste" else [counts[s] for s in train]
        if train and not summary.targets:
            raise DataError(
                f"{ds.root}: no training mask holds a target ({len(train)} masks checked), so "
                "there is nothing to augment; targets are the non-zero pixels of the masks"
            )
    group = 4 if recipe.mode == "sirst5k" else 1
    dev_count = pool_size(sizes, group) if recipe.count is None else recipe.count
    check_free_space(out, ds, train, test, dev_count)
    passes, _, later_jobs = plan_shape(train, sizes, recipe.count, recipe.seed, group)
    summary.passes = passes
    n_jobs = len(train) + later_jobs + len(test)
    _check_unique_names(train, test)
    with locked(out):
        done = prepare_out(out, identity, overwrite, resume)
        summary.resumed_jobs = done
        journal = out / STATE_DIR / JOURNAL
        progress.start("writing samples", n_jobs)
        progress.advance(done)
        todo = itertools.islice(job_order(train, test, sizes, recipe, group), done, None)
        with open(journal, "ab") as jf:
            for key, rows, problem in ordered_map(
                gen_job,
                todo,
                workers,
                gen_init,
                (
                    ds,
                    out,
                    recipe,
                    bank,
                    test_gray,
                    (train, [counts[s] for s in train]),
                    skip_errors,
                ),
            ):
                # Files are in place before their journal line: a kill loses at most this job.
                entry = {"job": key, "rows": rows, **({"skipped": problem} if problem else {})}
                jf.write((json.dumps(entry) + "\n").encode())
                jf.flush()
                progress.advance()
        progress.stop()
        jobs = ((job.key, job.stem) for job in job_order(train, test, sizes, recipe, group))
        counts, skips = count_rows(journal, jobs)
        summary.originals, summary.development, summary.test = (counts[k] for k in SPLITS)
        listed = {stem for stem, _ in summary.skipped}
        for stem, problem in skips:  # a source that failed in several jobs is listed once
            if stem not in listed:
                summary.skipped.append((stem, problem))
                listed.add(stem)
        finish_run(out, journal, ds, recipe, identity, summary)
        journal.unlink()
        return summary
