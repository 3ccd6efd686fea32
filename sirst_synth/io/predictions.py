"""Read predictions of any model: image files or ``.npy`` arrays named like the images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sirst_synth.convert import PRED_KINDS, to_probability
from sirst_synth.errors import DataError
from sirst_synth.io.files import decode_raw
from sirst_synth.io.layouts import IMAGE_EXTS, index_files

PRED_EXTS = (*IMAGE_EXTS, ".npy")


def read_probability(path: Path, kind: str = "auto") -> np.ndarray:
    """A prediction file as probabilities in [0, 1] (``convert.to_probability``'s rules for
    ``kind``); an ambiguous file is a data error that names it."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            raw = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(
                f"{path}: not a readable .npy array ({exc}); save it with numpy.save"
            ) from None
    else:
        raw = decode_raw(path)
    try:
        return to_probability(raw, kind)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


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


__all__ = ["PRED_KINDS", "find_prediction", "prediction_index", "read_probability"]
