"""The seeded draws that generate and ``train --synth online`` share, so that epoch e of
online synthesis is generate's pass e."""

from __future__ import annotations

import numpy as np

from sirst_synth.errors import DataError
from sirst_synth.io.bank import BankIndex, BankReader
from sirst_synth.noise import pick_patch
from sirst_synth.seeding import rng_for


def noise_draw(
    bank: BankIndex, reader: BankReader, seed: int, stem: str, pass_index: int
) -> tuple[np.ndarray, dict]:
    """The bank patch of (image, pass) and where it came from: a uniform draw among patches
    not cut from this image, from the generator of (seed, "noise", stem, pass). generate and
    ``train --synth online`` both call it, so epoch e of online synthesis is generate's pass e."""
    src = bank.sources.index(stem) if stem in bank.sources else -1
    choice = pick_patch(bank.source, src, rng_for(seed, "noise", stem, pass_index))
    if choice < 0:
        raise DataError(
            f"{bank.path}: every patch comes from {stem}; build the bank from more images"
        )
    noise = {
        "source": bank.sources[int(bank.source[choice])],
        "row": int(bank.row[choice]),
        "col": int(bank.col[choice]),
    }
    return reader.patch(choice), noise
