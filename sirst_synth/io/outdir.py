"""Owning an output folder: the run identity, the journal that makes --resume exact, the
lock that keeps one writer, the free-space check, and what --overwrite may replace."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path

from sirst_synth.errors import DataError, UsageError
from sirst_synth.io.files import (
    TMP_MARK,
    inside,
    write_text_atomic,
)
from sirst_synth.io.layouts import Dataset
from sirst_synth.io.manifest import MANIFEST

STATE_DIR = ".sirst-synth"
LOCK = ".sirst-synth.lock"  # held while a generate writes OUT
RUN_FILE = "run.json"
JOURNAL = "journal.jsonl"
DESCRIBED = "described.json"  # sha256 of split files, recipe.yaml and README.md
OWNED = (
    "images",
    "masks",
    "img_idx",
    "50_50",
    MANIFEST,
    "README.md",
    "recipe.yaml",
    STATE_DIR,
)


def check_out_path(out: Path, source_root: Path) -> None:
    """OUT may not be the source dataset, lie inside it, or contain it."""
    if inside(out, source_root):
        raise UsageError(
            f"--out {out} is inside the source dataset {source_root}; write somewhere else"
        )
    if inside(source_root, out):
        raise UsageError(
            f"--out {out} contains the source dataset {source_root}; write somewhere else"
        )


def prepare_out(out: Path, identity: dict, overwrite: bool, resume: bool) -> int:
    """Make OUT ready; return how many jobs are already finished (for --resume): the journal
    holds them in job order, so they are the first that many of the run's jobs."""
    state = out / STATE_DIR
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder")
    if not out.exists() and not out.parent.is_dir():
        raise UsageError(
            f"--out {out}: {out.parent} is not a folder; choose a folder you can write to"
        )
    # Folders of our own that hold nothing but our temporary files (a run killed in its first
    # milliseconds, before its run file was in place) count as nothing.
    entries = [
        p
        for p in (out.iterdir() if out.is_dir() else [])
        if not (p.name in OWNED and p.is_dir() and _only_temporary(p)) and p.name != LOCK
    ]
    if entries and resume:
        run_file = state / RUN_FILE
        if not run_file.is_file():
            raise UsageError(
                f"--out {out} was not written by sirst-synth generate; nothing to resume"
            )
        old = json.loads(run_file.read_text())
        diff = [k for k in identity if old.get(k) != identity[k]]
        if diff:
            detail = "; ".join(
                f"{k}: was {old.get(k)!r}, now {identity[k]!r}" for k in diff if k != "recipe"
            )
            if "recipe" in diff:
                rd = [
                    f"{k} {old.get('recipe', {}).get(k)!r} -> {v!r}"
                    for k, v in identity["recipe"].items()
                    if old.get("recipe", {}).get(k) != v
                ]
                detail = "; ".join(filter(None, ["recipe " + ", ".join(rd), detail]))
            raise UsageError(
                f"--out {out}: cannot resume a different run ({detail}); use a new --out"
            )
        for p in out.rglob(f"*{TMP_MARK}*"):
            p.unlink()
        return _trim_journal(state / JOURNAL)
    if entries:
        if not overwrite:
            raise UsageError(
                f"--out {out} is not empty; pass --overwrite, --resume, or an empty folder"
            )
        if not (state / RUN_FILE).is_file() and not (out / MANIFEST).is_file():
            raise UsageError(
                f"--out {out} holds files not written by sirst-synth; refusing to overwrite"
            )
        for name in OWNED:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    for name in OWNED:  # what a killed first attempt left: only our temporary files
        if (out / name).is_dir():
            for p in (out / name).rglob(f"*{TMP_MARK}*"):
                p.unlink()
    try:
        for sub in ("images", "masks", STATE_DIR):
            (out / sub).mkdir(parents=True, exist_ok=True)
        write_text_atomic(state / RUN_FILE, json.dumps(identity, indent=1, sort_keys=True) + "\n")
        (state / JOURNAL).write_bytes(b"")
    except OSError as exc:
        raise UsageError(
            f"--out {out} is not writable ({exc.strerror}); choose a folder you can write to"
        ) from None
    return 0


def _only_temporary(folder: Path) -> bool:
    """True when ``folder`` holds no file but our own temporary ones (none at all: True)."""
    return all(TMP_MARK in p.name for p in folder.rglob("*") if not p.is_dir())


def _trim_journal(journal: Path) -> int:
    """Count the journal's complete lines, cutting it after the last one (a kill may have cut
    the line it was writing: that job and everything after it are redone). Streamed: the
    journal grows with the run."""
    if not journal.is_file():
        journal.write_bytes(b"")
        return 0
    done = end = 0
    with open(journal, "rb") as fh:
        for line in fh:
            try:
                json.loads(line)["job"]
            except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
                break
            if not line.endswith(b"\n"):
                break
            done, end = done + 1, end + len(line)
    os.truncate(journal, end)
    return done


def check_free_space(out: Path, ds: Dataset, train: list[str], test: list[str], dev: int) -> None:
    """Refuse, before any file is written, a run whose estimated size exceeds the free space:
    every development sample is costed as its source's image and mask files."""
    if train:
        per = sum(ds.image_path(s).stat().st_size + ds.mask_path(s).stat().st_size for s in train)
        per /= len(train)
    else:
        per = 0.0
    copied = sum(ds.image_path(s).stat().st_size + ds.mask_path(s).stat().st_size for s in test)
    need = per * (len(train) + dev) + copied
    where = Path(out).resolve()
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    if need > free:
        raise DataError(
            f"--out {out}: the run needs about {need / 1e9:.1f} GB ({len(train) + dev + len(test)} "
            f"images with masks) but {where} has {free / 1e9:.1f} GB free; free space, write "
            "elsewhere or lower --count"
        )


@contextlib.contextmanager
def locked(out: Path, command: str = "generate"):
    """One writer per OUT: a second generate (or train) into the same folder stops with the
    other's pid."""
    out.mkdir(parents=True, exist_ok=True)
    fh = open(out / LOCK, "a+")  # noqa: SIM115 - held across the yield, closed in finally
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        other = fh.read().strip() or "unknown"
        fh.close()
        raise DataError(
            f"--out {out}: another sirst-synth {command} (pid {other}) is writing it; wait for "
            "it to finish or choose another --out"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    try:
        yield
    finally:
        fh.close()
        with contextlib.suppress(OSError):
            (out / LOCK).unlink()
