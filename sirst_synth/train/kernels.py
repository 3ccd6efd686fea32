"""The project's C kernels for training on a CPU, run where a run chose "native": training-mode
batch norm of narrow channels_last inputs (``sirst_synth/_batchnorm.c``, ``model.BatchNorm2d``)
spatial attention (``sirst_synth/_attention.c``, ``model.SpatialAttention``) and bilinear
upsampling (``sirst_synth/_resample.c``, ``model.upsample``).

Batch norm: PyTorch's channels_last CPU kernel vectorises across channels, and the tiny model's
full-resolution stage has 8, where it runs several times slower per element than at 16. The
kernel streams the (N*H*W, C) memory four times per step (statistics, normalisation, gradient
sums, input gradient) on one thread, forms the sums in double, and gives the same bits at every
instruction level it is built for (tested). Unlike "compiled" it needs no compiler import or
compilation at the start of a run. Built at install where a C compiler exists;
``available()`` says whether it was.

Spatial attention's stock ops (channel max, channel mean, a 2-to-1 convolution, sigmoid, a
product broadcast over channels) are each a pass over memory, and oneDNN runs a convolution
with one output channel far below its usual rate; the kernel does the forward in three passes
and the backward in two. Upsampling's stock channels_last backward scatters its adds; the
kernel's gathers them.
"""

from __future__ import annotations

import ctypes

import torch

from sirst_synth.native import function

_P, _I, _C = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_BN_FORWARD = function(
    "sirst_bn_forward", [_P, _C, _I, _I, _P, _P, ctypes.c_double] + [_P] * 4 + [_C]
)
_BN_BACKWARD = function("sirst_bn_backward", [_P, _P, _C, _I, _I] + [_P] * 6 + [_C])
_LEVEL = function("sirst_level", [_C])
_SA_FORWARD = function("sirst_sa_forward", [_P, _C] + [_I] * 4 + [_P, _I] + [_P] * 4 + [_C])
_SA_BACKWARD = function("sirst_sa_backward", [_P, _P, _C] + [_I] * 4 + [_P, _I] + [_P] * 5 + [_C])
_RS_FORWARD = function("sirst_resample_forward", [_P, _C] + [_I] * 6 + [_P, _C])
_RS_BACKWARD = function("sirst_resample_backward", [_P, _C] + [_I] * 6 + [_P, _C])
_ALL = (_BN_FORWARD, _BN_BACKWARD, _LEVEL, _SA_FORWARD, _SA_BACKWARD, _RS_FORWARD, _RS_BACKWARD)

#: Most channels the batch-norm kernel takes (its per-channel sums live on the stack).
MAX_CHANNELS = 64
_DTYPES = (torch.float32, torch.bfloat16)


def available() -> bool:
    """Whether this install built the kernels ("native" runs all of them or none)."""
    return None not in _ALL


def level(asked: int = -1) -> int:
    """The instruction level the kernel runs at for ``asked`` (-1: the widest this CPU has;
    0 baseline, 1 AVX2, 2 AVX-512; a level the CPU lacks falls to the widest it has)."""
    return int(_LEVEL(asked)) if _LEVEL is not None else 0


def _nhwc(x: torch.Tensor) -> bool:
    """A CPU tensor in fp32 or bf16, (N, C, H, W) whose memory is N x H x W x C."""
    return (
        x.device.type == "cpu"
        and x.dim() == 4
        and x.dtype in _DTYPES
        and x.numel() > 0
        and x.is_contiguous(memory_format=torch.channels_last)
    )


def _rows(x: torch.Tensor) -> tuple[int, int]:
    return x.numel() // x.shape[1], x.shape[1]


def _as_nhwc(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t.to(dtype).contiguous(memory_format=torch.channels_last)


def _check(code: int) -> None:
    if code == -1:
        raise MemoryError("out of memory in a native training kernel")
    if code:
        raise ValueError(f"native training kernel: bad shape (code {code})")


def takes_batch_norm(x: torch.Tensor, weight: torch.Tensor | None) -> bool:
    """Whether batch norm of ``x`` runs here: ``x`` NHWC in fp32 or bf16 with at most
    MAX_CHANNELS channels, fp32 affine parameters."""
    return (
        available()
        and _nhwc(x)
        and x.shape[1] <= MAX_CHANNELS
        and weight is not None
        and weight.dtype is torch.float32
    )


class _BatchNorm(torch.autograd.Function):
    """(y, batch mean, biased batch variance) of ``x``; gradients for x, weight and bias."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float, level: int):  # noqa: ANN205
        rows, c = _rows(x)
        y = torch.empty_like(x, memory_format=torch.channels_last)
        mean, var, invstd = (torch.empty(c) for _ in range(3))
        weight, bias = weight.detach().contiguous(), bias.detach().contiguous()
        code = _BN_FORWARD(
            x.data_ptr(), int(x.dtype is torch.bfloat16), rows, c,
            weight.data_ptr(), bias.data_ptr(), float(eps), y.data_ptr(),
            mean.data_ptr(), var.data_ptr(), invstd.data_ptr(), level,
        )  # fmt: skip
        _check(code)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.level = level
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, grad, _mean, _var):  # noqa: ANN205
        x, weight, mean, invstd = ctx.saved_tensors
        rows, c = _rows(x)
        grad = _as_nhwc(grad, x.dtype)
        dx = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        dweight, dbias = torch.empty(c), torch.empty(c)
        code = _BN_BACKWARD(
            x.data_ptr(), grad.data_ptr(), int(x.dtype is torch.bfloat16), rows, c,
            mean.data_ptr(), invstd.data_ptr(), weight.data_ptr(),
            None if dx is None else dx.data_ptr(), dweight.data_ptr(), dbias.data_ptr(),
            ctx.level,
        )  # fmt: skip
        _check(code)
        return dx, dweight, dbias, None, None


def batch_norm(
    x: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    momentum: float,
    eps: float,
    level: int = -1,
) -> torch.Tensor:
    """``F.batch_norm(x, running_mean, running_var, weight, bias, True, momentum, eps)`` for an
    input ``takes_batch_norm`` accepts: the same function, running statistics updated the same
    way (unbiased variance), rounding of its own (``device.COMPILED_BN_TOLERANCE``)."""
    if bias is None:
        bias = torch.zeros_like(weight)
    y, mean, var = _BatchNorm.apply(x, weight, bias, eps, level)
    if running_mean is not None and running_var is not None:
        rows, _ = _rows(x)
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
            unbiased = var * (rows / max(rows - 1, 1))
            running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
    return y


def takes_spatial_attention(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether spatial attention of ``x`` runs here: ``x`` NHWC in fp32 or bf16, a 2-to-1
    convolution weight of an odd size up to 15, in fp32."""
    return (
        available()
        and _nhwc(x)
        and x.shape[1] <= 32767
        and weight.dim() == 4
        and tuple(weight.shape[:2]) == (1, 2)
        and weight.shape[2] == weight.shape[3]
        and weight.shape[2] % 2 == 1
        and weight.shape[2] <= 15
        and weight.dtype is torch.float32
    )


class _SpatialAttention(torch.autograd.Function):
    """``x * sigmoid(conv2d(cat([max_c x, mean_c x]), weight, padding=k // 2))``; gradients
    for x and weight."""

    @staticmethod
    def forward(ctx, x, weight, level: int):  # noqa: ANN205
        n, c, h, w = x.shape
        k = weight.shape[-1]
        bf16 = x.dtype is torch.bfloat16
        # under autocast the convolution runs on bf16 weights: the kernel uses them rounded so
        kern = weight.detach().to(x.dtype).float().contiguous()
        y = torch.empty_like(x, memory_format=torch.channels_last)
        maps = torch.empty(n, 2, h + k - 1, w + k - 1)
        gate = torch.empty(n, h, w)
        arg = torch.empty(n, h, w, dtype=torch.int16)
        code = _SA_FORWARD(
            x.data_ptr(), int(bf16), n, h, w, c, kern.data_ptr(), k, y.data_ptr(),
            maps.data_ptr(), gate.data_ptr(), arg.data_ptr(), level,
        )  # fmt: skip
        _check(code)
        ctx.save_for_backward(x, kern, maps, gate, arg)
        ctx.level = level
        return y

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN205
        x, kern, maps, gate, arg = ctx.saved_tensors
        n, c, h, w = x.shape
        k = kern.shape[-1]
        grad = _as_nhwc(grad, x.dtype)
        dx = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        dkern = torch.empty(1, 2, k, k)
        code = _SA_BACKWARD(
            x.data_ptr(), grad.data_ptr(), int(x.dtype is torch.bfloat16), n, h, w, c,
            kern.data_ptr(), k, maps.data_ptr(), gate.data_ptr(), arg.data_ptr(),
            None if dx is None else dx.data_ptr(), dkern.data_ptr(), ctx.level,
        )  # fmt: skip
        _check(code)
        return dx, dkern, None


def spatial_attention(x: torch.Tensor, weight: torch.Tensor, level: int = -1) -> torch.Tensor:
    """``model.SpatialAttention``'s function for an input ``takes_spatial_attention`` accepts,
    in one C pass for the pools, one for the convolution and gate, one for the product (two
    backward): the same function, rounding of its own (within what
    ``tests/test_attention_kernel.py`` states)."""
    return _SpatialAttention.apply(x, weight, level)


class _Resample(torch.autograd.Function):
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)``; the gradient for x."""

    @staticmethod
    def forward(ctx, x, size: tuple[int, int], level: int):  # noqa: ANN205
        n, c, ih, iw = x.shape
        oh, ow = size
        y = torch.empty((n, c, oh, ow), dtype=x.dtype, memory_format=torch.channels_last)
        bf16 = int(x.dtype is torch.bfloat16)
        _check(_RS_FORWARD(x.data_ptr(), bf16, n, ih, iw, c, oh, ow, y.data_ptr(), level))
        ctx.shape, ctx.level = x.shape, level
        return y

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN205
        n, c, ih, iw = ctx.shape
        oh, ow = grad.shape[-2:]
        grad = _as_nhwc(grad, grad.dtype)
        dx = torch.empty(ctx.shape, dtype=grad.dtype, memory_format=torch.channels_last)
        bf16 = int(grad.dtype is torch.bfloat16)
        code = _RS_BACKWARD(grad.data_ptr(), bf16, n, ih, iw, c, oh, ow, dx.data_ptr(), ctx.level)
        _check(code)
        return dx, None, None


def takes_resample(x: torch.Tensor) -> bool:
    """Whether bilinear resampling of ``x`` runs here: NHWC in fp32 or bf16."""
    return available() and _nhwc(x)


def resample(x: torch.Tensor, size: tuple[int, int], level: int = -1) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)`` for an input
    ``takes_resample`` accepts: PyTorch's source indices and weights, rounding of its own
    (float sums in another order; within what ``tests/test_resample_kernel.py`` states)."""
    return _Resample.apply(x, (int(size[0]), int(size[1])), level)
