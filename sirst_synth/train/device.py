"""Where tensors run and in what precision: the one place that decides autocast and layout.

``bf16`` means bf16 autocast; ``fp32`` means none. Both run channels_last weights and inputs
(on CPU, oneDNN's convolutions are 2-6x faster in channels_last than contiguous for this
model's narrow layers, in fp32 too). ``auto`` picks bf16 on CUDA; on a CPU, bf16 only where
the CPU has native bf16 (AVX512_BF16 or AMX) and a short probe measured it faster than fp32:
a CPU without native bf16 emulates it, several times slower. Keeping the choice apart from the
device lets the CUDA configuration run, and be tested, on a CPU.

A choice made by the probe depends on the machine and its load, so a run records the
precision it resolved to, and a resumed run reuses it instead of probing again. Under ``auto``
the run also measures which batch-norm kernel is faster for narrow layers (``narrow_bn``);
an asked-for precision keeps the fixed kernel, so that two fresh runs of one command on one
machine give the same numbers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch

from sirst_synth.errors import UsageError
from sirst_synth.names import PRECISIONS

#: CPU flags (``/proc/cpuinfo``) of native bf16 arithmetic.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: How batch norm runs on narrow (under 16 channels) channels_last inputs: through the
#: contiguous kernel with two layout copies, or in channels_last. Which is faster depends on
#: the CPU: on a Sapphire Rapids Xeon the channels_last kernel was 4-5x slower at 8 channels; on
#: a Zen 4 EPYC it is the faster one (in bf16 3x, layout copies included), a kernel
#: torch.compile generates for the shape is faster still, and the project's C kernel
#: ("native", ``kernels``) as fast in a bf16 step and faster in fp32, with no compilation at
#: the start of a run (``model.BatchNorm2d``). "native" also runs the model's spatial
#: attention and bilinear upsampling in training through the project's C (4-8x faster than
#: the stock ops on a CPU): the choice names how the run's kernels round, so it is one name.
NARROW_BN = ("contiguous", "channels_last", "compiled", "native")

T = TypeVar("T", torch.Tensor, torch.nn.Module)


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    bf16: bool
    channels_last: bool = True
    narrow_bn: str = "contiguous"  # one of NARROW_BN; chosen per machine (probe_narrow_bn)

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def layout(self, t: T) -> T:
        """channels_last (a model or a 4-D batch), unless this runtime keeps the contiguous
        layout (the reference path of the benchmarks). A model's narrow batch norms are told
        which kernel to run (``narrow_bn``)."""
        if isinstance(t, torch.nn.Module):
            for m in t.modules():
                if hasattr(m, "narrow"):
                    m.narrow = self.narrow_bn
        return t.to(memory_format=torch.channels_last) if self.channels_last else t


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available; use --device cpu")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (empty where the kernel does not list them)."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def has_native_bf16(flags: frozenset[str]) -> bool:
    return any(f in flags for f in NATIVE_BF16_FLAGS)


def probe_bf16_faster(model_name: str = "aff-unet-tiny", steps: int = 3) -> bool:
    """Time a few training steps of ``model_name`` at a small size in both precisions."""
    from sirst_synth.train.losses import deep_supervision_loss
    from sirst_synth.train.model import build_model

    def seconds(bf16: bool) -> float:
        torch.manual_seed(0)
        model = build_model(model_name).to(memory_format=torch.channels_last)
        opt = torch.optim.Adagrad(model.parameters(), lr=0.01)
        x = torch.randn(8, 1, 64, 64).to(memory_format=torch.channels_last)
        y = (torch.rand(8, 1, 64, 64) > 0.99).float()
        best = float("inf")
        for _ in range(steps + 1):  # the first step warms up the kernels
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                outputs = model(x)
            deep_supervision_loss(outputs, y).mean().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            best = min(best, time.perf_counter() - t0)
        return best

    return seconds(True) < seconds(False)


#: How far "compiled" or "native" batch norm may differ from the stock kernel (largest
#: difference over the largest value, output and input gradient) to be chosen: fp32, bf16.
#: In bf16 the output itself is rounded to 8 bits of mantissa: one step of rounding is 4e-3.
COMPILED_BN_TOLERANCE = {False: 1e-4, True: 1e-2}


def probe_narrow_bn(bf16: bool, repeat: int = 3) -> str:
    """The fastest way to run batch norm on this CPU for the tiny model's full-resolution
    stage (16 x 8 x 128 x 128, forward and backward, in the run's precision): one of NARROW_BN.
    A kernel of our own ("native", where the install built it) or torch.compile's ("compiled",
    only where "native" was not built: importing the compiler and compiling cost seconds at
    the start of every run) is a candidate only where it gives the stock kernel's output and
    gradient (``COMPILED_BN_TOLERANCE``); "compiled" also only where it compiles (inductor
    needs a C++ compiler). "native" also runs the stage's spatial attention in C, so it is
    credited with the time that saves (the C kernel's own tests check its values)."""
    from sirst_synth.train import kernels
    from sirst_synth.train.model import BatchNorm2d, SpatialAttention

    gen = torch.Generator().manual_seed(0)  # its own: the run's random stream is not touched
    x = torch.randn(16, 8, 128, 128, generator=gen).to(memory_format=torch.channels_last)
    x = x.to(torch.bfloat16 if bf16 else torch.float32)
    grad = torch.randn(x.shape, generator=gen).to(x.dtype).to(memory_format=torch.channels_last)

    def run(
        module: torch.nn.Module, narrow: str, cast: bool = False
    ) -> tuple[float, torch.Tensor, torch.Tensor]:
        """``cast``: under bf16 autocast, as training runs it (the attention's convolution)."""
        module.narrow = narrow
        best = float("inf")
        for _ in range(repeat + 1):  # the first call warms up (or compiles) the kernel
            xg = x.detach().requires_grad_()
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cast and bf16):
                out = module(xg)
            out.backward(grad)
            best = min(best, time.perf_counter() - t0)
        return best, out.detach().float(), xg.grad.float()

    def off(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))

    stock = run(BatchNorm2d(8), "channels_last")
    times = {"contiguous": run(BatchNorm2d(8), "contiguous")[0], "channels_last": stock[0]}
    own = "native" if kernels.available() else "compiled"
    try:
        seconds, out, dx = run(BatchNorm2d(8), own)
    except Exception:  # noqa: BLE001 - any compile failure only means "not this kernel"
        return min(times, key=times.__getitem__)
    if max(off(out, stock[1]), off(dx, stock[2])) <= COMPILED_BN_TOLERANCE[bf16]:
        times[own] = seconds
        if own == "native":
            stock_sa, own_sa = (run(SpatialAttention(), k, True)[0] for k in ("channels_last", own))
            times[own] -= stock_sa - own_sa
    return min(times, key=times.__getitem__)


def resolve_precision(
    precision: str,
    device: torch.device,
    flags: frozenset[str] | None = None,
    probe: Callable[[], bool] = probe_bf16_faster,
) -> tuple[str, str]:
    """(``bf16`` or ``fp32``, why) for a requested precision on ``device``."""
    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision, "asked for"
    if device.type == "cuda":
        return "bf16", "auto: CUDA"
    if not has_native_bf16(cpu_flags() if flags is None else flags):
        return "fp32", "auto: this CPU has no native bf16"
    if probe():
        return "bf16", "auto: native bf16, measured faster than fp32 on this CPU"
    return "fp32", "auto: native bf16, but measured no faster than fp32 on this CPU"


def runtime(
    device: str = "auto",
    precision: str = "auto",
    local_rank: int = 0,
    channels_last: bool = True,
) -> Runtime:
    """The device (this process's GPU under torchrun) and the precision it runs in (on a GPU
    narrow batch norm runs the stock kernel, as in training)."""
    dev = pick_device(device, local_rank)
    chosen, _ = resolve_precision(precision, dev)
    narrow = choose_narrow_bn(dev, chosen == "bf16", measure=False)
    return Runtime(dev, chosen == "bf16", channels_last, narrow_bn=narrow)


def choose_narrow_bn(
    dev: torch.device, bf16: bool, measure: bool, narrow_layers: bool = True
) -> str:
    """The narrow batch-norm kernel where none is recorded or given: the stock kernel on a GPU;
    on a CPU the fastest one measured here when ``measure`` (and the model has narrow layers),
    else the fixed contiguous one (the same numbers run after run)."""
    if dev.type != "cpu":
        return "channels_last"
    if measure and narrow_layers:
        return probe_narrow_bn(bf16)
    return "contiguous"


def runtime_for(
    device: str,
    precision: str,
    local_rank: int,
    state: dict | None,
    out: Path,
    narrow_bn: str | None = None,
    narrow_layers: bool = True,
) -> tuple[Runtime, str]:
    """The run's device and precision; a resumed run keeps the precision it recorded (an
    ``auto`` choice probed under other load could differ, and so would the numbers).
    ``narrow_bn``: None decides as below; "probe" measures whatever the precision (the
    benchmarks); a NARROW_BN name fixes it. ``narrow_layers`` False (a model without narrow
    batch norm): nothing to measure, the fixed kernel is recorded."""
    dev = pick_device(device, local_rank)
    recorded = (state or {}).get("precision")
    if recorded is not None:
        if precision not in ("auto", recorded):
            raise UsageError(
                f"--resume: {out / 'last.pt'} was trained in {recorded}; pass --precision "
                f"{recorded} or auto, or use a new --out"
            )
        bf16, why = recorded == "bf16", "recorded by the run being resumed"
    else:
        chosen, why = resolve_precision(precision, dev)
        bf16 = chosen == "bf16"
    # The batch-norm kernel changes rounding: a resumed run keeps the one it recorded, and only
    # --precision auto measures this machine (an asked-for precision gives the same numbers
    # run after run, so it keeps the fixed kernel).
    narrow = (state or {}).get("narrow_bn") or narrow_bn
    if narrow not in NARROW_BN:
        measure = precision == "auto" or narrow == "probe"
        narrow = choose_narrow_bn(dev, bf16, measure, narrow_layers)
    elif narrow == "compiled" and dev.type == "cpu" and narrow_layers:
        check_compiled_bn(bf16, "recorded by the run being resumed" if state else "asked for")
    elif narrow == "native" and dev.type == "cpu" and narrow_layers:
        check_native_bn("recorded by the run being resumed" if state else "asked for")
    return Runtime(dev, bf16, narrow_bn=narrow), why


def check_native_bn(why: str) -> None:
    """A recorded or asked-for "native" kernel must have been built by this install."""
    from sirst_synth.train import kernels

    if not kernels.available():
        raise UsageError(
            f"narrow batch norm 'native' ({why}) was not built by this install (no C "
            "compiler when it was installed); reinstall with one, or start a new --out"
        )


def check_compiled_bn(bf16: bool, why: str) -> None:
    """A recorded or asked-for "compiled" kernel must compile here (inductor needs a C++
    compiler): say so in one line before any training, not in a traceback at the first step."""
    from sirst_synth.train.model import BatchNorm2d

    bn = BatchNorm2d(8)
    bn.narrow = "compiled"
    x = torch.randn(2, 8, 4, 4).to(memory_format=torch.channels_last)
    try:
        bn(x.to(torch.bfloat16 if bf16 else torch.float32).requires_grad_()).sum().backward()
    except Exception as exc:  # noqa: BLE001 - any failure to compile is this one error
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"narrow batch norm 'compiled' ({why}) does not compile on this machine "
            f"({reason}); install a C++ compiler, or start a new --out"
        ) from None
