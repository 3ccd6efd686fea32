"""Building a run: training and validation items, normalisation, model, optimiser (restored
from a checkpoint on resume), the group sampler and the loader, held in one ``Run``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from sirst_synth.errors import UsageError
from sirst_synth.io.files import fingerprint
from sirst_synth.io.samples import (
    Item,
    read_with_range,
    split_items,
    target_counts,
)
from sirst_synth.names import RANGE_MODES
from sirst_synth.recipe import TrainRecipe
from sirst_synth.train.checkpoint import load_weights
from sirst_synth.train.data import (
    GroupBatchSampler,
    OnlineSynthSet,
    SegmentationSet,
    batch_groups,
    normalisation,
)
from sirst_synth.train.device import Runtime
from sirst_synth.train.model import build_model, parameter_count


def dist_env() -> tuple[int, int, int]:
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


@dataclass
class Run:
    """What a run holds between steps: nanoGPT keeps this in module globals; here it is named."""

    recipe: TrainRecipe
    out: Path
    rt: Runtime
    rank: int
    world: int
    model: torch.nn.Module  # the weights (what is saved and validated)
    net: torch.nn.Module  # what steps: the model, wrapped in DDP and/or compiled
    opt: torch.optim.Optimizer
    ds: SegmentationSet | OnlineSynthSet
    sampler: GroupBatchSampler
    loader: DataLoader
    val_items: list[Item]
    mean: float
    std: float
    n_params: int
    online: dict | None
    epoch: int = 0  # epochs done
    step: int = 0  # optimiser steps done
    lr: float = 0.0
    best: dict = field(default_factory=dict)
    data_fingerprint: str = ""  # of the training files: a resume on other data is refused
    val_fingerprint: str = ""  # of the validation files, which best.pt was chosen on
    val_source: str = ""  # where validation reads, for the log
    value_range: tuple[float, float] | None = None  # how 16-bit and float images map to 8 bits

    @property
    def steps_mode(self) -> bool:
        return self.recipe.steps is not None

    @property
    def total(self) -> int:
        """The length of the cosine schedule, in steps or epochs."""
        return self.recipe.steps if self.steps_mode else self.recipe.epochs


def setup_run(
    data: Path,
    out: Path,
    recipe: TrainRecipe,
    rt: Runtime,
    rank: int,
    world: int,
    state: dict | None,
    online: dict | None,
    workers: int,
    skip_errors: bool,
    reference: bool = False,
    value_range: str = "full",
    train_split: Path | None = None,
    val: tuple[Path, Path | None] | None = None,
) -> tuple[Run, list[tuple[str, str]]]:
    """Items, normalisation, model, optimiser (restored from ``state`` on resume) and loader.

    ``val``: (DIR, SPLITFILE or None) to validate on instead of DATA's test split."""
    train_items, skipped = split_items(
        data, "train", train_split=train_split, skip_errors=skip_errors
    )
    val_items, val_skipped, val_source = validation_items(data, val, train_items, skip_errors)
    vr = image_range(data, train_items, state, online, value_range)
    train_items, val_items = read_with_range(train_items, vr), read_with_range(val_items, vr)
    skipped += val_skipped
    data_fp = fingerprint(Path(data), [p for it in train_items for p in (it.image, it.mask)])
    val_root = Path(data) if val is None else Path(val[0])
    val_fp = fingerprint(val_root, [p for it in val_items for p in (it.image, it.mask)])
    if state is not None:
        for key, now, what, why in (
            ("data_fingerprint", data_fp, f"training files than {data}",
             "its normalisation and batches belong to those"),
            ("val_fingerprint", val_fp, f"validation files than {val_source}",
             "best.pt was chosen on those"),
        ):  # fmt: skip
            recorded = state.get(key)
            if recorded is not None and recorded != now:
                raise UsageError(
                    f"--resume: {out / 'last.pt'} was trained with other {what} ({why}); "
                    "resume on the same data or use a new --out"
                )
        mean, std = state["norm"]["mean"], state["norm"]["std"]
    else:
        mean, std = normalisation(train_items)

    torch.manual_seed(recipe.seed)
    model = build_model(recipe.model, reference=reference)
    n_params = parameter_count(model)
    model = rt.layout(model.to(rt.device))
    opt = make_optimizer(model, recipe)
    epoch, step, best = 0, 0, {}
    if state is not None:
        load_weights(model, state, out / "last.pt")
        opt.load_state_dict(state["optimizer"])
        epoch, step, best = state["epoch"], state.get("step", 0), state.get("best", {})
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None
        )

    regime = (recipe.pos_prob, recipe.augment == "flips")
    if online is not None:
        counts = target_counts(train_items)
        ds = OnlineSynthSet(
            train_items,
            online["bank"],
            online["recipe"],
            mean,
            std,
            recipe.crop,
            recipe.seed,
            counts,
            regime,
        )
        groups = ds.groups()
    else:
        ds = SegmentationSet(
            train_items, mean, std, recipe.crop, recipe.seed, not reference, regime
        )
        groups = [it.group for it in train_items]
    sampler = GroupBatchSampler(
        batch_groups(groups, recipe.group_batches), recipe.batch_size, recipe.seed, rank, world
    )
    # Not persistent: a worker keeps its copy of `ds`, and `ds.epoch` (the crops) changes per
    # epoch, so workers are started anew each epoch.
    loader = DataLoader(
        ds,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=rt.device.type == "cuda",
        persistent_workers=False,
    )
    run = Run(
        recipe, out, rt, rank, world, model, net, opt, ds, sampler, loader, val_items,
        mean, std, n_params, online, epoch, step, recipe.lr, best, data_fp, val_fp,
        val_source, vr,
    )  # fmt: skip
    return run, skipped


def make_optimizer(model: torch.nn.Module, recipe: TrainRecipe) -> torch.optim.Optimizer:
    """Adagrad (the SIRST-5K paper) or Adam with PyTorch's default betas (BasicIRSTD)."""
    if recipe.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=recipe.lr)
    return torch.optim.Adagrad(model.parameters(), lr=recipe.lr)


def validation_items(
    data: Path, val: tuple[Path, Path | None] | None, train_items: list[Item], skip_errors: bool
) -> tuple[list[Item], list[tuple[str, str]], str]:
    """The validation items, the pairs left out, and where they come from (for the log).

    DATA's test split by default (the toolboxes' habit: best.pt is then chosen on the test
    split); ``val`` names a validation split instead, which must share no image name with the
    training items: a generate output keeps its originals' names, so a validation image that
    went into the synthesis is caught too."""
    if val is None:
        items, skipped = split_items(data, "test", skip_errors=skip_errors, required=False)
        return items, skipped, f"{data}'s test split"
    root, split_file = val
    items, skipped = split_items(root, "test", split_file, skip_errors=skip_errors)
    shared = {it.stem for it in train_items} & {it.stem for it in items}
    if shared:
        raise UsageError(
            f"--val: {len(shared)} validation images are also training images (e.g. "
            f"{min(shared)}); validate on images the run does not train on (for a generate "
            "output: generate from a training split without them)"
        )
    return items, skipped, str(root) if split_file is None else f"{split_file} of {root}"


def image_range(
    data: Path, items: list[Item], state: dict | None, online: dict | None, mode: str
) -> tuple[float, float] | None:
    """How the run reads 16-bit and float images: as its checkpoint did on resume; as the data
    were made (a generate output's or the online bank's recorded range); else, with
    ``--range train``, the range of the training images (``full``: the fixed rules)."""
    from sirst_synth.io.bank import bank_range
    from sirst_synth.io.files import value_range_of
    from sirst_synth.io.outdir import recorded_range

    if mode not in RANGE_MODES:
        raise UsageError(f"--range must be one of {', '.join(RANGE_MODES)}, got {mode!r}")
    if state is not None:
        value = state["norm"].get("value_range")
        return tuple(value) if value else None
    recorded = bank_range(online["bank"]) if online is not None else recorded_range(data)
    if recorded is not None:
        return recorded
    return value_range_of([it.image for it in items]) if mode == "train" else None
