"""Spatial attention through the C kernel ("native"): the function of the model's
SpatialAttention and its gradients, hand-computed pixels, the same bits at every instruction
level, and where the model runs it."""

import math

import pytest

torch = pytest.importorskip("torch")

from sirst_synth.train import kernels  # noqa: E402
from sirst_synth.train.device import Runtime  # noqa: E402
from sirst_synth.train.model import SpatialAttention, build_model  # noqa: E402

needs_kernel = pytest.mark.skipif(
    not kernels.available(), reason="the C kernels were not built by this install (no compiler)"
)
CL = torch.channels_last


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _distinct(shape, dtype=torch.float32, seed=0):
    """Positive inputs whose channels never tie at a pixel (a permutation of 1..c times a
    per-pixel scale: neighbours differ by at least 1/c, more than bf16's rounding), so that the
    max's gradient has one channel to go to; and an incoming gradient."""
    n, c, h, w = shape
    g = torch.Generator().manual_seed(seed)
    perm = torch.argsort(torch.rand(n, h, w, c, generator=g), dim=-1).double() + 1
    x = perm * (torch.rand(n, h, w, 1, generator=g, dtype=torch.float64) + 0.5) / c
    dy = torch.randn(n, h, w, c, generator=g, dtype=torch.float64)
    return tuple(t.permute(0, 3, 1, 2).to(dtype).contiguous(memory_format=CL) for t in (x, dy))


def _native(x, weight, dy, level=-1):
    xg, wg = x.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    y = kernels.spatial_attention(xg, wg, level)
    y.backward(dy)
    return y.detach(), xg.grad, wg.grad


def _float64(x, weight, dy):
    """The reference module's ops in float64 (weights as the kernel uses them: bf16-rounded
    where the input is bf16, as autocast rounds them for the convolution)."""
    sa = SpatialAttention(weight.shape[-1], reference=True).double()
    sa.conv.weight.data = weight.detach().to(x.dtype).double()
    xg = x.detach().double().requires_grad_()
    y = sa(xg)
    y.backward(dy.double())
    return y.detach(), xg.grad, sa.conv.weight.grad


@needs_kernel
def test_hand_computed_pixels():
    """Two pixels of two channels, (1, 3) and (4, 2), and a 1 x 1 kernel (0.5 on the max map,
    -1 on the mean map): logits 0.5 * 3 - 2 = -0.5 and 0.5 * 4 - 3 = -1. The gradient of the
    output's first channel at the first pixel only: the gate's logit gets s (1 - s) times x = 1;
    the kernel gets that times the maps there (3 and 2); the input gets s from the product, and
    from the maps 0.5 g on the max's channel and -g / 2 on both (the mean's share)."""
    x = torch.tensor([[[[1.0, 4.0]], [[3.0, 2.0]]]]).contiguous(memory_format=CL)
    weight = torch.tensor([0.5, -1.0]).reshape(1, 2, 1, 1)
    dy = torch.zeros_like(x)
    dy[0, 0, 0, 0] = 1.0
    y, dx, dw = _native(x, weight, dy)
    s0, s1 = 1 / (1 + math.exp(0.5)), 1 / (1 + math.exp(1.0))
    expect = torch.tensor([[[[s0, 4 * s1]], [[3 * s0, 2 * s1]]]])
    assert torch.allclose(y, expect, rtol=1e-6)
    g = s0 * (1 - s0)
    assert torch.allclose(dw, torch.tensor([3 * g, 2 * g]).reshape(1, 2, 1, 1), rtol=1e-6)
    expect_dx = torch.tensor([[[[s0 - 0.5 * g, 0.0]], [[0.5 * g - 0.5 * g, 0.0]]]])
    assert torch.allclose(dx, expect_dx, rtol=1e-6, atol=1e-7)
    assert y.is_contiguous(memory_format=CL) and dx.is_contiguous(memory_format=CL)


@needs_kernel
@pytest.mark.parametrize(
    "shape,k", [((2, 8, 13, 17), 7), ((3, 16, 20, 33), 7), ((2, 3, 9, 40), 3), ((1, 5, 4, 4), 7)]
)
def test_fp32_is_float64_spatial_attention(shape, k):
    """Within 1e-6 of float64 (the stock fp32 ops: 1e-5 for the kernel's gradient), the border
    included: a 7 x 7 kernel over 4 x 4 pixels reads mostly zeros."""
    x, dy = _distinct(shape)
    weight = torch.randn(1, 2, k, k, generator=torch.Generator().manual_seed(1)) * 0.3
    ours, ref = _native(x, weight, dy), _float64(x, weight, dy)
    for name, a, r in zip(("y", "dx", "dweight"), ours, ref, strict=True):
        assert _rel(a, r) < 1e-6, name
    assert ours[0].dtype is ours[1].dtype is torch.float32


@needs_kernel
@pytest.mark.parametrize("seed", [2, 3])
def test_bf16_as_close_to_float64_as_the_stock_ops(seed):
    """In bf16 the kernel rounds where the stock ops store bf16: the output equals the stock
    bf16 ops', and each gradient lies no farther from float64 than theirs (here about 3e-3 for
    the input's, 1e-2 to 3.5e-2 for the kernel's: a sum of many rounded logit gradients)."""
    x, dy = _distinct((4, 8, 24, 40), torch.bfloat16, seed=seed)
    weight = torch.randn(1, 2, 7, 7, generator=torch.Generator().manual_seed(3)) * 0.3
    ours, ref = _native(x, weight, dy), _float64(x, weight, dy)
    stock = SpatialAttention(reference=True)
    stock.conv.weight.data = weight.clone()
    xg = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = stock(xg)
    y.backward(dy)
    theirs = (y.detach(), xg.grad, stock.conv.weight.grad)
    assert ours[0].dtype is ours[1].dtype is torch.bfloat16 and ours[2].dtype is torch.float32
    assert torch.equal(ours[0], theirs[0])
    for name, a, b, r in zip(("dx", "dweight"), ours[1:], theirs[1:], ref[1:], strict=True):
        mine, stock_err = (float((t.double() - r).norm() / r.norm()) for t in (a, b))
        assert mine <= 1.1 * stock_err, name


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "shape", [(2, 8, 21, 37), (2, 16, 9, 16), (3, 3, 5, 50)], ids=["8-tail", "16", "3-tail"]
)
def test_same_bits_at_every_instruction_level(dtype, shape):
    """Rows with and without a tail after the last 16 lanes, the two channel counts compiled as
    constants and one read at run time, at every level this CPU has and any thread count."""
    x, dy = _distinct(shape, dtype, seed=4)
    weight = torch.randn(1, 2, 7, 7, generator=torch.Generator().manual_seed(5))
    base = _native(x, weight, dy, level=0)
    threads = torch.get_num_threads()
    try:
        for n, level in enumerate(sorted({kernels.level(k) for k in (0, 1, 2)})):
            torch.set_num_threads(1 + n % 2)
            for a, b in zip(base, _native(x, weight, dy, level=level), strict=True):
                assert torch.equal(a, b), level
    finally:
        torch.set_num_threads(threads)


@needs_kernel
def test_the_model_runs_its_four_spatial_attentions_natively_in_training_only(monkeypatch):
    """Under "native" and bf16 autocast a training forward runs every decoder level's spatial
    attention in the kernel (8, 16, 32 and 48 channels); scoring, the reference form and other
    kernel choices run the stock ops."""
    torch.manual_seed(0)
    net = build_model("aff-unet-tiny")
    rt = Runtime(torch.device("cpu"), True, narrow_bn="native")
    rt.layout(net)
    calls = []
    real = kernels.spatial_attention
    monkeypatch.setattr(
        kernels, "spatial_attention", lambda x, w: calls.append((x.shape, x.dtype)) or real(x, w)
    )
    x = rt.layout(torch.rand(2, 1, 32, 32))
    with rt.autocast():
        net(x)
    assert calls == [
        (torch.Size([2, c, s, s]), torch.bfloat16) for c, s in ((48, 4), (32, 8), (16, 16), (8, 32))
    ]
    calls.clear()
    net.eval()
    with torch.no_grad(), rt.autocast():
        net(x)
    Runtime(torch.device("cpu"), True, narrow_bn="channels_last").layout(net.train())
    with rt.autocast():
        net(x)
    assert calls == []
    sa = SpatialAttention(reference=True)
    sa.narrow = "native"
    assert not sa.runs_native(torch.rand(2, 8, 4, 4).to(memory_format=CL))
    sa = SpatialAttention()
    sa.narrow = "native"
    assert sa.runs_native(torch.rand(2, 8, 4, 4).to(memory_format=CL))
    assert not sa.runs_native(torch.rand(2, 8, 4, 4))  # contiguous
    assert not sa.runs_native(torch.rand(2, 8, 4, 4, dtype=torch.float64).to(memory_format=CL))
