"""A torch Dataset for other trainers (BasicIRSTD, DNA-Net, a plain PyTorch loop).

``SynthDataset(dataset_dir, bank, recipe=..., seed=...)`` holds, for epoch e
(``set_epoch(e)``), the training images themselves plus the samples generate would write for
pass e (``train --synth online``'s data: ``sirst_synth.train.data.OnlineSynthSet``, which
calls the same planner, noise draw and synthesis functions). By default an item is raw
arrays, ``(image uint8 H x W, mask 0/1 uint8 H x W, group)``, for any transform pipeline;
``form="basicirstd"`` gives BasicIRSTD's training form: its patch crop (a target-containing
window with ``pos_prob``), its flips and transpose, normalised as its loader normalises
(``(img - mean) / std`` on the 0..255 scale, mean and std of the training images), float32
1 x P x P image and mask. ``group_sampler(batch_size)`` keeps a target's 4 rotations in one
batch for trainers that want L_Neg (a plain ``shuffle=True`` separates them).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from sirst_synth.recipe import SynthRecipe, resolve_recipe

FORMS = ("raw", "basicirstd")


class SynthDataset(Dataset):
    def __init__(
        self,
        dataset_dir: str | Path,
        bank: str | Path,
        recipe: Any = None,
        seed: int = 0,
        form: str = "raw",
        patch_size: int = 256,
        pos_prob: float = 0.5,
        **overrides: Any,
    ):
        from sirst_synth.io.bank import bank_range, read_bank_index
        from sirst_synth.io.samples import (
            read_with_range,
            split_items,
            target_counts,
        )
        from sirst_synth.train.data import OnlineSynthSet, normalisation

        if form not in FORMS:
            raise ValueError(f"form must be one of {', '.join(FORMS)}, got {form!r}")
        self.form, self.patch_size, self.pos_prob, self.seed = form, patch_size, pos_prob, seed
        r = resolve_recipe(SynthRecipe, recipe, {"seed": seed, **overrides})
        index = read_bank_index(Path(bank))
        a = index.attrs
        r = dataclasses.replace(r, sigma=float(a["sigma"]), mu=float(a["mu"]), grid=int(a["grid"]))
        items, _ = split_items(Path(dataset_dir), "train")
        vr = bank_range(index)  # the images read the bank's way (build-noise-bank --range)
        items = read_with_range(items, vr)
        counts = target_counts(items)
        self.online = OnlineSynthSet(items, index, r, 0.0, 1.0, None, seed, counts)
        self.recipe = r
        mean, std = normalisation(items) if form == "basicirstd" else (0.0, 1.0)
        self.mean, self.std = mean * 255.0, std * 255.0  # BasicIRSTD's img_norm_cfg units
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Epoch ``epoch``'s samples (generate's pass ``epoch``) and crops."""
        self.epoch = epoch
        self.online.set_epoch(epoch)

    def groups(self) -> list[str]:
        return self.online.groups()

    def group_sampler(self, batch_size: int, rank: int = 0, world: int = 1) -> Sampler[list[int]]:
        """Batches that keep a group together, shuffled per (seed, epoch); call
        ``set_epoch`` on the sampler too (or build it anew each epoch)."""
        from sirst_synth.train.data import GroupBatchSampler

        sampler = GroupBatchSampler(self.groups(), batch_size, self.seed, rank, world)
        sampler.epoch = self.epoch
        return sampler

    def __len__(self) -> int:
        return len(self.online)

    def __getitem__(self, i: int):
        image, mask, group, anchor = self.online._sample(i)
        if self.form == "raw":
            return image, mask, group
        from sirst_synth.train.data import training_pair

        # the source's mask picks the target pixel: a target's rotations share crop and flips
        image, mask = training_pair(
            image, mask, anchor, self.patch_size, (self.pos_prob, True), self.seed, self.epoch,
            group,
        )  # fmt: skip
        x = (image.astype(np.float32) - self.mean) / self.std
        return torch.from_numpy(x)[None], torch.from_numpy(mask.astype(np.float32))[None]
