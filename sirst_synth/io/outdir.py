"""Owning an output folder: the run identity, the journal that makes --resume exact, the
lock that keeps one writer, the free-space check, and what --overwrite may replace."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from sirst_synth.diffs import differences
from sirst_synth.errors import DataError, UsageError
from sirst_synth.io.files import (
    TMP_MARK,
    inside,
    make_folders,
    source_folders,
    write_problem,
    write_text_atomic,
)
from sirst_synth.io.journal import DESCRIBED, JOURNAL, STATE_DIR, trim_journal
from sirst_synth.io.layouts import Dataset
from sirst_synth.io.manifest import MANIFEST, check_relative

LOCK = ".sirst-synth.lock"  # held while a generate writes OUT
RUN_FILE = "run.json"
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


def recorded_range(root: Path) -> tuple[float, float] | None:
    """The range a generate output's images were read with (its bank's ``--range train``),
    from its run file; None for other folders and for the fixed mapping."""
    run_file = Path(root) / STATE_DIR / RUN_FILE
    if not run_file.is_file():
        return None
    value_range = json.loads(run_file.read_text()).get("value_range")
    return tuple(value_range) if value_range else None


def check_out_path(out: Path, source_root: Path) -> None:
    """OUT may not be the source dataset, lie inside it (or inside a folder its files lie in
    through a symlink), or contain it."""
    for folder in source_folders(source_root):
        if inside(out, folder):
            where = "" if folder == Path(source_root).resolve() else f" (its files lie in {folder})"
            raise UsageError(
                f"--out {out} is inside the source dataset {source_root}{where}; write somewhere else"
            )
    if inside(source_root, out):
        raise UsageError(
            f"--out {out} contains the source dataset {source_root}; write somewhere else"
        )


def prepare_out(out: Path, identity: dict, overwrite: bool, resume: bool) -> int:
    """Make OUT ready; return how many jobs are already finished (for --resume): the journal
    holds them in job order, so they are the first that many of the run's jobs. generate has
    checked OUT's place and kind before any work."""
    state = out / STATE_DIR
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
        diff = differences(old, identity)
        if diff:
            raise UsageError(
                f"--out {out}: cannot resume a different run ({'; '.join(diff[:6])}); "
                "use a new --out"
            )
        for p in out.rglob(f"*{TMP_MARK}*"):
            p.unlink()
        return trim_journal(state / JOURNAL, out)
    if entries:
        if not overwrite:
            raise UsageError(
                f"--out {out} is not empty; pass --overwrite, --resume, or an empty folder"
            )
        if not (state / RUN_FILE).is_file():  # only sirst-synth writes it
            raise UsageError(
                f"--out {out} holds files not written by sirst-synth; refusing to overwrite"
            )
        for path in _files_of_run(out):
            path.unlink(missing_ok=True)
        shutil.rmtree(state)
        for name in OWNED:  # our folders, once the run's own files are gone
            with contextlib.suppress(OSError):
                (out / name).rmdir()
    for name in OWNED:  # what a killed first attempt left: only our temporary files
        if (out / name).is_dir():
            for p in (out / name).rglob(f"*{TMP_MARK}*"):
                p.unlink()
    make_folders(out, ("images", "masks", STATE_DIR), "--out")
    write_text_atomic(state / RUN_FILE, json.dumps(identity, indent=1, sort_keys=True) + "\n")
    try:
        (state / JOURNAL).write_bytes(b"")
    except OSError as exc:
        raise DataError(write_problem(state / JOURNAL, exc)) from None
    return 0


def _files_of_run(out: Path) -> list[Path]:
    """What ``--overwrite`` may delete: the files the previous run's manifest, journal and
    described list name, and our temporary files. Checked whole before anything is deleted:
    a file in one of our folders that no list names is the user's, and the overwrite is
    refused. A run stopped before its manifest may leave the files of the one job it was
    writing unlisted (files go in place before their journal line): there, unlisted PNGs
    directly in images/ and masks/ count as the run's."""
    state = out / STATE_DIR
    listed = {out / MANIFEST, out / "README.md", out / "recipe.yaml"}
    complete = (out / MANIFEST).is_file()
    rows: list[dict] = []
    try:
        if complete:
            rows = [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]
        elif (state / JOURNAL).is_file():
            for line in (state / JOURNAL).read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError):  # a line cut by a kill
                    rows += json.loads(line).get("rows", [])
        if (state / DESCRIBED).is_file():
            listed |= {
                out / check_relative(rel) for rel in json.loads((state / DESCRIBED).read_text())
            }
        for r in rows:
            listed |= {out / check_relative(r["image"]), out / check_relative(r["mask"])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(
            f"--out {out}: cannot read what the previous run wrote ({exc}); remove the folder "
            "yourself or choose another --out"
        ) from None
    found = [  # every file in our folders, folder by folder (one walk)
        p
        for name in ("images", "masks", "img_idx", "50_50")
        if (out / name).is_dir()
        for p in sorted((out / name).rglob("*"))
        if not p.is_dir()
    ]
    foreign = []
    for path in found:
        if path in listed or TMP_MARK in path.name:
            continue
        ours = not complete and path.parent.name in ("images", "masks")
        if not (ours and path.parent.parent == out and path.suffix == ".png"):
            foreign.append(path)
    if foreign:
        raise UsageError(
            f"--out {out}: {foreign[0].relative_to(out)} (and {len(foreign) - 1} more) was not "
            "written by the previous run; move it out of the folder, or choose another --out"
        )
    return sorted({p for p in listed if p.is_file()} | set(found))


def _only_temporary(folder: Path) -> bool:
    """True when ``folder`` holds no file but our own temporary ones (none at all: True)."""
    return all(TMP_MARK in p.name for p in folder.rglob("*") if not p.is_dir())


def byte_size(n: float) -> str:
    """A size in the unit that shows it (``0.0 GB`` says nothing): B, kB, MB or GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


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
            f"--out {out}: the run needs about {byte_size(need)} ({len(train) + dev + len(test)} "
            f"images with masks) but {where} has {byte_size(free)} free; free space, write "
            "elsewhere or lower --count"
        )


@contextlib.contextmanager
def locked(out: Path, command: str = "generate") -> Iterator[None]:
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
