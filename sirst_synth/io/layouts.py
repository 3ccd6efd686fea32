"""Dataset layouts of the field, detected without flags.

- DNA-Net (NUDT-SIRST): ``images/NAME.png``, ``masks/NAME.png``, ``50_50/{train,test}.txt``.
- BasicIRSTD: ``img_idx/train_<DATASET>.txt`` and ``img_idx/test_<DATASET>.txt``.
- IRSTD-1k: ``trainval.txt`` and ``test.txt`` at the root or under ``img_idx/``.
- SIRST v1: ``masks/NAME_pixels0.png``, ``idx_427/{trainval,test}.txt``.
``--train-split`` / ``--test-split`` override the detected split files.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sirst_synth.errors import DataError, UsageError
from sirst_synth.io.files import check_same_size, read_gray, read_mask

IMAGE_EXTS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
MASK_SUFFIXES = ("", "_pixels0")


@dataclass(frozen=True)
class Dataset:
    """A resolved dataset: where every stem's image and mask are, and the split lists."""

    root: Path
    name: str
    layout: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    train_split: Path
    test_split: Path | None
    images: dict[str, Path] = field(repr=False)
    masks: dict[str, Path] = field(repr=False)
    skipped: tuple[tuple[str, str], ...] = ()
    #: --range train: (lo, hi) of the training images that are not 8-bit, mapped to 0..255
    value_range: tuple[float, float] | None = None

    def image_path(self, stem: str) -> Path:
        return self.images[stem]

    def mask_path(self, stem: str) -> Path:
        return self.masks[stem]


def read_split(path: Path) -> list[str]:
    """Stems listed one a line; tolerant of CRLF, blank lines, a missing final newline and a
    file extension after the stem. Duplicates and an empty list are data errors."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: split file not found; pass an existing file") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: split file is not UTF-8 text; save it as plain text") from None
    stems: list[str] = []
    seen: set[str] = set()
    for n, line in enumerate(text.splitlines(), 1):
        stem = unicodedata.normalize("NFC", line.strip())
        if not stem:
            continue
        if "/" in stem or "\\" in stem or stem in (".", ".."):
            raise DataError(
                f"{path}: line {n}: {stem!r} is not a file stem (paths may not leave the "
                "images/ folder); list stems only"
            )
        for ext in IMAGE_EXTS:
            if stem.lower().endswith(ext):
                stem = stem[: -len(ext)]
                break
        if stem in seen:
            raise DataError(f"{path}: {stem!r} is listed twice; remove the duplicate line")
        seen.add(stem)
        stems.append(stem)
    if not stems:
        raise DataError(f"{path}: split file lists no image; add one stem per line")
    return stems


def index_files(
    folder: Path, suffixes: tuple[str, ...] = ("",), exts: tuple[str, ...] = IMAGE_EXTS
) -> dict[str, Path]:
    """stem -> file for every file of ``exts`` (any case: ``a.PNG``) in a folder. A file whose
    stem ends in one of ``suffixes`` is also the file of the stem without it (``X_pixels0.png``
    is the mask of ``X``, and of ``X_pixels0``). Stems are NFC-normalised, so a name written in
    decomposed form (macOS) matches the same name in a split file. Two files for one stem
    (``a.png`` and ``a.bmp``, or ``X.png`` and ``X_pixels0.png``) are ambiguous: a data error
    naming both."""
    found: dict[str, Path] = {}
    derived: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        ext = p.suffix.lower()
        if ext not in exts or p.name.startswith(".") or not p.is_file():
            continue
        stem = unicodedata.normalize("NFC", p.stem)
        keys = [(found, stem)] + [
            (derived, stem[: -len(x)]) for x in suffixes if x and stem.endswith(x)
        ]
        for table, key in keys:
            other = found.get(key) or derived.get(key)
            if other is not None:
                raise DataError(
                    f"{folder}: {other.name} and {p.name} are both the file of {key!r}; "
                    "keep one of them"
                )
            table[key] = p
    return {**derived, **found}


def split_paths(layout: str, name: str) -> tuple[str, str]:
    """(train, test) split files of a layout, relative to the dataset root; the one place that
    spells them (BasicIRSTD finds its files by the dataset folder's name)."""
    if layout == "dnanet":
        return "50_50/train.txt", "50_50/test.txt"
    if layout == "basicirstd":
        return f"img_idx/train_{name}.txt", f"img_idx/test_{name}.txt"
    raise ValueError(f"layout must be basicirstd or dnanet, got {layout!r}")


def detect_splits(root: Path) -> tuple[str, str, Path | None, Path | None]:
    """(layout, dataset name, train split, test split) from the files present; either split
    may be None (a test-only folder scores its test split)."""

    def found(train: Path, test: Path) -> tuple[Path | None, Path | None]:
        return (train if train.is_file() else None), (test if test.is_file() else None)

    train, test = found(*(root / p for p in split_paths("dnanet", root.name)))
    if train or test:
        return "dnanet", root.name, train, test
    idx = root / "img_idx"
    if idx.is_dir():
        trains = sorted(idx.glob("train_*.txt"))
        if len(trains) > 1:
            listed = ", ".join(p.name for p in trains)
            raise UsageError(
                f"{idx}: several training splits ({listed}); pick one with --train-split"
            )
        tests = sorted(idx.glob("test_*.txt"))
        name = trains[0].stem[len("train_") :] if trains else None
        if name is None and len(tests) == 1:
            name = tests[0].stem[len("test_") :]
        if name is not None:
            train, test = found(*(root / p for p in split_paths("basicirstd", name)))
            return "basicirstd", name, train, test
    # IRSTD-1k: trainval.txt and test.txt at the root or under img_idx/
    for folder in (root, idx):
        train, test = found(folder / "trainval.txt", folder / "test.txt")
        if train or test:
            return "irstd1k", root.name, train, test
    for folder in sorted(root.glob("idx_*")):  # SIRST v1
        train, test = found(folder / "trainval.txt", folder / "test.txt")
        if train or test:
            return "sirst", root.name, train, test
    return "none", root.name, None, None


def pair_index(root: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """(stem -> image, stem -> mask) of a dataset folder's images/ and masks/."""
    return index_files(root / "images"), index_files(root / "masks", MASK_SUFFIXES)


def resolve_stems(
    stems: list[str],
    source: Path,
    root: Path,
    images: dict[str, Path],
    masks: dict[str, Path],
    skip_errors: bool,
) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
    """The stems whose image and mask both exist under ``root``, and (with ``skip_errors``) the
    others with why; without it, the first missing file is a data error naming the file and
    the fix. ``source``: where the stems were listed."""
    kept, skipped = [], []
    for stem in stems:
        if stem not in images:
            problem = f"{source}: lists {stem!r} but {root / 'images'} has no such image; fix the split file"
        elif stem not in masks:
            problem = f"{images[stem]}: no mask {stem}.png or {stem}_pixels0.png in {root / 'masks'}; add the mask"
        else:
            kept.append(stem)
            continue
        if not skip_errors:
            raise DataError(problem)
        skipped.append((stem, problem))
    return tuple(kept), skipped


def check_dataset_root(root: Path) -> Path:
    """A dataset root must be a folder holding images/ and masks/: the one-line error for a
    mistyped path, which commands give before any slow set-up."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: dataset folder not found; pass a folder with images/ and masks/")
    for sub in ("images", "masks"):
        if not (root / sub).is_dir():
            raise UsageError(f"{root}: no {sub}/ folder; a dataset root holds images/ and masks/")
    return root


def open_dataset(
    root: Path,
    train_split: Path | None = None,
    test_split: Path | None = None,
    skip_errors: bool = False,
    splits: tuple[str, ...] = ("train", "test"),
) -> Dataset:
    """Resolve a dataset folder: layout, splits, and the image and mask file of every stem.

    The one reader of dataset folders: every command finds splits and files here.
    ``train_split`` / ``test_split`` override the detected split files (a given training split
    turns test detection off: the two come from one place). Only the ``splits`` asked for are
    read, so a test-only folder is scored and a split file is scored without a training split.
    A stem whose image or mask is missing is a data error, or a listed skip where
    ``skip_errors`` is set (``--on-error skip``).
    """
    root = check_dataset_root(root)
    if train_split is not None or (test_split is not None and "train" not in splits):
        layout, name = "custom", root.name  # the split files given: nothing to detect
    else:
        layout, name, train_split, detected_test = detect_splits(root)
        if test_split is None:
            test_split = detected_test
    if "train" in splits and train_split is None:
        raise UsageError(
            f"{root}: no training split found (50_50/train.txt, img_idx/train_*.txt, "
            "trainval.txt or idx_*/trainval.txt); pass --train-split FILE"
        )
    images, masks = pair_index(root)
    skipped: list[tuple[str, str]] = []

    def resolve(split: Path) -> tuple[str, ...]:
        kept, why = resolve_stems(read_split(split), split, root, images, masks, skip_errors)
        skipped.extend(why)
        return kept

    train = resolve(train_split) if "train" in splits else ()
    test = resolve(test_split) if "test" in splits and test_split is not None else ()
    both = sorted(set(train) & set(test))
    if both:
        raise DataError(
            f"{test_split}: {both[0]!r} is in both the training and the test split; "
            "remove it from one of them"
        )
    if "train" in splits and not train:
        raise DataError(f"{train_split}: no usable training image; fix the split or the files")
    return Dataset(
        root=root,
        name=name,
        layout=layout,
        train=train,
        test=test,
        train_split=train_split,
        test_split=test_split,
        images=images,
        masks=masks,
        skipped=tuple(skipped),
    )


def source_files(ds: Dataset, stems: tuple[str, ...]) -> list[Path]:
    """The image and mask files of the given stems, in a stable order (for fingerprints)."""
    out: list[Path] = []
    for stem in stems:
        out += [ds.image_path(stem), ds.mask_path(stem)]
    return out


#: Split-file layouts generate writes: both toolboxes' by default.
LAYOUTS = ("both", "basicirstd", "dnanet")


def layout_split_paths(layout: str, name: str) -> list[tuple[str, str]]:
    """The (train, test) split files written for ``layout`` ("both" = BasicIRSTD + DNA-Net)."""
    chosen = ("basicirstd", "dnanet") if layout == "both" else (layout,)
    return [split_paths(x, name) for x in chosen]


def load_pair(ds: Dataset, stem: str) -> tuple[np.ndarray, np.ndarray]:
    """A training pair decoded (one 8-bit channel, 0/1 mask), refused if the sizes differ."""
    image = read_gray(ds.image_path(stem), ds.value_range)
    mask = read_mask(ds.mask_path(stem))
    check_same_size(ds.mask_path(stem), mask.shape, image.shape)
    return image, mask
