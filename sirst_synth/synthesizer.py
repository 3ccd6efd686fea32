"""A synthesizer for any loader (numpy, no torch): the samples generate writes for one image.

``Synthesizer(bank, recipe, seed)(image, mask, key=stem, epoch=e)`` returns what ``generate``
writes for that training image in pass ``e`` (every target's 4 rotations in ``sirst5k`` mode,
the blended image in ``n2n``, one paste sample in ``paste``): the same noise draw, planner
order and synthesis functions, called here, not copied. Deterministic in (seed, key, epoch);
safe in DataLoader worker processes (the HDF5 handle is reopened in each process and never
pickled).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sirst_synth.naming import sample_group, sample_name
from sirst_synth.recipe import SynthRecipe, resolve_recipe
from sirst_synth.rotate import ANGLES


@dataclass(frozen=True)
class SynthSample:
    image: np.ndarray  # uint8, H x W
    mask: np.ndarray  # 0/1 uint8, H x W
    group: str  # the L_Neg group (a target's 4 rotations share one)
    name: str  # the file stem generate gives it


class Synthesizer:
    """See the module docstring. ``sources``: (stem, image, mask) of the training images a
    ``paste`` recipe draws targets from (the run's training split)."""

    def __init__(
        self,
        bank: str | Path,
        recipe: Any = None,
        seed: int | None = None,
        sources: list[tuple[str, np.ndarray, np.ndarray]] | None = None,
        **overrides: Any,
    ):
        from sirst_synth.io.bank import read_bank_index

        self.bank = read_bank_index(Path(bank))
        r = resolve_recipe(SynthRecipe, recipe, {"seed": seed, **overrides})
        # sigma, mu and grid describe the bank (as in generate)
        a = self.bank.attrs
        self.recipe = dataclasses.replace(
            r, sigma=float(a["sigma"]), mu=float(a["mu"]), grid=int(a["grid"])
        )
        self.sources = list(sources or [])
        if self.recipe.mode == "paste" and not self.sources:
            raise ValueError("a paste recipe needs sources: the training images to draw from")
        self._reader, self._pid = None, None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_reader"], state["_pid"] = None, None  # h5py handles do not cross processes
        return state

    def _noise(self, key: str, epoch: int):
        from sirst_synth.draw import noise_draw
        from sirst_synth.io.bank import BankReader

        if self._reader is None or self._pid != os.getpid():
            self._reader, self._pid = BankReader(self.bank), os.getpid()
        return noise_draw(self.bank, self._reader, self.recipe.seed, key, epoch)

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, *, key: str, epoch: int = 0
    ) -> list[SynthSample]:
        from sirst_synth.synth import noise_only, synthesize
        from sirst_synth.targets import components

        r = self.recipe
        mask = (np.asarray(mask) != 0).astype(np.uint8)
        if r.mode == "paste":
            from sirst_synth.paste import paste_sample_of

            stems = [s for s, _, _ in self.sources]
            by_stem = {s: (i, m) for s, i, m in self.sources}
            counts = [components(m).count for _, _, m in self.sources]
            smp = paste_sample_of(
                image, mask, key, epoch, r, stems, counts, lambda s: by_stem[s], self._noise
            )
            return [_single(smp.image, smp.mask, key, epoch, "paste")]
        patch, _ = self._noise(key, epoch)
        if r.mode == "n2n":
            smp = noise_only(image, mask, patch, r.alpha)
            return [_single(smp.image, smp.mask, key, epoch, "n2n")]
        picks = tuple((t, a) for t in range(components(mask).count) for a in ANGLES)
        return [
            SynthSample(
                s.image,
                s.mask,
                sample_group(key, epoch, "sirst5k", s.target),
                sample_name(key, epoch, "sirst5k", s.target, s.angle),
            )
            for s in synthesize(image, mask, patch, r.alpha, r.s, picks)
        ]


def _single(image: np.ndarray, mask: np.ndarray, key: str, epoch: int, mode: str) -> SynthSample:
    """The one sample of an image and pass in n2n and paste modes (its own group)."""
    return SynthSample(
        image, mask, sample_group(key, epoch, mode, None), sample_name(key, epoch, mode, None, 0)
    )
