"""Training-mode batch norm through the C kernel ("native"): the function of F.batch_norm,
its gradients and running statistics, the same bits whatever the thread count or instruction
level, and the choice of kernel around it."""

from pathlib import Path

import numpy as np
import pytest
from conftest import assert_same_buffers_and_scoring, train_step_outputs

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

from sirst_synth.errors import UsageError  # noqa: E402
from sirst_synth.train import device, kernels, model  # noqa: E402
from sirst_synth.train.device import Runtime, probe_narrow_bn  # noqa: E402
from sirst_synth.train.model import BatchNorm2d, build_model  # noqa: E402

needs_kernel = pytest.mark.skipif(
    not kernels.available(), reason="the C kernel was not built by this install (no compiler)"
)
CPU = torch.device("cpu")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _native(x, weight, bias, dy, level=-1, momentum=0.1, eps=1e-5):
    """(y, dx, dweight, dbias, running_mean, running_var) of one native training step."""
    xg, wg, bg = (t.detach().clone().requires_grad_() for t in (x, weight, bias))
    rm, rv = torch.zeros(x.shape[1]), torch.ones(x.shape[1])
    y = kernels.batch_norm(xg, rm, rv, wg, bg, momentum, eps, level)
    y.backward(dy)
    return y.detach(), xg.grad, wg.grad, bg.grad, rm, rv


def _float64(x, weight, bias, dy, momentum=0.1, eps=1e-5):
    xg, wg, bg = (t.detach().double().requires_grad_() for t in (x, weight, bias))
    rm, rv = (
        torch.zeros(x.shape[1], dtype=torch.float64),
        torch.ones(x.shape[1], dtype=torch.float64),
    )
    y = F.batch_norm(xg, rm, rv, wg, bg, True, momentum, eps)
    y.backward(dy.double())
    return y.detach(), xg.grad, wg.grad, bg.grad, rm, rv


def _batch(shape, dtype=torch.float32, seed=0, offset=3.0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g) * 2 + offset).to(dtype)
    dy = torch.randn(shape, generator=g).to(dtype)
    weight = torch.rand(shape[1], generator=g) + 0.5
    bias = torch.randn(shape[1], generator=g)
    cl = torch.channels_last
    return x.contiguous(memory_format=cl), weight, bias, dy.contiguous(memory_format=cl)


@needs_kernel
def test_hand_computed_step():
    """One channel of 4 pixels, 1, 2, 3, 4: mean 2.5, biased variance 1.25, unbiased 5/3."""
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 2, 2)
    x = torch.cat([x, -x], 1).contiguous(memory_format=torch.channels_last)  # 2 channels
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    weight, bias = torch.tensor([2.0, 1.0]), torch.tensor([1.0, 0.0])
    dy = torch.zeros_like(x)
    dy[0, 0, 0, 0] = 1.0  # the gradient of y at the first pixel of channel 0
    y, dx, dw, db, rm, rv = _native(x, weight, bias, dy, eps=0.0)
    xhat = (np.array([1.0, 2.0, 3.0, 4.0]) - 2.5) / np.sqrt(1.25)
    np.testing.assert_allclose(y[0, 0].flatten().numpy(), 2 * xhat + 1, rtol=1e-6)
    np.testing.assert_allclose(y[0, 1].flatten().numpy(), -xhat, rtol=1e-6)
    np.testing.assert_allclose(db.numpy(), [1.0, 0.0])
    np.testing.assert_allclose(dw.numpy(), [xhat[0], 0.0], rtol=1e-6)
    # dx = w / sigma * (dy - mean(dy) - xhat * mean(dy * xhat)), here at pixel 0 of channel 0
    expect = 2 / np.sqrt(1.25) * (np.eye(4)[0] - 0.25 - xhat * xhat[0] / 4)
    np.testing.assert_allclose(dx[0, 0].flatten().numpy(), expect, rtol=1e-5, atol=1e-7)
    assert torch.equal(dx[0, 1], torch.zeros(2, 2))
    np.testing.assert_allclose(rm.numpy(), [0.25, -0.25], rtol=1e-6)  # 0.9 * 0 + 0.1 * mean
    np.testing.assert_allclose(rv.numpy(), [0.9 + 0.1 * 5 / 3] * 2, rtol=1e-6)


@needs_kernel
@pytest.mark.parametrize("channels", [8, 3, 16])
def test_fp32_is_float64_batch_norm(channels):
    """The sums are formed in double: closer to float64 than the stock fp32 kernel is."""
    x, w, b, dy = _batch((4, channels, 24, 40), offset=30.0)  # a large mean: no cancellation
    ours, ref = _native(x, w, b, dy), _float64(x, w, b, dy)
    for name, a, r in zip(("y", "dx", "dweight", "dbias", "mean", "var"), ours, ref, strict=True):
        assert _rel(a, r) < 2e-6, name
    assert ours[0].dtype is torch.float32
    assert ours[0].is_contiguous(memory_format=torch.channels_last)


@needs_kernel
def test_bf16_is_float64_batch_norm_rounded_once():
    x, w, b, dy = _batch((4, 8, 24, 40), torch.bfloat16)
    ours, ref = _native(x, w, b, dy), _float64(x, w, b, dy)
    assert ours[0].dtype is ours[1].dtype is torch.bfloat16
    # y and dx: within one bf16 rounding (2^-8 of the value) plus the sums' float error
    for a, r in zip(ours[:2], ref[:2], strict=True):
        assert bool(((a.double() - r).abs() <= r.abs() * 2**-8 + 1e-4 * r.abs().max()).all())
    for a, r in zip(ours[2:], ref[2:], strict=True):  # the fp32 sums: from the bf16 inputs exactly
        assert _rel(a, r) < 1e-6


@needs_kernel
def test_bf16_is_the_fp32_kernel_rounded_to_nearest_even():
    """bf16 inputs are exact in float and the sums see the same values in the same order, so
    the bf16 outputs are the fp32 kernel's rounded once, as torch rounds (ties to even)."""
    x, w, b, dy = _batch((3, 8, 21, 19), torch.bfloat16, seed=5)  # a tail of 40 elements
    ours = _native(x, w, b, dy)
    wide = _native(x.float(), w, b, dy.float())
    for a, f in zip(ours[:2], wide[:2], strict=True):
        assert a.dtype is torch.bfloat16 and torch.equal(a, f.to(torch.bfloat16))
    for a, f in zip(ours[2:], wide[2:], strict=True):
        assert torch.equal(a, f)


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "shape",
    [(5, 8, 96, 149), (3, 8, 7, 9), (2, 4, 5, 7), (2, 3, 33, 50)],
    ids=["35-blocks", "8-channels-tail", "4-channels-tail", "3-channels-66-lanes"],
)
def test_same_bits_at_every_instruction_level(dtype, shape):
    """At each level this CPU has (baseline, AVX2, AVX-512), and whatever torch's thread count
    (the kernel runs on one): 35 blocks of 2,048 rows; element counts that leave a tail after
    the last 64 lanes; 3 channels (66 lanes: a multiple of 3, past 64)."""
    x, w, b, dy = _batch(shape, dtype, seed=3)
    base = _native(x, w, b, dy, level=0)
    assert kernels.level(0) == 0 and kernels.level(7) == kernels.level(-1)
    levels = sorted({kernels.level(k) for k in (0, 1, 2)})
    threads = torch.get_num_threads()
    try:
        for n, level in enumerate(levels):
            torch.set_num_threads(1 + n % 2)
            other = _native(x, w, b, dy, level=level)
            for a, c in zip(base, other, strict=True):
                assert torch.equal(a, c), level
    finally:
        torch.set_num_threads(threads)


@needs_kernel
def test_the_model_runs_its_narrow_batch_norms_natively(monkeypatch):
    """aff-unet-tiny with "native" in fp32: the float64 model's outputs, gradients, running
    statistics and batch counts, as close as the stock fp32 kernels come (6 calls: its 8-channel
    stages), and no call in scoring."""
    torch.manual_seed(0)
    ref, stock, mine = (build_model("aff-unet-tiny") for _ in range(3))
    stock.load_state_dict(ref.state_dict())
    mine.load_state_dict(ref.state_dict())
    ref.double()
    Runtime(CPU, False, narrow_bn="channels_last").layout(stock)
    Runtime(CPU, False, narrow_bn="native").layout(mine)
    calls = []
    real = kernels.batch_norm
    monkeypatch.setattr(kernels, "batch_norm", lambda *a: calls.append(a[0].shape) or real(*a))
    x = torch.randn(4, 1, 32, 32).to(memory_format=torch.channels_last)
    y = (torch.rand(4, 1, 32, 32) > 0.97).float()
    outs = train_step_outputs((stock, mine, ref), (x, x, x.double()), y)
    assert calls == [torch.Size([4, 8, 32, 32])] * 6
    assert _rel(outs[1][0], outs[2][0]) < 1e-5
    nets = (stock.named_parameters(), mine.parameters(), ref.parameters())
    for (name, a), b, r in zip(*nets, strict=True):
        assert _rel(b.grad, r.grad) < max(2 * _rel(a.grad, r.grad), 1e-5), name
    assert_same_buffers_and_scoring(stock, mine, x, calls)


@needs_kernel
def test_bf16_autocast_runs_all_six_narrow_batch_norms_natively(monkeypatch):
    """Under bf16 autocast too, every 8-channel batch norm of a training batch laid out as the
    loop lays it out runs in the kernel."""
    torch.manual_seed(0)
    net = build_model("aff-unet-tiny")
    rt = Runtime(CPU, True, narrow_bn="native")
    rt.layout(net)
    calls = []
    real = kernels.batch_norm
    monkeypatch.setattr(kernels, "batch_norm", lambda *a: calls.append(a[0].dtype) or real(*a))
    x = rt.layout(torch.rand(2, 1, 32, 32))
    with rt.autocast():
        net(x)
    assert calls == [torch.bfloat16] * 6


@needs_kernel
def test_inputs_the_kernel_does_not_take_run_the_stock_kernel():
    bn = BatchNorm2d(8)
    bn.narrow = "native"
    cl = torch.channels_last
    assert bn.runs_native(torch.randn(2, 8, 4, 4).to(memory_format=cl))
    assert not bn.runs_native(torch.randn(2, 8, 4, 4))  # contiguous
    assert not bn.runs_native(torch.randn(2, 8, 4, 4, dtype=torch.float64).to(memory_format=cl))
    assert not bn.runs_native(torch.randn(2, 16, 4, 4).to(memory_format=cl))  # not narrow
    bn.eval()
    assert not bn.runs_native(torch.randn(2, 8, 4, 4).to(memory_format=cl))


@needs_kernel
def test_the_probe_tries_the_native_kernel_and_never_compiles(monkeypatch):
    def no_compiling(fn):
        raise AssertionError("the probe imported the compiler although the C kernel is built")

    monkeypatch.setattr(model, "compiled", no_compiling)
    seen = []
    real = kernels.batch_norm
    monkeypatch.setattr(kernels, "batch_norm", lambda *a: seen.append("bn") or real(*a))
    attention = kernels.spatial_attention
    monkeypatch.setattr(kernels, "spatial_attention", lambda *a: seen.append("sa") or attention(*a))
    for bf16 in (False, True):
        seen.clear()
        assert probe_narrow_bn(bf16, repeat=1) in device.NARROW_BN
        # measured, and credited with the attention it also runs (warm-up and one timed call)
        assert seen == ["bn", "bn", "sa", "sa"]
    # a kernel that is fast and wrong is never taken
    monkeypatch.setattr(kernels, "batch_norm", lambda x, *a: x * 1.05)
    assert probe_narrow_bn(True, repeat=1) in ("contiguous", "channels_last")


def test_a_recorded_native_kernel_this_install_lacks_is_one_line(monkeypatch):
    monkeypatch.setattr(kernels, "available", lambda: False)
    state = {"precision": "bf16", "narrow_bn": "native"}
    with pytest.raises(UsageError) as exc:
        device.runtime_for("cpu", "auto", 0, state, Path("run"))
    assert str(exc.value) == (
        "narrow batch norm 'native' (recorded by the run being resumed) was not built by this "
        "install (no C compiler when it was installed); reinstall with one, or start a new --out"
    )
    bn = BatchNorm2d(8)
    bn.narrow = "native"
    assert not bn.runs_native(torch.randn(2, 8, 4, 4).to(memory_format=torch.channels_last))


def test_the_kernel_is_built_where_a_compiler_exists():
    import shutil

    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler on this machine: the stock batch-norm kernels run")
    assert kernels.available(), "sirst_synth/_batchnorm.c was not compiled at install"
    assert kernels.level() in (0, 1, 2)
