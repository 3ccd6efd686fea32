"""GPU throughput of a training step (`make bench-gpu`), for a machine with CUDA.

The paper model (`aff-unet`, 8.77 M parameters) at batch 256, 256x256, bf16 autocast,
channels_last, Adagrad: images/s over timed steps after warm-up, and peak GPU memory. The step
is `sirst_synth.train.loop.train_step`, the one the trainer runs. `--device cpu` with a small
batch checks the script itself where there is no GPU; `--precision fp32` measures without
autocast for comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

# Last: the repository for `bench` itself; an installed sirst_synth (with its compiled
# kernels) comes first, not the source tree beside this file.
sys.path.append(str(Path(__file__).resolve().parents[1]))

from sirst_synth.train.device import PRECISIONS, runtime  # noqa: E402
from sirst_synth.train.loop import train_step  # noqa: E402
from sirst_synth.train.model import build_model, parameter_count  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="aff-unet")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", default="auto", choices=PRECISIONS)
    ap.add_argument("--compile", action="store_true")
    args = ap.parse_args()
    rt = runtime(args.device, args.precision)
    dev = rt.device
    torch.manual_seed(0)
    model = rt.layout(build_model(args.model).to(dev))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    net = torch.compile(model) if args.compile else model
    opt = torch.optim.Adagrad(model.parameters(), lr=0.05)
    x = torch.randn(args.batch, 1, args.size, args.size, device=dev)
    y = (torch.rand(args.batch, 1, args.size, args.size, device=dev) > 0.999).float()
    groups = torch.arange(args.batch, device=dev) // 4
    for _ in range(args.warmup):
        train_step(net, opt, x, y, groups, "sum", rt)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = train_step(net, opt, x, y, groups, "sum", rt)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                "model": args.model,
                "parameters": parameter_count(model),
                "batch": args.batch,
                "size": args.size,
                "bf16": rt.bf16,
                "compile": args.compile,
                "steps": args.steps,
                "images_per_s": round(args.steps * args.batch / elapsed, 1),
                "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
                if dev.type == "cuda"
                else None,
                "final_loss": float(loss),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
