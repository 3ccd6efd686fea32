"""One readable training loop (no framework): data, model, Soft-IoU + L_Neg, Adagrad or Adam,
the learning rate a pure function of progress.

Device, precision, channels_last and torch.compile are choices of the loop, not the model.
Run under torchrun it uses DistributedDataParallel (gloo on CPU, NCCL on CUDA); rank 0 writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from sirst_synth import __version__
from sirst_synth.errors import DataError, UsageError
from sirst_synth.io.files import fingerprint, inside, read_mask, write_text_atomic
from sirst_synth.io.samples import Item, check_items, split_items
from sirst_synth.progress import Progress
from sirst_synth.recipe import SynthRecipe, TrainRecipe, recipe_dict
from sirst_synth.targets import components
from sirst_synth.train.checkpoint import (
    load_checkpoint,
    load_weights,
    resume_state,
    save_checkpoint,
)
from sirst_synth.train.data import (
    GroupBatchSampler,
    OnlineSynthSet,
    SegmentationSet,
    batch_groups,
    normalisation,
    online_setup,
)
from sirst_synth.train.device import Runtime, runtime_for
from sirst_synth.train.infer import evaluate_items
from sirst_synth.train.losses import deep_supervision_loss, group_loss
from sirst_synth.train.model import build_model, parameter_count
from sirst_synth.train.schedule import learning_rate


@dataclass
class TrainResult:
    out: Path
    parameters: int
    epochs_run: int
    last_epoch: int
    images_per_s: float
    final_loss: float
    best: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list, repr=False)  # metrics.jsonl holds it
    state: dict = field(default_factory=dict, repr=False)  # final weights (every rank)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    steps: int = 0  # optimiser steps taken in total (including before a resume)


def _dist_env() -> tuple[int, int, int]:
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def train_step(
    net: torch.nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    groups: torch.Tensor,
    neg_loss: str,
    rt: Runtime,
) -> torch.Tensor:
    """One optimisation step in the runtime's precision and layout (the loss is fp32).

    Shared by the loop and the benchmarks, so what is timed is what trains.
    """
    x = rt.layout(x.to(rt.device, non_blocking=True))
    y, groups = y.to(rt.device, non_blocking=True), groups.to(rt.device)
    with rt.autocast():
        outputs = net(x)
    loss = group_loss(deep_supervision_loss(outputs, y), groups, neg_loss)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


@dataclass
class _Run:
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

    @property
    def steps_mode(self) -> bool:
        return self.recipe.steps is not None

    @property
    def total(self) -> int:
        """The length of the cosine schedule, in steps or epochs."""
        return self.recipe.steps if self.steps_mode else self.recipe.epochs


def train(*args, **kwargs) -> TrainResult:
    """Train a detector (see ``_train``); rank 0 holds OUT's lock while it writes, so a second
    train into the same folder stops at once with the other's pid."""
    import inspect

    from sirst_synth.io.outdir import locked

    given = inspect.signature(_train).bind(*args, **kwargs).arguments
    out = Path(given["out"])
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the run")
    for what, root in (("DATA", given["data"]), ("--bank", given.get("bank"))):
        if root is not None and inside(out, root):  # before the lock creates OUT
            raise UsageError(f"--out {out} lies inside {what} {root}; write the run elsewhere")
    rank, created = _dist_env()[0], not out.exists()
    try:
        with locked(out, "train") if rank == 0 else contextlib.nullcontext():
            return _train(*args, **kwargs)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # refused before writing anything: leave no empty folder behind
        raise


def _train(
    data: Path,
    out: Path,
    recipe: TrainRecipe,
    device: str = "auto",
    precision: str = "auto",
    workers: int = 0,
    resume: bool = False,
    compile_model: bool = False,
    stop_after: int | None = None,
    skip_errors: bool = False,
    progress: Progress | None = None,
    log=lambda msg: None,
    synth: str = "offline",
    bank: Path | None = None,
    synth_recipe: SynthRecipe | None = None,
    reference: bool = False,
) -> TrainResult:
    """Train a detector on ``data`` into ``out`` (last.pt, best.pt, metrics.jsonl).

    Epoch mode runs ``recipe.epochs`` passes over the data; steps mode (``recipe.steps``) runs
    exactly that many optimiser steps whatever the data size, so runs on different data are
    compared at equal optimisation (the study's arms). The learning rate is cosine-annealed
    over epochs or steps respectively.

    ``synth="online"``: DATA is a source dataset and every epoch makes fresh development
    samples from ``bank`` in memory (``OnlineSynthSet``), as generate would for that pass.

    ``reference``: the slower path of earlier versions (the plain model form, contiguous fp32
    layout, decoding every pair at every step), kept so ``make bench`` can measure both.
    """
    if synth not in ("offline", "online"):
        raise UsageError(f"--synth must be offline or online, got {synth!r}")
    if synth == "online" and bank is None:
        raise UsageError("--synth online needs --bank BANK (the noise bank of DATA)")
    if synth == "offline" and bank is not None:
        raise UsageError("--bank goes with --synth online (a generate output has its samples)")
    progress = progress or Progress()
    out = Path(out)
    rank, world, local_rank = _dist_env()
    own_group = world > 1 and not dist.is_initialized()
    if own_group:
        dist.init_process_group("nccl" if device != "cpu" and torch.cuda.is_available() else "gloo")
    online = None  # OUT's place was checked by train() before it took the lock
    if synth == "online":
        online = online_setup(data, Path(bank), synth_recipe or SynthRecipe())
    state = resume_state(out, recipe, resume)
    rt, why = runtime_for(device, precision, local_rank, state, out)
    if rt.device.type == "cuda":
        torch.cuda.set_device(rt.device)
    log(f"precision {rt.precision} ({why})")
    if state is not None and state.get("synth") != (online and online["identity"]):
        raise UsageError(
            f"--resume: {out / 'last.pt'} was trained with other synthesis "
            "(--synth, the recipe or the bank differ); use a new --out"
        )
    if reference:  # the path before the fast model and layout (make bench compares the two)
        rt = Runtime(rt.device, rt.bf16, channels_last=rt.bf16)
    run, skipped = _setup(
        data, out, recipe, rt, rank, world, state, online, workers, skip_errors, reference
    )
    if compile_model:
        run.net = torch.compile(run.net)
    if rank == 0:
        _open_metrics(run, state is not None)
    log(
        f"model {recipe.model}: {run.n_params:,} parameters; {len(run.ds)} training samples "
        f"per epoch, {len(run.val_items)} validation; device {rt.device}"
    )

    start_epoch, end_epoch = run.epoch, _end_epoch(run, stop_after)
    history, rate, loss_value = [], 0.0, float("nan")
    progress.start("training", max(end_epoch - start_epoch, 0))
    for epoch in range(start_epoch, end_epoch):
        row = _train_epoch(run, epoch, history)
        loss_value, rate = row["loss"], row["images_per_s"]
        run.epoch = epoch + 1
        if rank == 0:
            if not run.steps_mode:
                _epoch_best(run, row)
            _save(run, last=True, best=bool(row.get("best")))
            _write_row(run, row)
        history.append(row)
        progress.advance()
    progress.stop()
    if rank == 0 and not (out / "best.pt").exists() and (out / "last.pt").exists():
        save_checkpoint(out / "best.pt", load_checkpoint(out / "last.pt"))
    final = {k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()}
    if own_group:
        dist.barrier()
        dist.destroy_process_group()
    return TrainResult(
        out,
        run.n_params,
        end_epoch - start_epoch,
        end_epoch,
        rate,
        loss_value,
        run.best,
        history,
        final,
        skipped,
        run.step,
    )


def _setup(
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
) -> tuple[_Run, list[tuple[str, str]]]:
    """Items, normalisation, model, optimiser (restored from ``state`` on resume) and loader."""
    train_items, skipped = check_items(split_items(data, "train"), skip_errors)
    try:
        val_items = split_items(data, "test")
    except DataError:
        val_items = []
    val_items, val_skipped = check_items(val_items, skip_errors)
    skipped += val_skipped
    data_fp = fingerprint(Path(data), [p for it in train_items for p in (it.image, it.mask)])
    if state is not None:
        recorded = state.get("data_fingerprint")
        if recorded is not None and recorded != data_fp:
            raise UsageError(
                f"--resume: {out / 'last.pt'} was trained on other training files than {data} "
                "(its normalisation and batches belong to those); resume on the same data or "
                "use a new --out"
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
        counts = [components(read_mask(it.mask)).count for it in train_items]
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
    run = _Run(
        recipe, out, rt, rank, world, model, net, opt, ds, sampler, loader, val_items,
        mean, std, n_params, online, epoch, step, recipe.lr, best, data_fp,
    )  # fmt: skip
    return run, skipped


def make_optimizer(model: torch.nn.Module, recipe: TrainRecipe) -> torch.optim.Optimizer:
    """Adagrad (the SIRST-5K paper) or Adam with PyTorch's default betas (BasicIRSTD)."""
    if recipe.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=recipe.lr)
    return torch.optim.Adagrad(model.parameters(), lr=recipe.lr)


def _open_metrics(run: _Run, resumed: bool) -> None:
    """metrics.jsonl: a resumed run keeps the rows up to its checkpoint (a killed run may have
    logged past it), a new run starts it empty."""
    run.out.mkdir(parents=True, exist_ok=True)
    path, kept = run.out / "metrics.jsonl", []
    if resumed and path.is_file():
        rows = [(ln, json.loads(ln)) for ln in path.read_text().splitlines()]
        kept = [ln for ln, r in rows if r.get("step", 0) <= run.step and r["epoch"] <= run.epoch]
    write_text_atomic(path, "".join(ln + "\n" for ln in kept))


def _end_epoch(run: _Run, stop_after: int | None) -> int:
    """The epoch to stop before: the recipe's epochs, or enough to reach its steps."""
    if run.steps_mode:
        per_epoch = max(len(run.sampler), 1)
        end = run.epoch + -(-(run.recipe.steps - run.step) // per_epoch)
    else:
        end = run.recipe.epochs
    return end if stop_after is None else min(end, run.epoch + stop_after)


def _train_epoch(run: _Run, epoch: int, history: list[dict]) -> dict:
    """One pass of the loader (cut at the recipe's steps in steps mode); the epoch's row.
    In steps mode validation happens here, every ``eval_every_steps`` and at the last step."""
    if run.online is not None:
        run.ds.set_epoch(epoch)
        run.sampler.set_groups(batch_groups(run.ds.groups(), run.recipe.group_batches))
    run.ds.epoch = run.sampler.epoch = epoch
    run.net.train()
    t0, seen, n = time.perf_counter(), 0, 0
    loss_sum = torch.zeros((), device=run.rt.device)
    # the first step whose loss was not finite, kept on the device: no host sync per step
    bad = torch.full((), -1, dtype=torch.long, device=run.rt.device)
    for x, y, g in run.loader:
        if run.steps_mode and run.step >= run.recipe.steps:
            break
        r = run.recipe
        done = run.step if run.steps_mode else epoch
        run.lr = learning_rate(r.lr, done, run.total, r.scheduler, r.milestones, r.gamma, r.warmup)
        for group in run.opt.param_groups:
            group["lr"] = run.lr
        loss = train_step(run.net, run.opt, x, y, g, run.recipe.neg_loss, run.rt)
        loss_sum += loss
        bad = torch.where((bad < 0) & ~torch.isfinite(loss), run.step + 1, bad)
        run.step, n, seen = run.step + 1, n + 1, seen + x.shape[0]
        if run.steps_mode and run.rank == 0 and _step_validation_due(run):
            _check_finite(run, bad, loss_sum)
            row = {"epoch": epoch + 1, "step": run.step}
            _validate(run, row)
            _save(run, last=False, best=bool(row.get("best")))  # these weights, not the epoch's end
            _write_row(run, row)
            history.append(row)
    if run.world > 1:
        # DDP syncs gradients, not BatchNorm statistics: give every rank rank 0's buffers.
        for buf in run.model.buffers():
            dist.broadcast(buf, 0)
    _check_finite(run, bad, loss_sum)
    loss = float(loss_sum) / max(n, 1)  # one device sync per epoch, not per step
    rate = seen * run.world / max(time.perf_counter() - t0, 1e-9)
    return {
        "epoch": epoch + 1,
        "step": run.step,
        "loss": loss,
        "lr": run.lr,
        "images_per_s": rate,
        "precision": run.rt.precision,
    }


class TrainingDiverged(DataError):
    """The loss stopped being a number: the run stops, and nothing of it is saved as best."""


def _check_finite(run: _Run, bad: torch.Tensor, loss_sum: torch.Tensor) -> None:
    """One host sync, at validation and at the end of an epoch: before anything is saved."""
    step = int(bad)
    weights = all(bool(torch.isfinite(p).all()) for p in run.model.parameters())
    if step >= 0 or not torch.isfinite(loss_sum) or not weights:
        where = (
            f"the loss was not finite at step {step}"
            if step >= 0
            else (f"the weights were not finite by step {run.step}")
        )
        raise TrainingDiverged(
            f"{run.out}: training diverged: {where} (lr {run.lr:g}); lower --lr, or check the "
            "training images; nothing was saved after the last finite checkpoint"
        )


def _step_validation_due(run: _Run) -> bool:
    """Every ``eval_every_steps``, and at 25, 50, 75 and 100% of the steps whatever it is, so
    every run shows whether it had flattened."""
    every, steps = run.recipe.eval_every_steps, run.recipe.steps
    quarter = any(run.step == -(-steps * q // 4) for q in (1, 2, 3, 4))
    return bool(run.val_items) and (quarter or bool(every and run.step % every == 0))


def _epoch_best(run: _Run, row: dict) -> None:
    """Epoch mode: validate when due; without a validation split the lowest loss is best."""
    due = (row["epoch"]) % run.recipe.eval_every == 0 or row["epoch"] == run.recipe.epochs
    if run.val_items and due:
        _validate(run, row)
    elif not run.val_items and row["loss"] < run.best.get("loss", float("inf")):
        run.best = {"epoch": row["epoch"], "step": row["step"], "loss": row["loss"]}
        row["best"] = True


def _validate(run: _Run, row: dict) -> None:
    """Score the validation split into ``row``; mark it best when its IoU is the highest yet."""
    totals, _ = evaluate_items(
        run.model, run.val_items, run.mean, run.std, run.rt, run.recipe.threshold
    )
    summary = totals.summary()
    scores = {k: summary[k] for k in ("IoU", "nIoU", "Pd", "Fa")}
    row.update(scores)
    if not run.best or scores["IoU"] > run.best.get("IoU", -1):
        run.best = {"epoch": row["epoch"], "step": row["step"], **scores}
        row["best"] = True


def _snapshot(run: _Run) -> dict:
    """A checkpoint of the run as it stands (``run.epoch`` epochs and ``run.step`` steps done)."""
    return {
        "model": run.model.state_dict(),
        "optimizer": run.opt.state_dict(),
        "scheduler": {
            "name": run.recipe.scheduler,
            "done": run.step if run.steps_mode else run.epoch,
            "total": run.total,
        },
        "epoch": run.epoch,
        "step": run.step,
        "recipe": recipe_dict(run.recipe),
        "synth": run.online and run.online["identity"],
        "norm": {"mean": run.mean, "std": run.std},
        "version": __version__,
        "best": run.best,
        "parameters": run.n_params,
        "precision": run.rt.precision,
        "data_fingerprint": run.data_fingerprint,
    }


def _save(run: _Run, last: bool, best: bool) -> None:
    """The one place checkpoints are written: last.pt at an epoch's end, best.pt when the
    validation just done is the best (both from one snapshot)."""
    if not (last or best):
        return
    snapshot = _snapshot(run)
    if last:
        save_checkpoint(run.out / "last.pt", snapshot)
    if best:
        save_checkpoint(run.out / "best.pt", snapshot)


def _write_row(run: _Run, row: dict) -> None:
    with open(run.out / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")
