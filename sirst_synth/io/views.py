"""A study's training views: the source dataset's images and masks under other split files.

A view is a folder with ``images`` and ``masks`` linked to the source's folders and its own
``50_50/train.txt`` (the training stems of a run) and ``50_50/test.txt`` (the validation
stems), so generate, build-noise-bank and train read it as any dataset, and validation never
sees the test split. Nothing of the source is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sirst_synth.errors import DataError
from sirst_synth.io.files import fingerprint, write_text_atomic
from sirst_synth.io.layouts import detect_splits, open_dataset, read_split, source_files
from sirst_synth.splits import carve_validation


@dataclass(frozen=True)
class Splits:
    train: tuple[str, ...]
    val: tuple[str, ...]
    how: str  # where the validation split came from
    fingerprint: str = ""  # of the dataset's training and test files: where it lies is free


def study_splits(root: Path, share: float) -> Splits:
    """Training and validation stems of ``root``: a shipped ``train.txt`` + ``val.txt`` beside
    the detected training split (SIRST v1's idx_427), else a seeded ``share`` of the training
    split held out. The test split stays the detected one."""
    ds = open_dataset(root, skip_errors=True)
    fp = fingerprint(ds.root, source_files(ds, ds.train + ds.test))
    folder = ds.train_split.parent
    train, val = folder / "train.txt", folder / "val.txt"
    if val.is_file() and train.is_file() and train != ds.train_split:
        listed = set(ds.train)
        t = tuple(s for s in read_split(train) if s in listed)
        v = tuple(s for s in read_split(val) if s in listed)
        if t and v:
            return Splits(t, v, f"shipped: {train.name} and {val.name} in {folder.name}/", fp)
    t, v = carve_validation(list(ds.train), share)
    return Splits(tuple(t), tuple(v), f"carved: a seeded {share:g} of {ds.train_split.name}", fp)


def write_view(source: Path, view: Path, train: list[str], val: list[str]) -> Path:
    """The view folder (see the module doc); an existing view with the same lists is kept."""
    (view / "50_50").mkdir(parents=True, exist_ok=True)
    for sub in ("images", "masks"):
        link = view / sub
        target = (Path(source) / sub).resolve()
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        if link.exists() or link.is_symlink():
            raise DataError(f"{link}: exists and is not this study's link; use a new --out")
        link.symlink_to(target, target_is_directory=True)
    for name, stems in (("train.txt", train), ("test.txt", val)):
        path = view / "50_50" / name
        text = "\n".join(stems) + "\n"
        if not path.is_file() or path.read_text() != text:
            write_text_atomic(path, text)
    return view


def has_test_split(root: Path) -> bool:
    return detect_splits(Path(root))[3] is not None
