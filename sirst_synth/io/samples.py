"""Lists of (image, mask, group) for training and evaluation, from any dataset we read.

A folder written by `generate` is read through its manifest: originals and development samples
train, the test split validates, and the 4 rotations of one target share a group (L_Neg).
Any other dataset is read through its layout: the plain training split (the baseline).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from sirst_synth.errors import DataError, UsageError, skip_reason
from sirst_synth.io.files import check_same_size, image_size, read_mask
from sirst_synth.io.layouts import open_dataset, resolve_stems
from sirst_synth.io.manifest import MANIFEST, SPLITS, read_manifest
from sirst_synth.names import SPLIT_CHOICES


@dataclass(frozen=True)
class Item:
    stem: str
    image: Path
    mask: Path
    group: str
    value_range: tuple[float, float] | None = None  # how a 16-bit or float image maps to 8 bits


def parse_split_source(text: str, flag: str) -> tuple[Path, Path | None]:
    """``DIR`` or ``DIR:SPLITFILE`` (``--val``, ``--extra-test``): a folder, and optionally the
    split file whose stems to read there instead of the folder's test split."""
    root, _, split = str(text).partition(":")
    if not root:
        raise UsageError(f"{flag} {text!r}: write DIR or DIR:SPLITFILE")
    return Path(root), Path(split) if split else None


def split_items(
    root: Path,
    split: str,
    split_file: Path | None = None,
    *,
    train_split: Path | None = None,
    skip_errors: bool = False,
    required: bool = True,
) -> tuple[list[Item], list[tuple[str, str]]]:
    """Items of ``split`` and the pairs left out (``skip_errors``) with why: "train" (originals
    + development for generated data), "test", or "all" (every image/mask pair; split files
    not needed). Only the split asked for is read, so a test-only folder scores its test
    split. ``split_file``: the stems of that file instead (a dataset folder, not a generate
    output); ``train_split``: the training split file (``--train-split``). A dataset folder is
    read by `open_dataset`, the one reader; pairs whose sizes differ are refused (or left out)
    before any training or scoring starts. ``required=False``: a missing or empty split gives
    no items instead of an error (a validation split is optional)."""
    root = Path(root)
    if split not in SPLIT_CHOICES:
        raise UsageError(f"--split must be one of {', '.join(SPLIT_CHOICES)}, got {split!r}")
    if (root / MANIFEST).is_file():
        for flag, given in (("--split-file", split_file), ("--train-split", train_split)):
            if given is not None:  # its manifest already says which samples are which
                raise UsageError(f"{flag} goes with a dataset folder; {root} is a generate output")
    skipped: list[tuple[str, str]] = []
    if (root / MANIFEST).is_file():
        want = {"train": ("original", "development"), "test": ("test",)}.get(split, SPLITS)
        items = [
            Item(r.stem, root / r.image, root / r.mask, r.group or r.stem)
            for r in read_manifest(root)
            if r.split in want
        ]
    else:
        if split == "all":  # an image without a mask is reported (or skipped and listed)
            ds = open_dataset(root, splits=())
            stems, skipped = resolve_stems(
                sorted(ds.images), root / "images", root, ds.images, ds.masks, skip_errors
            )
        else:
            ds = open_dataset(
                root,
                train_split=split_file if split == "train" and split_file else train_split,
                test_split=split_file if split == "test" else None,
                skip_errors=skip_errors,
                splits=(split,),
            )
            if split == "test" and ds.test_split is None:
                if not required:
                    return [], []
                raise DataError(
                    f"{root}: no test split file found; add one, or pass --split all "
                    "to score every image/mask pair"
                )
            stems, skipped = ds.train if split == "train" else ds.test, list(ds.skipped)
        items = [Item(s, ds.images[s], ds.masks[s], s) for s in stems]
    if not items:
        if not required:
            return [], skipped
        raise DataError(f"{root}: the {split} split is empty; check the split files")
    kept, bad = check_items(items, skip_errors)
    return kept, skipped + bad


def check_items(
    items: list[Item], skip_errors: bool = False
) -> tuple[list[Item], list[tuple[str, str]]]:
    """Refuse (or, with ``skip_errors``, leave out and list) pairs whose mask is not the image's size,
    before any training or scoring starts; sizes come from the file headers."""
    kept, skipped = [], []
    for it in items:
        try:
            check_same_size(it.mask, image_size(it.mask), image_size(it.image))
        except DataError as exc:
            if not skip_errors:
                raise
            skipped.append((it.stem, skip_reason(exc)))
            continue
        kept.append(it)
    return kept, skipped


def target_counts(items: list[Item]) -> list[int]:
    """Targets (8-connected components) in each item's mask: what the synthesis planner and
    the group sampler size their draws by."""
    from sirst_synth.targets import components

    return [components(read_mask(it.mask)).count for it in items]


def read_with_range(items: list[Item], value_range: tuple[float, float] | None) -> list[Item]:
    """The items, to be read with ``value_range`` (how 16-bit and float images map to 8 bits;
    None: the fixed rules). The one place a run, a checkpoint or a bank sets it."""
    value_range = tuple(value_range) if value_range else None
    return [dataclasses.replace(it, value_range=value_range) for it in items]
