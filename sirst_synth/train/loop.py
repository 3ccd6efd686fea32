"""One readable training loop (no framework): data, model, Soft-IoU + L_Neg, Adagrad or Adam,
the learning rate a pure function of progress.

Device, precision, channels_last and torch.compile are choices of the loop, not the model.
Run under torchrun it uses DistributedDataParallel (gloo on CPU, NCCL on CUDA); rank 0 writes.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from sirst_synth.errors import UsageError
from sirst_synth.io.files import check_folder_path, inside, source_folders, write_text_atomic
from sirst_synth.io.layouts import check_dataset_root, read_split
from sirst_synth.progress import Progress
from sirst_synth.recipe import SynthRecipe, TrainRecipe
from sirst_synth.train.checkpoint import load_checkpoint, resume_state, save_checkpoint, snapshot
from sirst_synth.train.data import batch_groups, online_setup
from sirst_synth.train.device import Runtime, runtime_for
from sirst_synth.train.losses import deep_supervision_loss, group_loss
from sirst_synth.train.model import has_narrow_norm
from sirst_synth.train.schedule import learning_rate
from sirst_synth.train.setup import Run, dist_env, setup_run
from sirst_synth.train.validation import check_finite, epoch_best, step_validation_due, validate


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


def train(*args, **kwargs) -> TrainResult:
    """Train a detector (see ``_train``); rank 0 holds OUT's lock while it writes, so a second
    train into the same folder stops at once with the other's pid."""
    import inspect

    from sirst_synth.io.outdir import locked

    given = inspect.signature(_train).bind(*args, **kwargs).arguments
    # a mistyped DATA, --val or split file is one line before the precision probe
    check_dataset_root(given["data"])
    splits = [given.get("train_split")]
    if given.get("val") is not None:
        check_dataset_root(given["val"][0])
        splits.append(given["val"][1])
    for split in splits:
        if split is not None:
            read_split(Path(split))
    out = Path(given["out"])
    check_folder_path(out, "--out", "for the run")
    reads = [("DATA", f) for f in source_folders(given["data"])]
    if given.get("bank") is not None:
        reads.append(("--bank", Path(given["bank"])))
    for what, root in reads:
        if inside(out, root):  # before the lock creates OUT
            raise UsageError(f"--out {out} lies inside {what} {root}; write the run elsewhere")
    rank, created = dist_env()[0], not out.exists()
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
    value_range: str = "full",
    train_split: Path | None = None,
    narrow_bn: str | None = None,
    val: tuple[Path, Path | None] | None = None,
) -> TrainResult:
    """Train a detector on ``data`` into ``out`` (last.pt, best.pt, metrics.jsonl).

    Epoch mode runs ``recipe.epochs`` passes over the data; steps mode (``recipe.steps``) runs
    exactly that many optimiser steps whatever the data size, so runs on different data are
    compared at equal optimisation (the study's arms). The learning rate is cosine-annealed
    over epochs or steps respectively.

    ``synth="online"``: DATA is a source dataset and every epoch makes fresh development
    samples from ``bank`` in memory (``OnlineSynthSet``), as generate would for that pass.

    ``narrow_bn``: which batch-norm kernel narrow layers use on a CPU (``device.runtime_for``;
    None: measured under ``precision="auto"``, fixed otherwise).

    ``val``: (DIR, SPLITFILE or None) to validate on instead of DATA's test split (best.pt
    is chosen there).

    ``reference``: the slower path of earlier versions (the plain model form, contiguous fp32
    layout, decoding every pair at every step), kept so ``make bench`` can measure both.
    """
    if synth not in ("offline", "online"):
        raise UsageError(f"--synth must be offline or online, got {synth!r}")
    if synth == "online" and bank is None:
        raise UsageError("--synth online needs --bank BANK (the noise bank of DATA)")
    if synth == "offline" and bank is not None:
        raise UsageError("--bank goes with --synth online (a generate output has its samples)")
    if synth == "offline" and synth_recipe is not None:
        raise UsageError(
            "a synthesis recipe (--alpha, --s, ...) goes with --synth online; offline, the "
            "samples are already in DATA"
        )
    progress = progress or Progress()
    out = Path(out)
    rank, world, local_rank = dist_env()
    own_group = world > 1 and not dist.is_initialized()
    if own_group:
        dist.init_process_group("nccl" if device != "cpu" and torch.cuda.is_available() else "gloo")
    online = None  # OUT's place was checked by train() before it took the lock
    if synth == "online":
        online = online_setup(data, Path(bank), synth_recipe or SynthRecipe(), train_split)
    state = resume_state(out, recipe, resume)
    rt, why = runtime_for(
        device, precision, local_rank, state, out, narrow_bn, has_narrow_norm(recipe.model)
    )
    if rt.device.type == "cuda":
        torch.cuda.set_device(rt.device)
    log(f"precision {rt.precision} ({why}); narrow batch norm: {rt.narrow_bn}")
    if state is not None and state.get("synth") != (online and online["identity"]):
        raise UsageError(
            f"--resume: {out / 'last.pt'} was trained with other synthesis "
            "(--synth, the recipe or the bank differ); use a new --out"
        )
    if reference:  # the path before the fast model and layout (make bench compares the two)
        rt = Runtime(rt.device, rt.bf16, channels_last=rt.bf16)
    run, skipped = setup_run(
        data, out, recipe, rt, rank, world, state, online, workers, skip_errors, reference,
        value_range, train_split, val,
    )  # fmt: skip
    if run.value_range is not None:
        lo, hi = run.value_range
        log(f"16-bit and float images read as {lo:g}..{hi:g} -> 0..255 (--range train)")
    if compile_model:
        run.net = torch.compile(run.net)
    if rank == 0:
        _open_metrics(run, state is not None)
    log(
        f"model {recipe.model}: {run.n_params:,} parameters; {len(run.ds)} training samples "
        f"per epoch, {len(run.val_items)} validation ({run.val_source}); device {rt.device}"
    )
    if val is None and run.val_items:
        log("best.pt is chosen on that test split; pass --val for a validation split")

    start_epoch, end_epoch = run.epoch, _end_epoch(run, stop_after)
    history, rate, loss_value = [], 0.0, float("nan")
    progress.start("training", max(end_epoch - start_epoch, 0))
    for epoch in range(start_epoch, end_epoch):
        row = _train_epoch(run, epoch, history)
        loss_value, rate = row["loss"], row["images_per_s"]
        run.epoch = epoch + 1
        if rank == 0:
            if not run.steps_mode:
                epoch_best(run, row)
            _save(run, last=True, best=bool(row.get("best")))
            _write_row(run, row)
        history.append(row)
        progress.advance()
    progress.stop()
    if rank == 0 and not run.best and (out / "last.pt").exists():
        # no validation chose a model: best.pt is the final one (not one left by an earlier
        # attempt that stopped, nor the end of a run this one continued)
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


def _open_metrics(run: Run, resumed: bool) -> None:
    """metrics.jsonl: a resumed run keeps the rows up to its checkpoint (a killed run may have
    logged past it), a new run starts it empty."""
    run.out.mkdir(parents=True, exist_ok=True)
    path, kept = run.out / "metrics.jsonl", []
    if resumed and path.is_file():
        rows = [(ln, json.loads(ln)) for ln in path.read_text().splitlines()]
        kept = [ln for ln, r in rows if r.get("step", 0) <= run.step and r["epoch"] <= run.epoch]
    write_text_atomic(path, "".join(ln + "\n" for ln in kept))


def _end_epoch(run: Run, stop_after: int | None) -> int:
    """The epoch to stop before: the recipe's epochs, or enough to reach its steps."""
    if run.steps_mode:
        per_epoch = max(len(run.sampler), 1)
        end = run.epoch + -(-(run.recipe.steps - run.step) // per_epoch)
    else:
        end = run.recipe.epochs
    return end if stop_after is None else min(end, run.epoch + stop_after)


def _train_epoch(run: Run, epoch: int, history: list[dict]) -> dict:
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
        if run.steps_mode and run.rank == 0 and step_validation_due(run):
            check_finite(run, bad, loss_sum)
            row = {"epoch": epoch + 1, "step": run.step}
            validate(run, row)
            _save(run, last=False, best=bool(row.get("best")))  # these weights, not the epoch's end
            _write_row(run, row)
            history.append(row)
    if run.world > 1:
        # DDP syncs gradients, not BatchNorm statistics: give every rank rank 0's buffers.
        for buf in run.model.buffers():
            dist.broadcast(buf, 0)
    check_finite(run, bad, loss_sum)
    loss = float(loss_sum) / max(n, 1)  # one device sync per epoch, not per step
    rate = seen * run.world / max(time.perf_counter() - t0, 1e-9)
    return {
        "epoch": epoch + 1,
        "step": run.step,
        "loss": loss,
        "lr": run.lr,
        "images_per_s": rate,
        "precision": run.rt.precision,
        "narrow_bn": run.rt.narrow_bn,
    }


def _save(run: Run, last: bool, best: bool) -> None:
    """The one place checkpoints are written: last.pt at an epoch's end, best.pt when the
    validation just done is the best (both from one snapshot)."""
    if not (last or best):
        return
    state = snapshot(run)
    if last:
        save_checkpoint(run.out / "last.pt", state)
    if best:
        save_checkpoint(run.out / "best.pt", state)


def _write_row(run: Run, row: dict) -> None:
    with open(run.out / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")
