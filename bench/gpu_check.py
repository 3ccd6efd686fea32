"""`make gpu-check`: everything a GPU session should measure, in one call of a few minutes.

1. Contact checks (seconds): device placement, bf16 autocast dtype, channels_last, pinned
   memory, and DistributedDataParallel on one process (NCCL on CUDA, gloo on CPU).
2. Step speed (about 2 minutes at most): the paper model and the tiny model, bf16 +
   channels_last, eager and (once per model) torch.compile, batch 64/128/256, images/s and peak
   GPU memory.
3. The study's core arms (reference, plain, sirst5k) on SIRST v1 with the paper model, at a
   number of steps derived from the measured rate so that they fit the time left.

Every result goes into one folder (``--out``): ``gpu_check.json`` and the study's results.
The plan is printed first. ``--smoke --device cpu`` runs the same code at toy sizes, without
torch.compile (a test does), so nothing a CPU could have shown fails on first contact with a
GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Last: the repository for `bench` itself; an installed sirst_synth (with its compiled
# kernels) comes first, not the source tree beside this file.
sys.path.append(str(REPO))


def contact_checks(device: str) -> dict:
    import torch
    import torch.distributed as dist

    from sirst_synth.train.device import runtime
    from sirst_synth.train.loop import train_step
    from sirst_synth.train.model import build_model

    rt = runtime(device, "bf16")
    model = rt.layout(build_model("aff-unet-tiny").to(rt.device))
    x = torch.randn(4, 1, 32, 32)
    pinned = x.pin_memory() if rt.device.type == "cuda" else x
    with torch.no_grad(), rt.autocast():
        out = model(rt.layout(pinned.to(rt.device, non_blocking=True)))[0]
    checks = {
        "device": str(next(model.parameters()).device),
        "autocast_dtype": str(out.dtype),
        "channels_last": next(
            m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)
        ).is_contiguous(memory_format=torch.channels_last),
        "pinned_memory": bool(pinned.is_pinned()) if rt.device.type == "cuda" else None,
    }
    backend = "nccl" if rt.device.type == "cuda" else "gloo"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None
        )
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        y = (torch.rand(4, 1, 32, 32) > 0.98).float()
        loss = train_step(ddp, opt, x, y, torch.arange(4), "off", rt)
        checks["ddp_one_process"] = {"backend": backend, "loss": round(float(loss), 4)}
    finally:
        dist.destroy_process_group()
    return checks


def step_rate(model_name, batch, size, device, compiled, steps, warmup) -> dict:
    import torch

    from sirst_synth.train.device import runtime
    from sirst_synth.train.loop import train_step
    from sirst_synth.train.model import build_model

    rt = runtime(device, "bf16")
    torch.manual_seed(0)
    model = rt.layout(build_model(model_name).to(rt.device))
    net = torch.compile(model) if compiled else model
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    x = torch.randn(batch, 1, size, size, device=rt.device)
    y = (torch.rand(batch, 1, size, size, device=rt.device) > 0.999).float()
    groups = torch.arange(batch, device=rt.device)
    cuda = rt.device.type == "cuda"
    t0 = time.perf_counter()
    for _ in range(warmup):
        train_step(net, opt, x, y, groups, "off", rt)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(net, opt, x, y, groups, "off", rt)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {
        "model": model_name,
        "batch": batch,
        "size": size,
        "compile": compiled,
        "warmup_s": round(warm_s, 1),
        "images_per_s": round(steps * batch / seconds, 1),
        "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
    }


def study_recipe(steps: int, batch: int, model: str, seeds: int):
    from sirst_synth.study import parse_study_recipe

    every = max(steps // 4, 1)
    train = {
        "model": model, "steps": steps, "batch_size": batch, "crop": 128, "lr": 5e-4,
        "optimizer": "adam", "scheduler": "cosine", "pos_prob": 0.5, "augment": "flips",
        "neg_loss": "off", "eval_every_steps": every,
    }  # fmt: skip
    arms = {
        "reference": {"data": "original"},
        "plain": {"data": "original", "train": {"pos_prob": 0.0, "augment": "none"}},
        "sirst5k": {"data": "sirst5k", "train": {"neg_loss": "sum"}},
    }
    data = {"seeds": seeds, "precision": "bf16", "reference": "reference", "train": train,
            "synth": {"alpha": 0.1, "s": 3}, "arms": arms}  # fmt: skip
    return parse_study_recipe(data, "gpu-check")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("gpu-out"))
    ap.add_argument("--data", type=Path, default=REPO / ".gpu-data" / "sirst-v1")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--budget-s", type=float, default=420.0, help="the whole check, seconds")
    ap.add_argument("--smoke", action="store_true", help="toy sizes (a CPU test of the script)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    smoke = args.smoke
    models = ("aff-unet-tiny",) if smoke else ("aff-unet", "aff-unet-tiny")
    batches = (2,) if smoke else (64, 128, 256)
    size, steps, warmup = (32, 2, 1) if smoke else (256, 10, 3)
    seeds = 1 if smoke else 2
    print(
        f"plan: contact checks; step speed of {', '.join(models)} at batch "
        f"{'/'.join(map(str, batches))}, {size} x {size}, bf16 + channels_last, eager and "
        f"compiled (first batch); then the core study arms (reference, plain, sirst5k) x "
        f"{seeds} seeds on {args.data}, steps sized to the {args.budget_s:.0f} s budget; "
        f"everything into {args.out}/",
        flush=True,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"plan_budget_s": args.budget_s}

    def save() -> None:
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")

    report["contact"] = contact_checks(args.device)
    save()
    speed = []
    for model in models:
        for i, batch in enumerate(batches):
            # torch.compile once per model, not at smoke size (no compile in tests)
            for compiled in (False, True) if i == 0 and not smoke else (False,):
                if time.perf_counter() - t_start > 0.3 * args.budget_s:
                    break
                speed.append(step_rate(model, batch, size, args.device, compiled, steps, warmup))
                print(json.dumps(speed[-1]), flush=True)
                save()
    report["speed"] = speed
    save()
    import torch

    if args.device == "cuda" and torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name()
    # the study: the paper model at crop 128 and the largest batch measured
    model = models[0]
    rates = [s for s in speed if s["model"] == model and not s["compile"]]
    if not rates or not (args.data / "images").is_dir():
        report["study"] = "skipped: no rate measured or no data at " + str(args.data)
        save()
        return report
    best = max(rates, key=lambda s: s["images_per_s"])
    rate_128 = best["images_per_s"] * (size / 128) ** 2  # a quarter of the pixels per crop
    left = args.budget_s - (time.perf_counter() - t_start)
    runs = 3 * seeds
    # half of the time left trains (validation, scoring and synthesis take the rest)
    steps_study = max(4, int(0.5 * left * rate_128 / best["batch"] / runs) // 4 * 4)
    if smoke:
        steps_study = 4
    recipe = study_recipe(steps_study, best["batch"], model, seeds)
    report["study_plan"] = {"steps": steps_study, "batch": best["batch"], "runs": runs,
                            "model": model, "seconds_left": round(left)}  # fmt: skip
    print(f"study: {runs} runs of {steps_study} steps of batch {best['batch']}", flush=True)
    save()
    from sirst_synth.study import run_study

    summary = run_study(args.data, None, args.out / "study", recipe, device=args.device, log=print)
    report["study"] = {
        "arms": summary.table,
        "verdicts": {
            c["arm"]: c["all"]["IoU"]["verdict"] for c in summary.comparisons if "IoU" in c["all"]
        },
    }
    report["wall_s"] = round(time.perf_counter() - t_start, 1)
    save()
    return report


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
