"""Training data: decode, pad or random-crop to the crop size (never resize), normalise.

Randomness is a function of (seed, epoch, group), so a resumed run sees the same crops and
the same batch order as an uninterrupted one, and the 4 rotations of a target share a crop.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from sirst_synth.augment import apply_flips, crop_or_pad, crop_window, draw_flips
from sirst_synth.convert import normalise
from sirst_synth.io.bank import BankReader
from sirst_synth.io.files import read_gray, read_mask
from sirst_synth.io.samples import Item
from sirst_synth.recipe import SynthRecipe
from sirst_synth.seeding import key_int, rng_for


def training_pair(
    image: np.ndarray,
    mask: np.ndarray,
    anchor: np.ndarray,
    crop: int | None,
    regime: tuple[float, bool],
    seed: int,
    epoch: int,
    group: str,
) -> tuple[np.ndarray, np.ndarray]:
    """The crop and flips of one sample, drawn per (seed, epoch, group).

    ``anchor`` is the mask a positive crop picks its target pixel from: the mask of the
    group's first sample, so every sample of a group (a target's 4 rotations) gets the same
    window and the same flips. ``regime`` is (pos_prob, flips).
    """
    pos_prob, flips = regime
    if crop:
        window = crop_window(anchor, crop, pos_prob, rng_for(seed, "crop", epoch, group))
        image, mask = crop_or_pad(image, mask, crop, window)
    if flips:
        chosen = draw_flips(rng_for(seed, "flip", epoch, group))
        image, mask = apply_flips(image, chosen), apply_flips(mask, chosen)
    return image, mask


def to_tensors(
    image: np.ndarray, mask: np.ndarray, mean: float, std: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's input (1 x H x W, normalised) and target (1 x H x W, 0/1 float)."""
    x = normalise(image, mean, std)
    return torch.from_numpy(x)[None], torch.from_numpy(mask.astype(np.float32))[None]


def normalisation(items: list[Item], limit: int = 1000) -> tuple[float, float]:
    """Mean and std of the training images (0..1 scale), from up to ``limit`` evenly spaced images."""
    step = max(1, len(items) // limit)
    s = s2 = n = 0.0
    for it in items[::step]:
        x = read_gray(it.image, it.value_range).astype(np.float64) / 255.0
        s += x.sum()
        s2 += (x**2).sum()
        n += x.size
    mean = s / n
    return float(mean), float(max(np.sqrt(max(s2 / n - mean**2, 0.0)), 1e-6))


#: Decoded training pairs are kept in memory up to this many bytes (SIRST v1: 18 MB; a
#: SIRST-5K set of 5,562 256 x 256 pairs: 0.7 GB); beyond it every step decodes its files.
CACHE_BYTES = 2 << 30


def decode_all(items: list[Item], limit: int = CACHE_BYTES) -> list[tuple] | None:
    """Every (image, mask) pair decoded once, or None where they would exceed ``limit`` bytes
    (sizes from the file headers, before decoding anything)."""
    from sirst_synth.io.files import image_size

    need = 0
    for it in items:
        h, w = image_size(it.image)
        need += 2 * h * w
        if need > limit:
            return None
    return [(read_gray(it.image, it.value_range), read_mask(it.mask)) for it in items]


class SegmentationSet(Dataset):
    """Training pairs of a folder, cropped per (seed, epoch, group) and normalised.

    ``cache``: decode every pair once, up front (``decode_all``), instead of at every step;
    the batches are the same either way. Loader workers fork after the decode and share it.
    """

    def __init__(
        self,
        items: list[Item],
        mean: float,
        std: float,
        crop: int | None,
        seed: int,
        cache: bool = True,
        regime: tuple[float, bool] = (0.0, False),
    ):
        self.items, self.mean, self.std, self.crop, self.seed = items, mean, std, crop, seed
        self.regime = regime
        self.epoch = 0
        groups = sorted({it.group for it in items})
        self.group_ids = {g: i for i, g in enumerate(groups)}
        first: dict[str, int] = {}
        self.anchor = [first.setdefault(it.group, i) for i, it in enumerate(items)]
        self.decoded = decode_all(items) if cache else None

    def _mask(self, i: int) -> np.ndarray:
        if self.decoded is not None:
            return self.decoded[i][1]
        return read_mask(self.items[i].mask)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        it = self.items[i]
        if self.decoded is not None:
            image, mask = self.decoded[i]
        else:
            image, mask = read_gray(it.image, it.value_range), read_mask(it.mask)
        j = self.anchor[i]
        anchor = mask if j == i or not self.regime[0] else self._mask(j)
        image, mask = training_pair(
            image, mask, anchor, self.crop, self.regime, self.seed, self.epoch, it.group
        )
        return (*to_tensors(image, mask, self.mean, self.std), self.group_ids[it.group])


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
        regime: tuple[float, bool] = (0.0, False),
    ):
        self.items, self.bank, self.recipe = items, bank, recipe
        self.mean, self.std, self.crop, self.seed = mean, std, crop, seed
        self.regime = regime
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
        single = self.recipe.mode != "sirst5k"  # n2n, paste: one sample per image and pass
        counts = [1] * len(stems) if single else self.target_counts
        jobs = plan_pass(
            stems, counts, self.recipe.count, self.recipe.seed, epoch, 1 if single else 4
        )
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
        return self._sample(i)[:3]

    def _sample(self, i: int) -> tuple[np.ndarray, np.ndarray, str, np.ndarray]:
        """``sample`` and the mask of the source image it was made from (the group's anchor:
        a group's samples all come from one source)."""
        from sirst_synth.draw import noise_draw
        from sirst_synth.synth import noise_only, synthesize

        k, pick = self.entries[i]
        it = self.items[k]
        image, mask = read_gray(it.image, it.value_range), read_mask(it.mask)
        if pick is None:
            return image, mask, it.stem, mask
        if self._reader is None or self._pid != os.getpid():  # h5py handles do not survive fork
            self._reader, self._pid = BankReader(self.bank), os.getpid()
        seed = self.recipe.seed
        if self.recipe.mode == "paste":
            from sirst_synth.paste import paste_sample_of

            by_stem = {x.stem: x for x in self.items}
            pasted = paste_sample_of(
                image, mask, it.stem, self.epoch, self.recipe,
                [x.stem for x in self.items], self.target_counts,
                lambda stem: (read_gray(by_stem[stem].image, by_stem[stem].value_range), read_mask(by_stem[stem].mask)),
                lambda stem, p: noise_draw(self.bank, self._reader, seed, stem, p),
            )  # fmt: skip
            return pasted.image, pasted.mask, self.groups_of(k, pick), mask
        patch, _ = noise_draw(self.bank, self._reader, seed, it.stem, self.epoch)
        if self.recipe.mode == "n2n":
            smp = noise_only(image, mask, patch, self.recipe.alpha)
        else:
            (smp,) = synthesize(image, mask, patch, self.recipe.alpha, self.recipe.s, (pick,))
        return smp.image, smp.mask, self.groups_of(k, pick), mask

    def groups_of(self, k: int, pick: tuple[int, int]) -> str:
        """The group generate writes for this sample (``naming.sample_group``)."""
        from sirst_synth.naming import sample_group

        return sample_group(self.items[k].stem, self.epoch, self.recipe.mode, pick[0])

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int):
        image, mask, group, anchor = self._sample(i)
        image, mask = training_pair(
            image, mask, anchor, self.crop, self.regime, self.seed, self.epoch, group
        )
        return (*to_tensors(image, mask, self.mean, self.std), hash_group(group))


def hash_group(group: str) -> int:
    """A group id that is the same in every process (a loss only compares ids in one batch)."""
    return key_int(group) & 0x7FFFFFFFFFFFFFFF


def online_setup(
    data: Path, bank_path: Path, synth_recipe: SynthRecipe, train_split: Path | None = None
) -> dict:
    """The bank and recipe of online synthesis, checked against DATA before any training."""
    from sirst_synth.errors import UsageError
    from sirst_synth.io.bank import check_bank_source, read_bank_index
    from sirst_synth.io.files import fingerprint
    from sirst_synth.io.layouts import open_dataset, source_files
    from sirst_synth.io.manifest import MANIFEST
    from sirst_synth.recipe import recipe_dict

    if (Path(data) / MANIFEST).is_file():
        raise UsageError(
            f"{data} is a generate output; --synth online synthesises from the source dataset: "
            "pass that instead"
        )
    bank = read_bank_index(bank_path)
    ds = open_dataset(data, train_split, splits=("train",))
    check_bank_source(bank, ds.root, fingerprint(ds.root, source_files(ds, ds.train)))
    identity = {
        "mode": "online",
        "recipe": recipe_dict(synth_recipe),
        "bank_fingerprint": bank.attrs.get("fingerprint"),
    }
    return {"bank": bank, "recipe": synth_recipe, "identity": identity}


def batch_groups(groups: list[str], keep: bool) -> list[str]:
    """What the sampler keeps together: the samples' groups, or (``keep`` false) each sample
    alone, so batches mix targets and images freely."""
    return list(groups) if keep else [str(i) for i in range(len(groups))]
