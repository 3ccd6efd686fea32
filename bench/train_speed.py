"""Training speed on this CPU: the whole `train` path against the machine's own peak.

For batch 16 at crop 128 and crop 256, in fp32 and (where the CPU has native bf16) bf16, and
for the reference path (the plain model form, contiguous fp32 layout, decoding every pair at
every step: the path before the fast one) and the fast path, in the same run:

- images/s of ``train()`` on SIRST v1's training split (or demo data), data loading included,
  from the call's wall time (setup and the decode cache included; no validation split);
- the step's GFLOP/s, from the FLOPs of one forward + backward counted once with
  ``torch.utils.flop_counter.FlopCounterMode``;
- that rate's share of a large matmul of the same precision, measured in this run;
- for ``study --jobs``: one run with a thread per core against one 1-thread run per core at
  once (fp32, crop 128), in images/s of the whole group.

Run alone with ``python bench/train_speed.py [STEPS_128] [STEPS_256]``; ``make bench`` runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Last: the repository for `bench` itself; an installed sirst_synth (with its compiled
# kernels) comes first, not the source tree beside this file.
sys.path.append(str(REPO))

SIRST = Path(os.environ.get("SIRST_V1_DIR", REPO.parent / "shared" / "datasets" / "sirst-v1"))
BATCH = 16


def matmul_gflops(bf16: bool, n: int = 2048, repeat: int = 5) -> float:
    import torch

    dtype = torch.bfloat16 if bf16 else torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def step_gflop(crop: int, model: str = "aff-unet-tiny") -> float:
    """FLOPs of one forward + backward of a batch (convolutions and matmuls, as counted)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from sirst_synth.train.losses import deep_supervision_loss
    from sirst_synth.train.model import build_model

    net = build_model(model)
    x = torch.randn(BATCH, 1, crop, crop)
    y = torch.zeros(BATCH, 1, crop, crop)
    with FlopCounterMode(display=False) as counter:
        deep_supervision_loss(net(x), y).mean().backward()
    return counter.get_total_flops() / 1e9


def train_only_copy(source: Path, work: Path) -> Path:
    """The training split of ``source`` as a dataset with no test split (links, no copies),
    so that ``train()`` runs no validation and only the training path is timed."""
    from sirst_synth.io.layouts import open_dataset

    ds = open_dataset(source, skip_errors=True)
    root = work / "train-only"
    for sub in ("images", "masks", "50_50"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for stem in ds.train:
        for kind, path in (("images", ds.image_path(stem)), ("masks", ds.mask_path(stem))):
            (root / kind / f"{stem}{path.suffix}").symlink_to(path.resolve())
    (root / "50_50" / "train.txt").write_text("\n".join(ds.train) + "\n")
    return root


def train_rate(
    data: Path,
    work: Path,
    crop: int,
    steps: int,
    bf16: bool,
    reference: bool,
    narrow_bn: str = "probe",  # what --precision auto runs: the kernel measured faster here
) -> float:
    import torch

    from sirst_synth.recipe import TrainRecipe
    from sirst_synth.train.loop import train

    recipe = TrainRecipe(
        model="aff-unet-tiny", steps=steps, batch_size=BATCH, crop=crop, neg_loss="off"
    )
    out = Path(tempfile.mkdtemp(dir=work))
    torch.manual_seed(0)
    t0 = time.perf_counter()
    res = train(
        data,
        out / "run",
        recipe,
        "cpu",
        "bf16" if bf16 else "fp32",
        reference=reference,
        narrow_bn=narrow_bn,
        skip_errors=True,
    )
    seconds = time.perf_counter() - t0
    assert res.steps == steps
    return steps * BATCH / seconds


def kernel_difference(bf16: bool, narrow: str, other: str = "channels_last") -> dict:
    """One training step of the tiny model with the narrow batch norms run by ``narrow``
    against ``other``, same weights and batch: largest relative difference of the fused
    output, and of the gradients (one norm over all). "compiled" against the stock kernel is
    the check the tests cannot make (they run no torch.compile); "native" (the C kernels, where
    built: batch norm, and spatial attention and upsampling too) is tested against float64 and
    shown here at full size; "contiguous" against the
    stock kernel shows how far two stock kernels' rounding alone moves the same numbers."""
    import torch

    from sirst_synth.train.device import Runtime
    from sirst_synth.train.losses import deep_supervision_loss
    from sirst_synth.train.model import build_model

    torch.manual_seed(0)
    nets = [build_model("aff-unet-tiny") for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    x = torch.randn(BATCH, 1, 128, 128).to(memory_format=torch.channels_last)
    y = (torch.rand(BATCH, 1, 128, 128) > 0.99).float()
    outs, grads = [], []
    for net, kernel in zip(nets, (other, narrow), strict=True):
        rt = Runtime(torch.device("cpu"), bf16, narrow_bn=kernel)
        rt.layout(net)
        with rt.autocast():
            out = net(x)
        deep_supervision_loss(out, y).mean().backward()
        outs.append(out[0].float().detach())
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    return {
        "output_rel": float((outs[1] - outs[0]).abs().max() / outs[0].abs().max()),
        "grad_rel": float((grads[1] - grads[0]).norm() / grads[0].norm()),
    }


def jobs_rate(data: Path, crop: int, steps: int) -> dict:
    """The study's two ways to use this machine's cores, fp32: one run with a thread per core,
    or one 1-thread run per core at once (``study --jobs``). Images/s of the whole group from
    its wall time, process start and setup included."""
    from sirst_synth.train.device import probe_narrow_bn

    cores = len(os.sched_getaffinity(0))
    kernel = probe_narrow_bn(False)  # chosen once, as a study does

    def together(runs: int, threads: int) -> float:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--one-run", str(data)]
        cmd += [str(crop), str(steps), str(threads), kernel]
        t0 = time.perf_counter()
        procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL) for _ in range(runs)]
        codes = [p.wait() for p in procs]
        assert codes == [0] * runs, codes
        return runs * steps * BATCH / (time.perf_counter() - t0)

    one, many = together(1, cores), together(cores, 1)
    return {
        "crop": crop,
        "steps": steps,
        "one_run_threads": cores,
        "one_run_images_per_s": round(one, 1),
        "runs_at_once": cores,
        "runs_at_once_images_per_s": round(many, 1),
        "gain": round(many / one, 2),
        "narrow_bn": kernel,
    }


def _one_run(data: str, crop: str, steps: str, threads: str, kernel: str) -> None:
    import torch

    torch.set_num_threads(int(threads))
    with tempfile.TemporaryDirectory() as tmp:
        train_rate(Path(data), Path(tmp), int(crop), int(steps), False, False, kernel)


def bench_train_speed(results: dict, steps_128: int = 300, steps_256: int = 60) -> None:
    import torch

    from sirst_synth.io.demo_writer import write_demo_dataset
    from sirst_synth.train.device import cpu_flags, has_native_bf16

    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    native = has_native_bf16(cpu_flags())
    precisions = [False, True] if native else [False]
    peak = {bf16: matmul_gflops(bf16) for bf16 in precisions}
    from sirst_synth.train import kernels as c_kernels

    narrow = (
        ("compiled", "native", "contiguous")
        if c_kernels.available()
        else ("compiled", "contiguous")
    )
    for bf16 in precisions:
        results[f"narrow_bn_kernels_{'bf16' if bf16 else 'fp32'}"] = {
            k: kernel_difference(bf16, k) for k in narrow
        }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if (SIRST / "images").is_dir():
            source, label = SIRST, "sirst_v1_train"
        else:
            source, label = work / "demo", "demo"
            write_demo_dataset(source, images=64, seed=0)
        data = train_only_copy(source, work)
        for crop, steps in ((128, steps_128), (256, steps_256)):
            gflop = step_gflop(crop)
            for bf16 in precisions:
                name = "bf16" if bf16 else "fp32"
                row = {"data": label, "batch": BATCH, "crop": crop, "steps": steps}
                for path in ("reference", "fast"):
                    rate = train_rate(data, work, crop, steps, bf16, path == "reference")
                    gflops = rate / BATCH * gflop
                    row[f"{path}_images_per_s"] = round(rate, 1)
                    row[f"{path}_gflops"] = round(gflops, 1)
                    row[f"{path}_share_of_matmul"] = round(gflops / peak[bf16], 3)
                row["speedup"] = round(row["fast_images_per_s"] / row["reference_images_per_s"], 2)
                row["matmul_gflops"] = round(peak[bf16], 1)
                row["step_gflop"] = round(gflop, 2)
                results[f"train_path_{name}_crop{crop}"] = row
        results["study_jobs_fp32_crop128"] = jobs_rate(data, 128, steps_128)
    results["train_path_machine"] = {"cores": cores, "native_bf16": native}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one-run"]:  # one run of jobs_rate's group
        _one_run(*sys.argv[2:])
    else:
        out: dict = {}
        bench_train_speed(out, *[int(a) for a in sys.argv[1:]])
        print(json.dumps(out, indent=1))
