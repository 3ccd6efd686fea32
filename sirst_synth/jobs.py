"""generate's jobs: their fixed order, and what a pool worker does for one (check a pair and
count its targets; write an original, its samples, or a test copy, and return its manifest
rows). Workers read their context from a per-process dict set by the pool's initialiser."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sirst_synth.draw import noise_draw
from sirst_synth.errors import DataError, skip_reason
from sirst_synth.io.bank import BankIndex, BankReader
from sirst_synth.io.files import (
    check_same_size,
    decode_bytes,
    encode_png,
    image_size,
    read_mask,
    sha256_bytes,
    write_bytes_atomic,
)
from sirst_synth.io.layouts import Dataset, load_pair
from sirst_synth.io.manifest import ManifestRow
from sirst_synth.naming import sample_group, sample_name
from sirst_synth.plan import plan
from sirst_synth.recipe import SynthRecipe
from sirst_synth.synth import noise_only, synthesize
from sirst_synth.targets import components


@dataclass(frozen=True)
class Job:
    kind: str  # "image" (original + pass-0 samples), "development" (later passes) or "test"
    stem: str
    pass_index: int = 0
    picks: tuple[tuple[int, int], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.stem}:{self.pass_index}"


def job_order(
    train: list[str], test: list[str], sizes: list[int], recipe: SynthRecipe, group: int
) -> Iterator[Job]:
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
    yield from (Job("image", s, 0, first.get(s, ())) for s in train)
    for job in itertools.chain([later] if later else [], passes):
        yield Job("development", job.stem, job.pass_index, job.picks)
    yield from (Job("test", s) for s in test)


_GEN_CTX: dict = {}


def gen_init(
    ds: Dataset,
    out: Path,
    recipe: SynthRecipe,
    bank: BankIndex | None,
    test_gray: bool = False,
    sources: tuple[list[str], list[int]] = ([], []),
    skip_errors: bool = False,
) -> None:
    _GEN_CTX.update(
        skip_errors=skip_errors,
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
    _GEN_CTX["written"].append(out / rel)
    return sha256_bytes(data)


def gen_job(job: Job) -> tuple[str, list[dict], str | None]:
    """Write one job's files; its key, manifest rows (for the journal) and, where
    ``--on-error skip`` left it out (an image that does not decode), why. Every file the job
    decodes is decoded here, in the worker that uses it: never in a second pass."""
    _GEN_CTX["written"] = []  # what _put writes for this job
    try:
        return job.key, _job_rows(job), None
    except DataError as exc:
        if not _GEN_CTX["skip_errors"]:
            raise
        for path in _GEN_CTX["written"]:  # nothing of a skipped job stays behind
            path.unlink(missing_ok=True)
        return job.key, [], skip_reason(exc)


def _job_rows(job: Job) -> list[dict]:
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
    if job.kind == "test":  # copied byte for byte, once they are known to decode
        img_src, mask_src = ds.image_path(job.stem), ds.mask_path(job.stem)
        img_rel = f"images/{job.stem}{img_src.suffix.lower()}"
        mask_rel = f"masks/{job.stem}{mask_src.suffix.lower()}"
        image_bytes, mask_bytes = img_src.read_bytes(), mask_src.read_bytes()
        decode_bytes(image_bytes, img_src)
        decode_bytes(mask_bytes, mask_src)
        sha = {"image": _put(out, img_rel, image_bytes), "mask": _put(out, mask_rel, mask_bytes)}
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


def _paste_row(job: Job, image: np.ndarray, mask: np.ndarray) -> ManifestRow:
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


def scan_init(ds: Dataset, s: int, skip_errors: bool) -> None:
    _SCAN_CTX.update(ds=ds, s=s, skip_errors=skip_errors)


def scan_job(job: tuple[str, str]) -> tuple[str, str, int, str | None]:
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
        return split, stem, 0, skip_reason(exc)
    if mask is None:
        return split, stem, 0, None
    if c["s"] > min(h, w):  # a per-image problem: --on-error skip leaves the image out
        problem = f"{ds.image_path(stem)}: {w}x{h} is smaller than the --s {c['s']} window; use a smaller --s or leave the image out"
        if not c["skip_errors"]:
            raise DataError(problem)
        return split, stem, 0, problem
    return split, stem, components(mask).count, None
