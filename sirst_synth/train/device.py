"""Where tensors run and in what precision: the one place that decides autocast and layout.

``bf16`` means bf16 autocast with channels_last weights and inputs (the fast path of tensor
cores); ``fp32`` means neither. ``auto`` picks bf16 on CUDA and fp32 on CPU. Keeping the choice
apart from the device lets the CUDA configuration run, and be tested, on a CPU.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from sirst_synth.errors import UsageError

PRECISIONS = ("auto", "bf16", "fp32")


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    bf16: bool

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def layout(self, t: torch.Tensor | torch.nn.Module):
        """channels_last on the bf16 path (a model or a 4-D batch), unchanged otherwise."""
        return t.to(memory_format=torch.channels_last) if self.bf16 else t


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available; use --device cpu")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def runtime(device: str = "auto", precision: str = "auto", local_rank: int = 0) -> Runtime:
    """The device (this process's GPU under torchrun) and whether to run the bf16 path."""
    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be auto, bf16 or fp32, got {precision!r}")
    dev = pick_device(device, local_rank)
    return Runtime(dev, dev.type == "cuda" if precision == "auto" else precision == "bf16")
