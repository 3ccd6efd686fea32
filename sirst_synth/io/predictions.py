"""Read predictions of any model: image files or ``.npy`` arrays named like the images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sirst_synth.convert import to_probability
from sirst_synth.errors import DataError
from sirst_synth.io.files import read_converted
from sirst_synth.io.layouts import IMAGE_EXTS, index_files

PRED_EXTS = (*IMAGE_EXTS, ".npy")


def read_probability(path: Path, kind: str = "auto") -> np.ndarray:
    """A prediction file as probabilities in [0, 1] (``convert.to_probability``'s rules for
    ``kind``); an ambiguous file is a data error that names it."""
    path = Path(path)
    decode = _load_npy if path.suffix.lower() == ".npy" else None
    return read_converted(path, lambda raw: to_probability(raw, kind), decode=decode)


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{path}: not a readable .npy array ({exc}); save it with numpy.save"
        ) from None


def prediction_index(pred_dir: Path) -> dict[str, Path]:
    """stem -> prediction file in ``pred_dir`` (extensions in any case, ``.npy`` too)."""
    return index_files(Path(pred_dir), exts=PRED_EXTS)


def find_prediction(index: dict[str, Path], pred_dir: Path, stem: str) -> Path:
    if stem in index:
        return index[stem]
    raise DataError(
        f"{pred_dir}: no prediction for image {stem!r} (looked for {stem} with "
        f"{', '.join(PRED_EXTS)}, in any case); name predictions like the images"
    )


__all__ = ["find_prediction", "prediction_index", "read_probability"]
