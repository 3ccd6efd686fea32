"""Training data: decode, pad or random-crop to the crop size (never resize), normalise.

Randomness is a function of (seed, epoch, group), so a resumed run sees the same crops and
the same batch order as an uninterrupted one, and the 4 rotations of a target share a crop.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from sirst_synth.io.bank import BankReader
from sirst_synth.io.files import read_gray, read_mask
from sirst_synth.io.samples import Item
from sirst_synth.seeding import key_int, rng_for


def crop_or_pad(
    image: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A ``size x size`` view: random crop where larger, zero pad (bottom/right) where smaller."""
    h, w = image.shape
    y0 = int(rng.integers(0, h - size + 1)) if h > size else 0
    x0 = int(rng.integers(0, w - size + 1)) if w > size else 0
    image, mask = image[y0 : y0 + size, x0 : x0 + size], mask[y0 : y0 + size, x0 : x0 + size]
    ph, pw = size - image.shape[0], size - image.shape[1]
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw)))
        mask = np.pad(mask, ((0, ph), (0, pw)))
    return image, mask


def normalisation(items: list[Item], limit: int = 1000) -> tuple[float, float]:
    """Mean and std of the training images (0..1 scale), from up to ``limit`` evenly spaced images."""
    step = max(1, len(items) // limit)
    s = s2 = n = 0.0
    for it in items[::step]:
        x = read_gray(it.image).astype(np.float64) / 255.0
        s += x.sum()
        s2 += (x**2).sum()
        n += x.size
    mean = s / n
    return float(mean), float(max(np.sqrt(max(s2 / n - mean**2, 0.0)), 1e-6))


class SegmentationSet(Dataset):
    def __init__(self, items: list[Item], mean: float, std: float, crop: int | None, seed: int):
        self.items, self.mean, self.std, self.crop, self.seed = items, mean, std, crop, seed
        self.epoch = 0
        groups = sorted({it.group for it in items})
        self.group_ids = {g: i for i, g in enumerate(groups)}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        it = self.items[i]
        image, mask = read_gray(it.image), read_mask(it.mask)
        if self.crop:
            image, mask = crop_or_pad(
                image, mask, self.crop, rng_for(self.seed, "crop", self.epoch, it.group)
            )
        x = (image.astype(np.float32) / 255.0 - self.mean) / self.std
        return (
            torch.from_numpy(x)[None],
            torch.from_numpy(mask.astype(np.float32))[None],
            self.group_ids[it.group],
        )


class GroupBatchSampler(Sampler):
    """Batches that keep a group (the 4 rotations of one target) together, shuffled per epoch.

    With several processes, each rank takes every ``world``-th batch; all ranks get the same
    number of batches.
    """

    def __init__(
        self, groups: list[str], batch_size: int, seed: int, rank: int = 0, world: int = 1
    ):
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.members: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            self.members.setdefault(g, []).append(i)
        self.keys = sorted(self.members)
        self.epoch = 0

    def set_groups(self, groups: list[str]) -> None:
        """New samples for a new epoch (online synthesis): regroup them."""
        self.members = {}
        for i, g in enumerate(groups):
            self.members.setdefault(g, []).append(i)
        self.keys = sorted(self.members)

    def batches(self) -> list[list[int]]:
        order = rng_for(self.seed, "order", self.epoch).permutation(len(self.keys))
        out, cur = [], []
        for k in order:
            m = self.members[self.keys[k]]
            if cur and len(cur) + len(m) > self.batch_size:
                out.append(cur)
                cur = []
            cur = cur + m
        if cur:
            out.append(cur)
        if self.world == 1:
            return out
        while len(out) < self.world:  # too few batches: every rank still needs one
            out = out + out
        return out[: len(out) // self.world * self.world][self.rank :: self.world]

    def __iter__(self):
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())


class OnlineSynthSet(Dataset):
    """``train --synth online``: each epoch, every training image itself plus fresh SIRST-5K
    development samples, made in memory from the noise bank and never written.

    Epoch e holds exactly the arrays generate writes for pass e (same bank, recipe and seed):
    the same planner (``plan_pass``), noise draw (``noise_draw``) and synthesis functions.
    Call ``set_epoch`` before iterating; sample i of an epoch is a pure function of
    (seed, epoch, i), so loader workers and resumes see the same batches.
    """

    def __init__(
        self,
        items: list[Item],
        bank,
        recipe,
        mean: float,
        std: float,
        crop: int | None,
        seed: int,
        target_counts: list[int],
    ):
        self.items, self.bank, self.recipe = items, bank, recipe
        self.mean, self.std, self.crop, self.seed = mean, std, crop, seed
        self.target_counts = target_counts
        self._reader, self._pid = None, None
        self.epoch = -1
        self.entries: list[tuple[int, tuple[int, int] | None]] = []
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        from sirst_synth.plan import plan_pass

        if epoch == self.epoch:
            return
        self.epoch = epoch
        stems = [it.stem for it in self.items]
        n2n = self.recipe.mode == "n2n"
        counts = [1] * len(stems) if n2n else self.target_counts
        jobs = plan_pass(stems, counts, self.recipe.count, self.recipe.seed, epoch, 1 if n2n else 4)
        index = {s: i for i, s in enumerate(stems)}
        self.entries = [(i, None) for i in range(len(stems))]
        self.entries += [(index[j.stem], pick) for j in jobs for pick in j.picks]

    def groups(self) -> list[str]:
        """The L_Neg group of every sample of this epoch (the 4 rotations of a target share one)."""
        return [
            self.items[k].stem if pick is None else self.groups_of(k, pick)
            for k, pick in self.entries
        ]

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        """(image, mask 0/1, group) of sample i of this epoch, before crop and normalisation."""
        from sirst_synth.generate import noise_draw
        from sirst_synth.synth import noise_only, synthesize

        k, pick = self.entries[i]
        it = self.items[k]
        image, mask = read_gray(it.image), read_mask(it.mask)
        if pick is None:
            return image, mask, it.stem
        if self._reader is None or self._pid != os.getpid():  # h5py handles do not survive fork
            self._reader, self._pid = BankReader(self.bank), os.getpid()
        patch, _ = noise_draw(self.bank, self._reader, self.recipe.seed, it.stem, self.epoch)
        if self.recipe.mode == "n2n":
            smp = noise_only(image, mask, patch, self.recipe.alpha)
        else:
            (smp,) = synthesize(image, mask, patch, self.recipe.alpha, self.recipe.s, (pick,))
        return smp.image, smp.mask, self.groups_of(k, pick)

    def groups_of(self, k: int, pick: tuple[int, int]) -> str:
        return f"{self.items[k].stem}:{self.epoch}:{pick[0]}"

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int):
        image, mask, group = self.sample(i)
        if self.crop:
            image, mask = crop_or_pad(
                image, mask, self.crop, rng_for(self.seed, "crop", self.epoch, group)
            )
        x = (image.astype(np.float32) / 255.0 - self.mean) / self.std
        return (
            torch.from_numpy(x)[None],
            torch.from_numpy(mask.astype(np.float32))[None],
            hash_group(group),
        )


def hash_group(group: str) -> int:
    """A group id that is the same in every process (a loss only compares ids in one batch)."""
    return key_int(group) & 0x7FFFFFFFFFFFFFFF
