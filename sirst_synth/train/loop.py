"""One readable training loop (no framework): data, model, Soft-IoU + L_Neg, Adagrad, cosine.

Device, precision, channels_last and torch.compile are choices of the loop, not the model.
Run under torchrun it uses DistributedDataParallel (gloo on CPU, NCCL on CUDA); rank 0 writes.
"""

from __future__ import annotations

import dataclasses
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
from sirst_synth.io.files import inside, read_mask, write_text_atomic
from sirst_synth.io.samples import check_items, split_items
from sirst_synth.progress import Progress
from sirst_synth.recipe import SynthRecipe, TrainRecipe
from sirst_synth.targets import components
from sirst_synth.train.checkpoint import load_checkpoint, load_weights, save_checkpoint
from sirst_synth.train.data import GroupBatchSampler, OnlineSynthSet, SegmentationSet, normalisation
from sirst_synth.train.device import Runtime, runtime
from sirst_synth.train.infer import evaluate_items
from sirst_synth.train.losses import deep_supervision_loss, group_loss
from sirst_synth.train.model import build_model, parameter_count
from sirst_synth.train.schedule import cosine_lr


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


def _resume_state(out: Path, recipe: TrainRecipe, resume: bool) -> dict | None:
    """The state of ``out/last.pt`` to continue from, after checking it is the same run.

    Lengths (epochs, steps) and validation frequencies may change on resume: the learning
    rate is a pure function of progress and length, so the run continues on the new curve.
    """
    last = out / "last.pt"
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the run")
    if not resume:
        if last.exists():
            raise UsageError(
                f"--out {out} already holds a run; pass --resume or choose a new folder"
            )
        return None
    if not last.is_file():
        raise UsageError(f"--resume: {last} not found; start without --resume")
    state = load_checkpoint(last)
    try:
        old = TrainRecipe(**state["recipe"])
    except (TypeError, UsageError):
        raise DataError(
            f"{last}: its recipe is not one this version reads; use a new --out"
        ) from None
    free = ("epochs", "steps", "eval_every", "eval_every_steps")
    diff = [
        f.name
        for f in dataclasses.fields(TrainRecipe)
        if getattr(old, f.name) != getattr(recipe, f.name) and f.name not in free
    ]
    if (old.steps is None) != (recipe.steps is None):
        diff.append("steps (a run counts epochs or steps, not both)")
    if diff:
        raise UsageError(
            f"--resume: the recipe differs from {last} in {', '.join(diff)}; use a new --out"
        )
    return state


def _online_setup(data: Path, bank_path: Path, synth_recipe: SynthRecipe) -> dict:
    """The bank and recipe of online synthesis, checked against DATA before any training."""
    from sirst_synth.io.bank import read_bank_index
    from sirst_synth.io.files import fingerprint
    from sirst_synth.io.layouts import open_dataset, source_files
    from sirst_synth.io.manifest import MANIFEST

    if (Path(data) / MANIFEST).is_file():
        raise UsageError(
            f"{data} is a generate output; --synth online synthesises from the source dataset: "
            "pass that instead"
        )
    bank = read_bank_index(bank_path)
    ds = open_dataset(data)
    if bank.attrs.get("fingerprint") != fingerprint(ds.root, source_files(ds, ds.train)):
        raise DataError(
            f"{bank_path}: bank was built from other training files than {data}; rebuild it "
            "with build-noise-bank from this dataset"
        )
    identity = {
        "mode": "online",
        "recipe": dataclasses.asdict(synth_recipe),
        "bank_fingerprint": bank.attrs.get("fingerprint"),
    }
    return {"bank": bank, "recipe": synth_recipe, "identity": identity}


def train(
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
) -> TrainResult:
    """Train a detector on ``data`` into ``out`` (last.pt, best.pt, metrics.jsonl).

    Epoch mode runs ``recipe.epochs`` passes over the data; steps mode (``recipe.steps``) runs
    exactly that many optimiser steps whatever the data size, so runs on different data are
    compared at equal optimisation (the study's arms). The learning rate is cosine-annealed
    over epochs or steps respectively.

    ``synth="online"``: DATA is a source dataset and every epoch makes fresh development
    samples from ``bank`` in memory (``OnlineSynthSet``), as generate would for that pass.
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
        backend = "nccl" if device != "cpu" and torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    rt = runtime(device, precision, local_rank)
    dev = rt.device
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    for what, root in (("DATA", data), ("--bank", bank)):
        if root is not None and inside(out, root):
            raise UsageError(f"--out {out} lies inside {what} {root}; write the run elsewhere")
    online = None
    if synth == "online":
        online = _online_setup(data, Path(bank), synth_recipe or SynthRecipe())
    state = _resume_state(out, recipe, resume)
    if state is not None and state.get("synth") != (online and online["identity"]):
        raise UsageError(
            f"--resume: {out / 'last.pt'} was trained with other synthesis "
            "(--synth, the recipe or the bank differ); use a new --out"
        )
    last = out / "last.pt"

    train_items, skipped = check_items(split_items(data, "train"), skip_errors)
    try:
        val_items = split_items(data, "test")
    except DataError:
        val_items = []
    val_items, val_skipped = check_items(val_items, skip_errors)
    skipped += val_skipped
    if state is not None:
        mean, std = state["norm"]["mean"], state["norm"]["std"]
    else:
        mean, std = normalisation(train_items)

    torch.manual_seed(recipe.seed)
    model = build_model(recipe.model)
    n_params = parameter_count(model)
    model = rt.layout(model.to(dev))
    opt = torch.optim.Adagrad(model.parameters(), lr=recipe.lr)
    start_epoch, step, best = 0, 0, {}
    if state is not None:
        load_weights(model, state, last)
        opt.load_state_dict(state["optimizer"])
        start_epoch, best = state["epoch"], state.get("best", {})
        step = state.get("step", 0)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    if compile_model:
        net = torch.compile(net)

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
        )
        groups = ds.groups()
    else:
        ds = SegmentationSet(train_items, mean, std, recipe.crop, recipe.seed)
        groups = [it.group for it in train_items]
    sampler = GroupBatchSampler(groups, recipe.batch_size, recipe.seed, rank, world)
    # Not persistent: a worker keeps its copy of `ds`, and `ds.epoch` (the crops) changes per
    # epoch, so workers are started anew each epoch.
    loader = DataLoader(
        ds,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=dev.type == "cuda",
        persistent_workers=False,
    )
    metrics_path = out / "metrics.jsonl"
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        kept = []
        if state is not None and metrics_path.is_file():
            rows = [(ln, json.loads(ln)) for ln in metrics_path.read_text().splitlines()]
            kept = [ln for ln, r in rows if r.get("step", 0) <= step and r["epoch"] <= start_epoch]
        write_text_atomic(metrics_path, "".join(ln + "\n" for ln in kept))
    log(
        f"model {recipe.model}: {n_params:,} parameters; {len(train_items)} training images, "
        f"{len(val_items)} validation; device {dev}"
    )

    def validate(row: dict) -> None:
        nonlocal best
        totals, _ = evaluate_items(model, val_items, mean, std, rt, recipe.threshold)
        summary = totals.summary()
        scores = {k: summary[k] for k in ("IoU", "nIoU", "Pd", "Fa")}
        row.update(scores)
        if not best or scores["IoU"] > best.get("IoU", -1):
            best = {"epoch": row["epoch"], "step": row["step"], **scores}
            row["best"] = True

    def snapshot(epochs_done: int) -> dict:
        return {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": {
                "name": "cosine",
                "done": step if steps_mode else epochs_done,
                "total": total,
            },
            "epoch": epochs_done,
            "step": step,
            "recipe": dataclasses.asdict(recipe),
            "synth": online and online["identity"],
            "norm": {"mean": mean, "std": std},
            "version": __version__,
            "best": best,
            "parameters": n_params,
        }

    def write_row(row: dict) -> None:
        with open(metrics_path, "a") as fh:
            fh.write(json.dumps(row) + "\n")

    steps_mode = recipe.steps is not None
    total = recipe.steps if steps_mode else recipe.epochs
    if steps_mode:
        per_epoch = len(sampler)
        end_epoch = start_epoch + -(-(recipe.steps - step) // max(per_epoch, 1))
    else:
        end_epoch = recipe.epochs
    if stop_after is not None:
        end_epoch = min(end_epoch, start_epoch + stop_after)
    history, rate, loss_value, lr = [], 0.0, float("nan"), recipe.lr
    progress.start("training", max(end_epoch - start_epoch, 0))
    for epoch in range(start_epoch, end_epoch):
        if online is not None:
            ds.set_epoch(epoch)
            sampler.set_groups(ds.groups())
        ds.epoch = sampler.epoch = epoch
        net.train()
        t0, seen, n, loss_sum = time.perf_counter(), 0, 0, torch.zeros((), device=dev)
        for x, y, g in loader:
            if steps_mode and step >= recipe.steps:
                break
            lr = cosine_lr(recipe.lr, step if steps_mode else epoch, total)
            for group in opt.param_groups:
                group["lr"] = lr
            loss_sum += train_step(net, opt, x, y, g, recipe.neg_loss, rt)
            step, n, seen = step + 1, n + 1, seen + x.shape[0]
            if (
                steps_mode
                and rank == 0
                and val_items
                and (
                    step == recipe.steps
                    or (recipe.eval_every_steps and step % recipe.eval_every_steps == 0)
                )
            ):
                row = {"epoch": epoch + 1, "step": step}
                validate(row)
                if row.get("best"):  # these weights, not the epoch's end
                    save_checkpoint(out / "best.pt", snapshot(epoch))
                write_row(row)
                history.append(row)
        if world > 1:
            # DDP syncs gradients, not BatchNorm statistics: give every rank rank 0's buffers.
            for buf in model.buffers():
                dist.broadcast(buf, 0)
        loss_value = float(loss_sum) / max(n, 1)  # one device sync per epoch, not per step
        rate = seen * world / max(time.perf_counter() - t0, 1e-9)
        row = {"epoch": epoch + 1, "step": step, "loss": loss_value, "lr": lr, "images_per_s": rate}
        if rank == 0 and not steps_mode:
            if val_items and ((epoch + 1) % recipe.eval_every == 0 or epoch + 1 == recipe.epochs):
                validate(row)
            elif not val_items and (not best or loss_value < best.get("loss", float("inf"))):
                best = {"epoch": epoch + 1, "step": step, "loss": loss_value}
                row["best"] = True
        history.append(row)
        if rank == 0:
            save_checkpoint(last, snapshot(epoch + 1))
            if row.get("best"):
                save_checkpoint(out / "best.pt", snapshot(epoch + 1))
            write_row(row)
        progress.advance()
    progress.stop()
    if rank == 0 and not (out / "best.pt").exists() and last.exists():
        save_checkpoint(out / "best.pt", load_checkpoint(last))
    final = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if own_group:
        dist.barrier()
        dist.destroy_process_group()
    return TrainResult(
        out,
        n_params,
        end_epoch - start_epoch,
        end_epoch,
        rate,
        loss_value,
        best,
        history,
        final,
        skipped,
        step,
    )
