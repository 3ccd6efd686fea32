"""Bilinear upsampling through the C kernel ("native"): PyTorch's F.interpolate (bilinear,
align_corners=False) and its gradient, hand-computed pixels, bf16 as the fp32 kernel rounded,
the same bits at every instruction level, and where the model runs it."""

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from sirst_synth.train import kernels  # noqa: E402
from sirst_synth.train.device import Runtime  # noqa: E402
from sirst_synth.train.model import build_model  # noqa: E402

needs_kernel = pytest.mark.skipif(
    not kernels.available(), reason="the C kernels were not built by this install (no compiler)"
)
CL = torch.channels_last
SHAPES = [
    ((2, 8, 16, 16), (32, 32)),  # the decoder's 2x
    ((3, 1, 4, 5), (32, 40)),  # a side output's 8x
    ((2, 16, 8, 8), (16, 16)),
    ((2, 3, 5, 7), (11, 13)),  # a scale that is no integer
    ((1, 4, 9, 9), (4, 5)),  # downsampling
    ((2, 2, 6, 6), (6, 7)),  # one axis unchanged
]


def _batch(shape, size, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g).to(dtype).contiguous(memory_format=CL)
    dy = torch.randn(shape[:2] + size, generator=g).to(dtype).contiguous(memory_format=CL)
    return x, dy


def _native(x, size, dy, level=-1):
    xg = x.detach().clone().requires_grad_()
    y = kernels.resample(xg, size, level)
    y.backward(dy)
    return y.detach(), xg.grad


def _stock(x, size, dy):
    xg = x.detach().clone().requires_grad_()
    y = F.interpolate(xg, size=size, mode="bilinear", align_corners=False)
    y.backward(dy)
    return y.detach(), xg.grad


def _rel(a, b) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max())


@needs_kernel
def test_hand_computed_pixels():
    """Two pixels, 4 and 8, to four: sources at -0.25 (clamped to 0), 0.25, 0.75 and 1.25
    (the last pixel: both taps on it), so 4, 0.75 * 4 + 0.25 * 8, 0.25 * 4 + 0.75 * 8, 8. The
    gradient of dy = 1, 2, 3, 4 sums those weights: 1 + 2 * 0.75 + 3 * 0.25 and
    2 * 0.25 + 3 * 0.75 + 4."""
    x = torch.tensor([4.0, 8.0]).reshape(1, 1, 1, 2)
    dy = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 1, 4)
    y, dx = _native(x, (1, 4), dy)
    assert y.flatten().tolist() == [4.0, 5.0, 7.0, 8.0]
    assert dx.flatten().tolist() == [3.25, 6.75]


@needs_kernel
@pytest.mark.parametrize("shape,size", SHAPES)
def test_fp32_is_pytorchs_bilinear(shape, size):
    """Within float rounding of the stock kernel (another order of the same float sums), and as
    close to float64 as it is."""
    x, dy = _batch(shape, size)
    ours, theirs = _native(x, size, dy), _stock(x, size, dy)
    exact = _stock(x.double(), size, dy.double())
    for a, b, r in zip(ours, theirs, exact, strict=True):
        assert a.shape == b.shape and a.is_contiguous(memory_format=CL)
        assert _rel(a, b) < 1e-6
        assert _rel(a, r) < max(2 * _rel(b, r), 1e-6)


@needs_kernel
@pytest.mark.parametrize("shape,size", SHAPES)
def test_bf16_is_the_fp32_kernel_rounded_to_nearest_even(shape, size):
    """bf16 values are exact in float and the kernel sums them as it sums fp32 ones, rounding
    once at the end: the bf16 results are the fp32 kernel's rounded, bit for bit."""
    x, dy = _batch(shape, size, torch.bfloat16, seed=1)
    ours, wide = _native(x, size, dy), _native(x.float(), size, dy.float())
    for a, w in zip(ours, wide, strict=True):
        assert a.dtype is torch.bfloat16 and torch.equal(a, w.to(torch.bfloat16))


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape,size", SHAPES[:4])
def test_same_bits_at_every_instruction_level(dtype, shape, size):
    x, dy = _batch(shape, size, dtype, seed=2)
    base = _native(x, size, dy, level=0)
    for level in sorted({kernels.level(k) for k in (0, 1, 2)}):
        for a, b in zip(base, _native(x, size, dy, level=level), strict=True):
            assert torch.equal(a, b), level


@needs_kernel
def test_the_model_upsamples_natively_in_training_only(monkeypatch):
    """Under "native" a training forward of the tiny model runs its 11 upsamplings in the
    kernel (two per decoder node, three side outputs); scoring and the reference form run the
    stock kernel."""
    torch.manual_seed(0)
    calls = []
    real = kernels.resample
    monkeypatch.setattr(
        kernels,
        "resample",
        lambda x, size: calls.append((x.shape[1], tuple(size))) or real(x, size),
    )
    rt = Runtime(torch.device("cpu"), True, narrow_bn="native")
    net = rt.layout(build_model("aff-unet-tiny"))
    x = rt.layout(torch.rand(2, 1, 32, 32))
    with rt.autocast():
        net(x)
    nodes = [(c, (s, s)) for c, s in ((64, 4), (48, 4), (48, 8), (32, 8), (32, 16), (16, 16))]
    nodes += [(16, (32, 32)), (8, (32, 32))]
    assert calls == nodes + [(1, (32, 32))] * 3
    calls.clear()
    with torch.no_grad(), rt.autocast():
        net.eval()(x)
    ref = rt.layout(build_model("aff-unet-tiny", reference=True))
    with rt.autocast():
        ref(x)
    assert calls == []
