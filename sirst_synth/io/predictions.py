"""Read predictions of any model: PNG masks or probability maps named like the images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sirst_synth.convert import to_probability
from sirst_synth.errors import DataError
from sirst_synth.io.files import read_converted
from sirst_synth.io.layouts import IMAGE_EXTS


def read_probability(path: Path) -> np.ndarray:
    """A prediction file as probabilities in [0, 1] (``convert.to_probability``'s one rule);
    an ambiguous file is a data error that names it."""
    return read_converted(path, to_probability, "or pass predictions as 8-bit gray maps")


def find_prediction(pred_dir: Path, stem: str) -> Path:
    for ext in IMAGE_EXTS:
        p = pred_dir / f"{stem}{ext}"
        if p.is_file():
            return p
    raise DataError(f"{pred_dir}: no prediction named {stem}.png; name predictions like the images")
