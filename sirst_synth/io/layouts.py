"""Dataset layouts of the field, detected without flags.

- DNA-Net (NUDT-SIRST): ``images/NAME.png``, ``masks/NAME.png``, ``50_50/{train,test}.txt``.
- BasicIRSTD: ``img_idx/train_<DATASET>.txt`` and ``img_idx/test_<DATASET>.txt``.
- SIRST v1: ``masks/NAME_pixels0.png``, ``idx_427/{trainval,test}.txt``.
``--train-split`` / ``--test-split`` override the detected split files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sirst_synth.errors import DataError, UsageError

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
    for line in text.splitlines():
        stem = line.strip()
        if not stem:
            continue
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


def _index(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """stem -> file for every image file in a folder (first extension in IMAGE_EXTS wins)."""
    found: dict[str, Path] = {}
    rank = {ext: i for i, ext in enumerate(IMAGE_EXTS)}
    for p in sorted(folder.iterdir()):
        ext = p.suffix.lower()
        if ext not in rank or p.name.startswith(".") or not p.is_file():
            continue
        stem = p.stem
        for suffix in suffixes:
            if suffix and stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        if stem not in found or rank[ext] < rank[found[stem].suffix.lower()]:
            found[stem] = p
    return found


def _detect_splits(root: Path) -> tuple[str, str, Path, Path | None]:
    """(layout, dataset name, train split, test split) from the files present."""
    if (root / "50_50" / "train.txt").is_file():
        test = root / "50_50" / "test.txt"
        return "dnanet", root.name, root / "50_50" / "train.txt", test if test.is_file() else None
    idx = root / "img_idx"
    if idx.is_dir():
        trains = sorted(idx.glob("train_*.txt"))
        if len(trains) == 1:
            name = trains[0].stem[len("train_") :]
            test = idx / f"test_{name}.txt"
            return "basicirstd", name, trains[0], test if test.is_file() else None
        if len(trains) > 1:
            listed = ", ".join(p.name for p in trains)
            raise UsageError(
                f"{idx}: several training splits ({listed}); pick one with --train-split"
            )
    for folder in sorted(root.glob("idx_*")):
        if (folder / "trainval.txt").is_file():
            test = folder / "test.txt"
            return "sirst", root.name, folder / "trainval.txt", test if test.is_file() else None
    raise UsageError(
        f"{root}: unknown dataset layout (no 50_50/train.txt, img_idx/train_*.txt or "
        "idx_*/trainval.txt); pass --train-split FILE"
    )


def open_dataset(
    root: Path,
    train_split: Path | None = None,
    test_split: Path | None = None,
    skip_missing: bool = False,
) -> Dataset:
    """Resolve a dataset folder: layout, splits, and the image and mask file of every stem.

    A stem whose image or mask is missing is a data error, or a listed skip where
    ``skip_missing`` is set (``--on-error skip``).
    """
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: dataset folder not found; pass a folder with images/ and masks/")
    for sub in ("images", "masks"):
        if not (root / sub).is_dir():
            raise UsageError(f"{root}: no {sub}/ folder; a dataset root holds images/ and masks/")
    if train_split is None:
        layout, name, train_split, detected_test = _detect_splits(root)
        if test_split is None:
            test_split = detected_test
    else:
        layout, name = "custom", root.name
    images = _index(root / "images", ("",))
    masks = _index(root / "masks", MASK_SUFFIXES)
    skipped: list[tuple[str, str]] = []

    def resolve(stems: list[str], split: Path) -> tuple[str, ...]:
        kept = []
        for stem in stems:
            if stem not in images:
                problem = f"{split}: lists {stem!r} but {root / 'images'} has no such image; fix the split file"
            elif stem not in masks:
                problem = f"{images[stem]}: no mask {stem}.png or {stem}_pixels0.png in {root / 'masks'}; add the mask"
            else:
                kept.append(stem)
                continue
            if not skip_missing:
                raise DataError(problem)
            skipped.append((stem, problem))
        return tuple(kept)

    train = resolve(read_split(train_split), train_split)
    test = resolve(read_split(test_split), test_split) if test_split is not None else ()
    both = sorted(set(train) & set(test))
    if both:
        raise DataError(
            f"{test_split}: {both[0]!r} is in both the training and the test split; "
            "remove it from one of them"
        )
    if not train:
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
