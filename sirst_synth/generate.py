"""generate: the per-image jobs (originals, development samples, test copies), the process
pool, and the files they write.

Every random draw comes from a generator derived from (seed, item key), and every job's results
are gathered in a fixed order, so outputs are byte-identical for any ``workers``. A journal of
finished jobs makes ``--resume`` continue a killed run to the same bytes (``io/outdir.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sirst_synth import __version__
from sirst_synth.blend import check_alpha
from sirst_synth.card import dataset_card
from sirst_synth.errors import DataError, UsageError
from sirst_synth.io.bank import BankIndex, BankReader, read_bank_index
from sirst_synth.io.files import (
    atomic_file,
    check_same_size,
    encode_png,
    fingerprint,
    image_size,
    read_mask,
    sha256_bytes,
    write_bytes_atomic,
    write_text_atomic,
)
from sirst_synth.io.layouts import (
    LAYOUTS,
    Dataset,
    layout_split_paths,
    load_pair,
    open_dataset,
    source_files,
)
from sirst_synth.io.manifest import MANIFEST, SPLITS, ManifestRow, manifest_line
from sirst_synth.io.outdir import (
    DESCRIBED,
    JOURNAL,
    STATE_DIR,
    check_free_space,
    check_out_path,
    locked,
    prepare_out,
)
from sirst_synth.naming import SAMPLE_NAME, sample_group, sample_name
from sirst_synth.noise import pick_patch
from sirst_synth.plan import plan, plan_shape, pool_size
from sirst_synth.pool import ordered_map
from sirst_synth.progress import Progress
from sirst_synth.recipe import SynthRecipe, recipe_dict, to_yaml
from sirst_synth.rotate import check_window_size
from sirst_synth.seeding import rng_for
from sirst_synth.synth import noise_only, synthesize
from sirst_synth.targets import components

# --------------------------------------------------------------------------- generate


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


@dataclass(frozen=True)
class _Job:
    kind: str  # "image" (original + pass-0 samples), "development" (later passes) or "test"
    stem: str
    pass_index: int = 0
    picks: tuple[tuple[int, int], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.stem}:{self.pass_index}"


_GEN_CTX: dict = {}


def _gen_init(
    ds: Dataset,
    out: Path,
    recipe: SynthRecipe,
    bank: BankIndex | None,
    test_gray: bool = False,
    sources: tuple[list[str], list[int]] = ([], []),
) -> None:
    _GEN_CTX.update(
        ds=ds,
        out=out,
        recipe=recipe,
        bank=bank,
        reader=BankReader(bank) if bank else None,
        test_gray=test_gray,
        sources=sources,  # paste: the training stems and their target counts
    )


def _put(out: Path, rel: str, data: bytes) -> str:
    write_bytes_atomic(out / rel, data)
    return sha256_bytes(data)


def noise_draw(
    bank: BankIndex, reader: BankReader, seed: int, stem: str, pass_index: int
) -> tuple[np.ndarray, dict]:
    """The bank patch of (image, pass) and where it came from: a uniform draw among patches
    not cut from this image, from the generator of (seed, "noise", stem, pass). generate and
    ``train --synth online`` both call it, so epoch e of online synthesis is generate's pass e."""
    src = bank.sources.index(stem) if stem in bank.sources else -1
    choice = pick_patch(bank.source, src, rng_for(seed, "noise", stem, pass_index))
    if choice < 0:
        raise DataError(
            f"{bank.path}: every patch comes from {stem}; build the bank from more images"
        )
    noise = {
        "source": bank.sources[int(bank.source[choice])],
        "row": int(bank.row[choice]),
        "col": int(bank.col[choice]),
    }
    return reader.patch(choice), noise


def _gen_job(job: _Job) -> tuple[str, list[dict]]:
    """Write one job's files; its key and manifest rows (for the journal)."""
    return job.key, _job_rows(job)


def _job_rows(job: _Job) -> list[dict]:
    c = _GEN_CTX
    ds: Dataset = c["ds"]
    out: Path = c["out"]
    if job.kind == "test" and c.get("test_gray"):  # converted like the training images
        image, mask = load_pair(ds, job.stem)
        img_rel, mask_rel = f"images/{job.stem}.png", f"masks/{job.stem}.png"
        sha = {
            "image": _put(out, img_rel, encode_png(image)),
            "mask": _put(out, mask_rel, encode_png(mask * 255)),
        }
        return [ManifestRow(img_rel, mask_rel, "test", job.stem, sha).to_json()]
    if job.kind == "test":  # copied byte for byte
        img_src, mask_src = ds.image_path(job.stem), ds.mask_path(job.stem)
        img_rel = f"images/{job.stem}{img_src.suffix.lower()}"
        mask_rel = f"masks/{job.stem}{mask_src.suffix.lower()}"
        sha = {
            "image": _put(out, img_rel, img_src.read_bytes()),
            "mask": _put(out, mask_rel, mask_src.read_bytes()),
        }
        return [ManifestRow(img_rel, mask_rel, "test", job.stem, sha).to_json()]
    image, mask = load_pair(ds, job.stem)  # decoded once for the original and its samples
    rows: list[ManifestRow] = []
    if job.kind == "image":
        img_rel, mask_rel = f"images/{job.stem}.png", f"masks/{job.stem}.png"
        sha = {
            "image": _put(out, img_rel, encode_png(image)),
            "mask": _put(out, mask_rel, encode_png(mask * 255)),
        }
        rows.append(ManifestRow(img_rel, mask_rel, "original", job.stem, sha))
    if job.picks and c["recipe"].mode == "paste":
        rows.append(_paste_row(job, image, mask))
    elif job.picks:
        recipe: SynthRecipe = c["recipe"]
        patch, noise = noise_draw(c["bank"], c["reader"], recipe.seed, job.stem, job.pass_index)
        if recipe.mode == "n2n":
            samples = [noise_only(image, mask, patch, recipe.alpha)]
        else:
            samples = synthesize(image, mask, patch, recipe.alpha, recipe.s, job.picks)
        for smp in samples:
            name = sample_name(job.stem, job.pass_index, recipe.mode, smp.target, smp.angle)
            img_rel, mask_rel = f"images/{name}.png", f"masks/{name}.png"
            sha = {
                "image": _put(out, img_rel, encode_png(smp.image)),
                "mask": _put(out, mask_rel, encode_png(smp.mask * 255)),
            }
            rows.append(
                ManifestRow(
                    img_rel,
                    mask_rel,
                    "development",
                    job.stem,
                    sha,
                    noise=noise,
                    alpha=recipe.alpha,
                    s=recipe.s if smp.target is not None else None,
                    pass_index=job.pass_index,
                    target=smp.target,
                    center=list(smp.center) if smp.target is not None else None,
                    window=list(smp.window) if smp.target is not None else None,
                    angle=smp.angle if smp.target is not None else None,
                    group=sample_group(job.stem, job.pass_index, recipe.mode, smp.target),
                )
            )
    return [r.to_json() for r in rows]


def _paste_row(job: _Job, image: np.ndarray, mask: np.ndarray) -> ManifestRow:
    """The copy-paste sample of one training image in one pass, and its provenance."""
    from sirst_synth.paste import paste_sample_of

    c = _GEN_CTX
    ds: Dataset = c["ds"]
    recipe: SynthRecipe = c["recipe"]
    stems, counts = c["sources"]

    def patch_of(stem: str, pass_index: int):
        return noise_draw(c["bank"], c["reader"], recipe.seed, stem, pass_index)

    smp = paste_sample_of(
        image, mask, job.stem, job.pass_index, recipe, stems, counts,
        lambda stem: load_pair(ds, stem), patch_of,
    )  # fmt: skip
    name = sample_name(job.stem, job.pass_index, "paste", None, 0)
    img_rel, mask_rel = f"images/{name}.png", f"masks/{name}.png"
    sha = {
        "image": _put(c["out"], img_rel, encode_png(smp.image)),
        "mask": _put(c["out"], mask_rel, encode_png(smp.mask * 255)),
    }
    return ManifestRow(
        img_rel,
        mask_rel,
        "development",
        job.stem,
        sha,
        noise=smp.noise,
        alpha=recipe.alpha,
        pass_index=job.pass_index,
        group=sample_group(job.stem, job.pass_index, "paste", None),
        paste=[p.to_json() for p in smp.pastes],
        given_up=smp.given_up or None,
    )


_SCAN_CTX: dict = {}


def _scan_init(ds: Dataset, s: int, skip_errors: bool) -> None:
    _SCAN_CTX.update(ds=ds, s=s, skip_errors=skip_errors)


def _scan_job(job: tuple[str, str]) -> tuple[str, str, int, str | None]:
    """Check one pair (sizes agree, the mask decodes) and count its targets (for the planner).

    Test pairs are copied untouched, so only their sizes are checked (from the headers).
    """
    split, stem = job
    c = _SCAN_CTX
    ds: Dataset = c["ds"]
    try:
        h, w = image_size(ds.image_path(stem))
        mask = None if split == "test" else read_mask(ds.mask_path(stem))
        mask_hw = image_size(ds.mask_path(stem)) if mask is None else mask.shape
        check_same_size(ds.mask_path(stem), mask_hw, (h, w))
    except DataError as exc:
        if not c["skip_errors"]:
            raise
        return split, stem, 0, str(exc)
    if mask is None:
        return split, stem, 0, None
    if c["s"] > min(h, w):  # a per-image problem: --on-error skip leaves the image out
        problem = f"{ds.image_path(stem)}: {w}x{h} is smaller than the --s {c['s']} window; use a smaller --s or leave the image out"
        if not c["skip_errors"]:
            raise DataError(problem)
        return split, stem, 0, problem
    return split, stem, components(mask).count, None


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


def _jobs(
    train: list[str], test: list[str], sizes: list[int], recipe: SynthRecipe, group: int
) -> Iterator[_Job]:
    """The run's jobs in their fixed order, made lazily (memory does not grow with --count):
    originals with their pass-0 samples, later passes, then the test split."""
    passes = plan(train, sizes, recipe.count, recipe.seed, group_size=group)
    first: dict[str, tuple] = {}
    later = None
    for job in passes:
        if job.pass_index:
            later = job
            break
        first[job.stem] = job.picks
    yield from (_Job("image", s, 0, first.get(s, ())) for s in train)
    for job in itertools.chain([later] if later else [], passes):
        yield _Job("development", job.stem, job.pass_index, job.picks)
    yield from (_Job("test", s) for s in test)


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
    check_alpha(recipe.alpha)
    check_window_size(recipe.s)
    if layout not in LAYOUTS:
        raise UsageError(f"--layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
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
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder")
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
    if bank.attrs.get("fingerprint") != train_fp and not allow_foreign_bank:
        raise DataError(
            f"{bank_path}: bank was built from other training files than {ds.root}; "
            "rebuild it from this dataset (or pass --allow-foreign-bank)"
        )
    name = folder
    identity = _run_identity(ds, bank, recipe, layout, name, hashes, test_gray)
    summary = GenerateSummary(out, skipped=list(ds.skipped), replaced_by_bank=replaced)

    checks = [("train", s) for s in ds.train] + [("test", s) for s in ds.test]
    progress.start("checking image and mask pairs", len(checks))
    counts: dict[str, int] = {}
    bad_test: set[str] = set()
    for split, stem, n, problem in ordered_map(
        _scan_job, checks, workers, _scan_init, (ds, recipe.s, skip_errors)
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
        todo = itertools.islice(_jobs(train, test, sizes, recipe, group), done, None)
        with open(journal, "ab") as jf:
            for key, rows in ordered_map(
                _gen_job,
                todo,
                workers,
                _gen_init,
                (ds, out, recipe, bank, test_gray, (train, [counts[s] for s in train])),
            ):
                # Files are in place before their journal line: a kill loses at most this job.
                jf.write((json.dumps({"job": key, "rows": rows}) + "\n").encode())
                jf.flush()
                progress.advance()
        progress.stop()
        _count_rows(journal, _jobs(train, test, sizes, recipe, group), summary)
        _finish(out, journal, ds, recipe, identity, summary)
        journal.unlink()
        return summary


def _journal_rows(journal: Path, split: str) -> Iterator[dict]:
    """The journal's rows of one split, in job order (streamed), as ``ManifestRow.to_json``
    wrote them in the workers."""
    with open(journal, "rb") as fh:
        for line in fh:
            for r in json.loads(line)["rows"]:
                if r["split"] == split:
                    yield r


def _count_rows(journal: Path, jobs: Iterator[_Job], summary: GenerateSummary) -> None:
    """Count the samples per split, checking the journal holds the run's jobs in order."""
    counts = dict.fromkeys(SPLITS, 0)
    with open(journal, "rb") as fh:
        for line, job in itertools.zip_longest(fh, jobs):
            entry = json.loads(line) if line is not None else None
            if entry is None or job is None or entry["job"] != job.key:
                raise DataError(
                    f"{journal}: does not list this run's jobs in order (edited?); run generate "
                    "again with --overwrite"
                )
            for r in entry["rows"]:
                counts[r["split"]] += 1
    summary.originals, summary.development, summary.test = (counts[k] for k in SPLITS)


def _finish(
    out: Path,
    journal: Path,
    ds: Dataset,
    recipe: SynthRecipe,
    identity: dict,
    summary: GenerateSummary,
) -> None:
    """Split files, recipe, dataset card, and last the manifest (renamed into place last, it
    marks the run complete). The lists are streamed from the journal, one read per split that
    writes the manifest and every split file together, so they may be larger than memory."""
    described: dict[str, str] = {}  # the files that describe the dataset: verify checks them
    with contextlib.ExitStack() as stack:  # files are renamed into place in reverse order
        manifest = stack.enter_context(atomic_file(out / MANIFEST, durable=True))
        lists: dict[str, list] = {"train": [], "test": []}  # [(rel, file, sha256)] per split
        for train_rel, test_rel in layout_split_paths(identity["layout"], identity["name"]):
            (out / train_rel).parent.mkdir(exist_ok=True)
            for kind, rel in (("train", train_rel), ("test", test_rel if summary.test else None)):
                if rel is not None:
                    fh = stack.enter_context(atomic_file(out / rel, durable=True))
                    lists[kind].append((rel, fh, hashlib.sha256()))
        for split in SPLITS:
            targets = lists["test" if split == "test" else "train"]
            for row in _journal_rows(journal, split):
                manifest.write(manifest_line(row).encode("utf-8"))
                line = (os.path.splitext(os.path.basename(row["image"]))[0] + "\n").encode("utf-8")
                for _, fh, digest in targets:
                    fh.write(line)
                    digest.update(line)
        described.update(
            (rel, digest.hexdigest()) for rel, _, digest in lists["train"] + lists["test"]
        )
        for rel, text in (
            ("recipe.yaml", to_yaml(recipe)),
            ("README.md", dataset_card(ds, recipe, identity, summary)),
        ):
            write_text_atomic(out / rel, text)
            described[rel] = sha256_bytes(text.encode("utf-8"))
        write_text_atomic(
            out / STATE_DIR / DESCRIBED, json.dumps(described, indent=1, sort_keys=True)
        )
