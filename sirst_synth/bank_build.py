"""build-noise-bank: scan every training image into a grid and keep its noise-prone regions
(SIRST-5K, Sec. 3.1) in an HDF5 bank, in a seeded-order process pool."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sirst_synth.diffs import differences
from sirst_synth.errors import DataError, UsageError, skip_reason
from sirst_synth.io.bank import read_bank_index, write_bank
from sirst_synth.io.files import (
    fingerprint,
    image_size,
    value_range_of,
)
from sirst_synth.io.layouts import (
    Dataset,
    load_pair,
    open_dataset,
    source_files,
)
from sirst_synth.io.outdir import (
    check_out_path,
)
from sirst_synth.names import RANGE_MODES
from sirst_synth.noise import ACCEPTED, REJECT_NAMES, region_pixels, scan_regions
from sirst_synth.pool import ordered_map
from sirst_synth.progress import Progress

# --------------------------------------------------------------------------- noise bank


@dataclass
class BankSummary:
    path: Path
    images: int = 0
    regions: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    reused: bool = False


_BANK_CTX: dict = {}


def _bank_init(ds: Dataset, grid: int, sigma: float, mu: float, skip_errors: bool) -> None:
    _BANK_CTX.update(ds=ds, grid=grid, sigma=sigma, mu=mu, skip_errors=skip_errors)


def _bank_job(stem: str):
    c = _BANK_CTX
    try:
        image, mask = load_pair(c["ds"], stem)
    except DataError as exc:
        if not c["skip_errors"]:
            raise
        return stem, None, skip_reason(exc)
    scan = scan_regions(image, mask, c["grid"], c["sigma"], c["mu"])
    keep = np.flatnonzero(scan.verdict == ACCEPTED)
    patches = [
        region_pixels(image, scan.rows[i], scan.cols[i], scan.region_h, scan.region_w) for i in keep
    ]
    return stem, (scan, keep, patches), None


def _check_replaceable(out: Path) -> None:
    """--overwrite replaces a bank of ours, or an HDF5 file that no longer opens (a bank cut
    short by a copy or a full disk: nothing in it can be read back); anything else is kept."""
    try:
        read_bank_index(out)
        return
    except DataError as exc:
        with open(out, "rb") as fh:
            hdf5 = fh.read(8) == b"\x89HDF\r\n\x1a\n"
        if not hdf5:
            raise UsageError(
                f"--out {out} is not an HDF5 file (so not a noise bank): refusing to replace "
                "it; choose another --out"
            ) from None
        if "truncated" not in str(exc):  # another tool's HDF5, whole: the user's
            raise UsageError(f"{exc}; refusing to replace it, choose another --out") from None


def build_noise_bank(
    root: Path,
    out: Path,
    grid: int = 8,
    sigma: float = 50.0,
    mu: float = 255.0,
    train_split: Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    skip_errors: bool = False,
    workers: int = 1,
    progress: Progress | None = None,
    value_range: str = "full",
) -> BankSummary:
    """Scan every training image and keep its noise-prone regions in an HDF5 bank.

    ``value_range="train"``: 16-bit and float training images are mapped to 8 bits by the
    range of the training split (computed here, recorded in the bank as ``range_lo`` and
    ``range_hi``); generate and online synthesis read their images the bank's way."""
    progress = progress or Progress()
    if grid < 1:
        raise UsageError(f"--grid must be at least 1, got {grid}")
    if value_range not in RANGE_MODES:
        raise UsageError(f"--range must be one of {', '.join(RANGE_MODES)}, got {value_range!r}")
    for name, v in (("--sigma", sigma), ("--mu", mu)):
        if not np.isfinite(v) or v <= 0:
            raise UsageError(f"{name} must be a positive number, got {v}")
    ds = open_dataset(root, train_split, None, skip_errors=skip_errors)
    out = Path(out)
    check_out_path(out, ds.root)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name such as bank.h5")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: folder {out.parent} does not exist; create it first")
    scannable, too_small = [], []
    for stem in ds.train:
        try:
            side = min(image_size(ds.image_path(stem)))
        except DataError as exc:
            if not skip_errors:
                raise
            too_small.append((stem, skip_reason(exc)))
            continue
        if grid > side:
            problem = f"{ds.image_path(stem)}: its {side} px side is smaller than --grid {grid}; use --grid {side} or less (the paper: 8)"
            if not skip_errors:
                raise UsageError(problem)
            too_small.append((stem, problem))
            continue
        scannable.append(stem)
    fp = fingerprint(ds.root, source_files(ds, ds.train))
    if value_range == "train":
        vr = value_range_of([ds.image_path(s) for s in scannable])
        ds = dataclasses.replace(ds, value_range=vr)
    attrs = {
        "sigma": float(sigma),
        "mu": float(mu),
        "grid": int(grid),
        "fingerprint": fp,
        "dataset": ds.name,
        "train_split": ds.train_split.name,
    }
    if ds.value_range is not None:
        attrs["range_lo"], attrs["range_hi"] = ds.value_range
    if out.exists():
        if resume:
            old = read_bank_index(out)
            keys = ("sigma", "mu", "grid", "fingerprint", "range_lo", "range_hi")
            diff = differences({k: old.attrs.get(k) for k in keys}, {k: attrs.get(k) for k in keys})
            if diff:
                raise UsageError(
                    f"{out}: cannot resume a different bank ({'; '.join(diff)}); use --overwrite"
                )
            return BankSummary(out, images=len(old.sources), accepted=old.size, reused=True)
        if not overwrite:
            raise UsageError(f"{out} exists; pass --overwrite to replace it or --resume to keep it")
        _check_replaceable(out)
    summary = BankSummary(out, skipped=list(ds.skipped) + too_small)
    patches: list[np.ndarray] = []
    cols: dict[str, list] = {k: [] for k in ("source", "row", "col", "mean", "var")}
    sources: list[str] = []
    progress.start("scanning for noise", len(scannable))
    for stem, result, problem in ordered_map(
        _bank_job, scannable, workers, _bank_init, (ds, grid, sigma, mu, skip_errors)
    ):
        progress.advance()
        if result is None:
            summary.skipped.append((stem, problem))
            continue
        scan, keep, pats = result
        summary.images += 1
        summary.regions += scan.verdict.size
        for code, name in REJECT_NAMES.items():
            summary.rejected[name] = summary.rejected.get(name, 0) + int(
                (scan.verdict == code).sum()
            )
        if keep.size:
            sources.append(stem)
            cols["source"] += [len(sources) - 1] * keep.size
            cols["row"] += scan.rows[keep].tolist()
            cols["col"] += scan.cols[keep].tolist()
            cols["mean"] += scan.mean[keep].tolist()
            cols["var"] += scan.var[keep].tolist()
            patches += pats
    progress.stop()
    summary.accepted = len(patches)
    if not patches:
        r = summary.rejected
        fix = (
            "every region touches a target: use a finer --grid"
            if r.get("touches a target", 0) == summary.regions
            else "try a larger --sigma"
            if r.get("variance", 0)
            else "try a larger --mu"
        )
        why = ", ".join(f"{n} for {name}" for name, n in r.items() if n)
        raise DataError(
            f"{ds.root}: no noise-prone region among {summary.regions} (sigma={sigma}, mu={mu}; "
            f"rejected: {why}); {fix}"
        )
    write_bank(
        out,
        patches,
        sources,
        np.array(cols["source"]),
        np.array(cols["row"]),
        np.array(cols["col"]),
        np.array(cols["mean"]),
        np.array(cols["var"]),
        attrs,
    )
    return summary
