"""The fast training path computes what the reference path computes, and the precision choice.

The fast form of the model (fusion without concatenation, narrow batch norm through the
contiguous kernel, channels_last) must give the reference form's outputs and gradients: within
1e-5 relative in fp32, and within the bound stated below in bf16.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    assert_same_buffers_and_scoring,
    demo_with_bank,
    read_jsonl,
    train_step_outputs,
)

torch = pytest.importorskip("torch")

from sirst_synth.errors import UsageError  # noqa: E402
from sirst_synth.io.samples import split_items  # noqa: E402
from sirst_synth.recipe import TrainRecipe  # noqa: E402
from sirst_synth.train.checkpoint import load_checkpoint  # noqa: E402
from sirst_synth.train.data import SegmentationSet  # noqa: E402
from sirst_synth.train.device import (  # noqa: E402
    NARROW_BN,
    Runtime,
    cpu_flags,
    probe_narrow_bn,
    resolve_precision,
)
from sirst_synth.train.losses import deep_supervision_loss  # noqa: E402
from sirst_synth.train.model import (  # noqa: E402
    BatchNorm2d,
    _ChannelMax,
    _PixelScale,
    _slow_channel_broadcast,
    _SpatialMean,
    build_model,
)
from sirst_synth.train.model import compiled as COMPILED  # noqa: E402 - before conftest stubs it

CPU = torch.device("cpu")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _outputs_and_grads(model, x, y, bf16=False):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        outs = model(x)
    deep_supervision_loss(outs, y).mean().backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return [o.detach() for o in outs], grads


@pytest.mark.parametrize("name", ["aff-unet-tiny", "unet"])
def test_fast_model_equals_reference_fp32(name):
    """Same layout, fp32: the fast form's outputs and gradients within 1e-5 relative."""
    torch.manual_seed(0)
    ref, fast = build_model(name, reference=True), build_model(name)
    fast.load_state_dict(ref.state_dict())  # the same state dict: keys and shapes
    x = torch.randn(3, 1, 48, 80)
    y = (torch.rand(3, 1, 48, 80) > 0.98).float()
    ro, rg = _outputs_and_grads(ref, x, y)
    fo, fg = _outputs_and_grads(fast, x, y)
    for a, b in zip(fo, ro, strict=True):
        assert _rel(a, b) < 1e-5
    assert rg.keys() == fg.keys()
    # All gradients as one vector: within 1e-5 relative. Tensor by tensor, the sums over
    # every pixel (biases) cancel to a few 1e-5 of their terms, so each is held to 1e-4; and a
    # gradient whose true value is 0 is all rounding (enc.0.skip: a 1-channel 1x1 conv before
    # batch norm, which undoes its scale). Float64 below holds every tensor to 1e-7.
    diff = torch.cat([(fg[k] - rg[k]).flatten() for k in rg]).double().norm()
    assert float(diff / torch.cat([g.flatten() for g in rg.values()]).double().norm()) < 1e-5
    live = [k for k in rg if k != "enc.0.skip.0.weight"]
    worst = max(_rel(fg[k], rg[k]) for k in live)
    assert worst < 1e-4, worst
    # the running statistics of batch norm move alike too
    for (k, a), b in zip(fast.state_dict().items(), ref.state_dict().values(), strict=True):
        if "running" in k:
            assert _rel(a, b) < 1e-5, k


@pytest.mark.parametrize("name", ["aff-unet-tiny", "unet"])
def test_fast_channels_last_model_is_the_reference_function_float64(name):
    """The fast form in channels_last against the reference form contiguous, in float64, where
    rounding cannot hide a difference of function: every gradient tensor within 1e-7. (In
    fp32, batch norm over the 3 x 5 pixels of the deepest stage amplifies rounding: even the
    reference form alone differs between the two layouts there.)"""
    torch.manual_seed(0)
    ref = build_model(name, reference=True).double()
    fast = build_model(name).double().to(memory_format=torch.channels_last)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(3, 1, 48, 80, dtype=torch.float64)
    y = (torch.rand(3, 1, 48, 80) > 0.98).double()
    ro, rg = _outputs_and_grads(ref, x, y)
    fo, fg = _outputs_and_grads(fast, x.to(memory_format=torch.channels_last), y)
    for a, b in zip(fo, ro, strict=True):
        assert _rel(a, b) < 1e-10
    scale = max(float(g.abs().max()) for g in rg.values())
    live = [k for k in rg if float(rg[k].abs().max()) > 1e-3 * scale]
    assert max(_rel(fg[k], rg[k]) for k in live) < 1e-7


def test_fast_model_tracks_reference_bf16():
    """bf16 rounds each operation to 8 bits of mantissa, in a different order in the two forms:
    the fused logits agree to 2% of their largest magnitude and the loss to 0.5%."""
    torch.manual_seed(0)
    ref = build_model("aff-unet-tiny", reference=True).to(memory_format=torch.channels_last)
    fast = build_model("aff-unet-tiny").to(memory_format=torch.channels_last)
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(4, 1, 64, 64).to(memory_format=torch.channels_last)
    y = (torch.rand(4, 1, 64, 64) > 0.98).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ro, fo = ref(x), fast(x)
    assert fo[0].dtype == torch.bfloat16
    assert _rel(fo[0], ro[0]) < 0.02
    lr, lf = deep_supervision_loss(ro, y).mean(), deep_supervision_loss(fo, y).mean()
    assert float(lf.detach()) == pytest.approx(float(lr.detach()), rel=5e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_attention_pools_are_the_stock_ops_with_the_inputs_gradient_layout(dtype, layout):
    """The channel max and the spatial mean of the attentions: the stock ops' values and
    gradients bit for bit, the gradient in the input's memory format (the stock backward
    returns a contiguous one, which then meets the channels_last gradients of the other
    branches in a slow mixed-layout sum). Ties in the max go to one channel, as in max."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 6, 5, generator=gen).to(dtype).contiguous(memory_format=layout)
    x[0, 3:5, 1, 1] = 9.0  # a tie between two channels at one pixel
    for mine, stock in (
        (_ChannelMax.apply, lambda t: t.max(dim=1, keepdim=True).values),
        (_SpatialMean.apply, lambda t: torch.nn.functional.adaptive_avg_pool2d(t, 1)),
    ):
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        out_stock, out_mine = stock(a), mine(b)
        grad = torch.randn(out_stock.shape, generator=gen).to(dtype)
        out_stock.backward(grad)
        out_mine.backward(grad)
        assert torch.equal(out_mine, out_stock)
        assert torch.equal(b.grad, a.grad)
        assert b.grad.is_contiguous(memory_format=layout)


def test_pixel_scale_is_the_broadcast_product_bit_for_bit():
    """Spatial attention's product with its per-pixel weights, taken through a same-shape
    copy of the weights where the broadcast is slow (bf16 channels_last on a CPU): the same
    values and gradients to the last bit, the input's gradient in its layout."""
    cl = torch.channels_last
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 6, 5, generator=gen).bfloat16().contiguous(memory_format=cl)
    w = torch.rand(2, 1, 6, 5, generator=gen).bfloat16()
    grad = torch.randn(2, 8, 6, 5, generator=gen).bfloat16().contiguous(memory_format=cl)
    assert _slow_channel_broadcast(x)
    assert not _slow_channel_broadcast(x.float()) and not _slow_channel_broadcast(x.contiguous())
    xa, wa = x.clone().requires_grad_(), w.clone().requires_grad_()
    xb, wb = x.clone().requires_grad_(), w.clone().requires_grad_()
    stock, mine = xa * wa, _PixelScale.apply(xb, wb)
    stock.backward(grad)
    mine.backward(grad)
    assert torch.equal(mine, stock)
    assert torch.equal(xb.grad, xa.grad) and torch.equal(wb.grad, wa.grad)
    assert xb.grad.is_contiguous(memory_format=cl) and wb.grad.shape == (2, 1, 6, 5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_channel_max_scatters_along_the_nhwc_view_in_bf16_channels_last(monkeypatch, dtype):
    """The detour is taken where it pays (bf16 channels_last on a CPU) and only there; its
    values are checked against the stock max above. The incoming gradient has one channel,
    so the choice must be made on the input: made on the gradient, it was never taken."""
    from sirst_synth.train import model as m

    calls = []

    def spy(*args):
        calls.append(args[0])
        return scatter(*args)

    scatter = m._scatter_nhwc
    monkeypatch.setattr(m, "_scatter_nhwc", spy)
    x = torch.randn(2, 8, 6, 5).to(dtype).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    _ChannelMax.apply(x).sum().backward()
    assert len(calls) == (1 if dtype is torch.bfloat16 else 0)
    assert x.grad.is_contiguous(memory_format=torch.channels_last)
    assert int((x.grad != 0).sum()) == 2 * 6 * 5  # one channel per pixel gets the gradient


@pytest.mark.parametrize("bf16", [False, True])
def test_attention_pools_leave_a_training_step_unchanged_bit_for_bit(monkeypatch, bf16):
    """The whole model against the attentions written with the stock ops (in bf16 also
    without the _PixelScale and scatter detours): one training step's outputs and gradients
    equal to the last bit. The order the pools are called in
    matters too (autograd sums the input's gradients in graph order): it once changed the
    demo's IoU from 53.36 to 52.78 with every single op still equal."""
    import torch.nn.functional as F

    from sirst_synth.train import model as m

    def step(net):
        rt = Runtime(torch.device("cpu"), bf16, narrow_bn="contiguous")
        rt.layout(net)
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(4, 1, 64, 64, generator=gen).to(memory_format=torch.channels_last)
        y = (torch.rand(4, 1, 64, 64, generator=gen) > 0.98).float()
        with rt.autocast():
            out = net(x)
        deep_supervision_loss(out, y).mean().backward()
        return out[0].detach(), [p.grad for p in net.parameters()]

    torch.manual_seed(0)
    ours = build_model("aff-unet-tiny")
    stock = build_model("aff-unet-tiny")
    stock.load_state_dict(ours.state_dict())
    out_ours, grads_ours = step(ours)
    with monkeypatch.context() as patch:
        patch.setattr(
            m.ChannelAttention,
            "forward",
            lambda self, x: (
                x * self.weights(F.adaptive_max_pool2d(x, 1), F.adaptive_avg_pool2d(x, 1))
            ),
        )
        patch.setattr(m._ChannelMax, "apply", lambda x: x.max(dim=1, keepdim=True).values)
        patch.setattr(m, "_slow_channel_broadcast", lambda x: False)  # no _PixelScale
        out_stock, grads_stock = step(stock)
    assert torch.equal(out_ours, out_stock)
    assert all(torch.equal(a, b) for a, b in zip(grads_ours, grads_stock, strict=True))


@pytest.mark.parametrize("narrow", NARROW_BN)
def test_narrow_batch_norm_is_stock_batch_norm(narrow):
    torch.manual_seed(0)
    for channels in (8, 16):
        stock, mine = torch.nn.BatchNorm2d(channels), BatchNorm2d(channels)
        mine.narrow = narrow
        with torch.no_grad():
            stock.weight.uniform_(0.5, 2)
            stock.bias.normal_()
        mine.load_state_dict(stock.state_dict())
        x = torch.randn(2, channels, 20, 12)
        xs = x.clone().requires_grad_()
        xm = x.to(memory_format=torch.channels_last).requires_grad_()
        g = torch.randn(2, channels, 20, 12)
        a, b = stock(xs), mine(xm)
        assert b.is_contiguous(memory_format=torch.channels_last)  # layout kept for the convs
        a.backward(g)
        b.backward(g)
        assert _rel(b, a) < 1e-6 and _rel(xm.grad, xs.grad) < 1e-5
        assert _rel(mine.weight.grad, stock.weight.grad) < 1e-5
        assert torch.allclose(mine.running_var, stock.running_var)
        assert int(mine.num_batches_tracked) == int(stock.num_batches_tracked) == 1
        assert mine.runs_compiled(xm) == (narrow == "compiled" and channels == 8)
        mine.eval()
        assert not mine.runs_compiled(xm)  # scoring never runs the compiled kernels


def test_compiled_batch_norm_in_the_model_is_the_stock_one(monkeypatch):
    """ "compiled" runs the narrow batch norms through torch.compile (here as the eager function
    it would compile): same outputs, gradients, running statistics and batch counts as the
    stock kernels, in training; scoring never calls it."""
    torch.manual_seed(0)
    stock = build_model("aff-unet-tiny")
    mine = build_model("aff-unet-tiny")
    mine.load_state_dict(stock.state_dict())
    Runtime(CPU, False, narrow_bn="channels_last").layout(stock)
    Runtime(CPU, False, narrow_bn="compiled").layout(mine)
    from sirst_synth.train import model

    calls = []
    monkeypatch.setattr(model, "compiled", lambda fn: calls.append(fn.__name__) or fn)
    x = torch.randn(4, 1, 32, 32).to(memory_format=torch.channels_last)
    y = (torch.rand(4, 1, 32, 32) > 0.97).float()
    outs = train_step_outputs((stock, mine), (x, x), y)
    assert _rel(outs[1][0], outs[0][0]) < 1e-5
    # enc[0] and dec[0] (two in the body, one on the 1x1 shortcut each) run at 8 channels
    assert calls == ["_batch_norm"] * 6
    for (name, a), b in zip(stock.named_parameters(), mine.parameters(), strict=True):
        assert _rel(b.grad, a.grad) < 1e-5, name
    assert_same_buffers_and_scoring(stock, mine, x, calls)


def test_a_recorded_compiled_kernel_that_does_not_compile_is_one_line(monkeypatch):
    from sirst_synth.train import device, model

    def broken(fn):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\n(more lines)")

    monkeypatch.setattr(model, "compiled", broken)
    state = {"precision": "fp32", "narrow_bn": "compiled"}
    with pytest.raises(UsageError) as exc:
        device.runtime_for("cpu", "auto", 0, state, Path("run"))
    assert str(exc.value) == (
        "narrow batch norm 'compiled' (recorded by the run being resumed) does not compile on "
        "this machine (InvalidCxxCompiler: No working C++ compiler found); install a C++ "
        "compiler, or start a new --out"
    )
    # a model without narrow batch norm never runs it: nothing to refuse
    rt, _ = device.runtime_for("cpu", "auto", 0, state, Path("run"), narrow_layers=False)
    assert rt.narrow_bn == "compiled"


def test_the_probe_takes_compiled_batch_norm_only_where_it_compiles_and_matches(monkeypatch):
    from sirst_synth.train import kernels, model

    def broken(fn):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(kernels, "available", lambda: False)  # an install without the C kernel
    monkeypatch.setattr(model, "compiled", broken)
    assert probe_narrow_bn(False, repeat=1) in ("contiguous", "channels_last")
    # a kernel that is fast and wrong is never taken
    monkeypatch.setattr(model, "compiled", lambda fn: lambda x, *a: x * 1.05)
    assert probe_narrow_bn(True, repeat=1) in ("contiguous", "channels_last")


def test_decoded_cache_gives_the_same_batches(tmp_path):
    root = demo_with_bank(tmp_path, images=6, seed=4)
    items, _ = split_items(root / "data", "train")
    cached = SegmentationSet(items, 0.3, 0.2, 32, seed=5, cache=True)
    plain = SegmentationSet(items, 0.3, 0.2, 32, seed=5, cache=False)
    assert cached.decoded is not None and plain.decoded is None
    for epoch in (0, 3):
        cached.epoch = plain.epoch = epoch
        for i in range(len(items)):
            a, b = cached[i], plain[i]
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]


def test_decoded_cache_respects_its_limit(tmp_path):
    from sirst_synth.train.data import decode_all

    root = demo_with_bank(tmp_path, images=3, seed=4)
    items, _ = split_items(root / "data", "train")
    h, w = 256, 256  # the demo's image size
    assert decode_all(items, limit=2 * h * w * len(items)) is not None
    assert decode_all(items, limit=2 * h * w * len(items) - 1) is None


def test_precision_choice_on_faked_cpus():
    never = lambda: pytest.fail("no probe without native bf16")  # noqa: E731
    assert resolve_precision("auto", CPU, frozenset({"avx2", "fma"}), never)[0] == "fp32"
    assert resolve_precision("auto", CPU, frozenset({"avx512_bf16"}), lambda: True)[0] == "bf16"
    assert resolve_precision("auto", CPU, frozenset({"amx_bf16"}), lambda: True)[0] == "bf16"
    assert resolve_precision("auto", CPU, frozenset({"amx_bf16"}), lambda: False)[0] == "fp32"
    assert resolve_precision("fp32", CPU, frozenset({"amx_bf16"}), never) == ("fp32", "asked for")
    assert resolve_precision("auto", torch.device("cuda", 0), frozenset(), never)[0] == "bf16"
    with pytest.raises(UsageError, match="--precision"):
        resolve_precision("fp16", CPU, frozenset(), never)


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == frozenset({"fpu", "avx2", "amx_bf16"})
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_the_runtime_tells_the_model_which_batch_norm_kernel_to_run():
    model = build_model("aff-unet-tiny")
    bns = [m for m in model.modules() if isinstance(m, BatchNorm2d)]
    assert bns and all(m.narrow == "contiguous" for m in bns)  # the class default
    for narrow in NARROW_BN:
        Runtime(CPU, False, narrow_bn=narrow).layout(model)
        assert all(m.narrow == narrow for m in bns)
    assert probe_narrow_bn(False, repeat=1) in NARROW_BN


def test_narrow_batch_norm_choice_is_recorded_and_reused_on_resume(tmp_path, monkeypatch):
    from sirst_synth.train import device, loop

    root = demo_with_bank(tmp_path, images=6, seed=4)
    recipe = TrainRecipe(model="aff-unet-tiny", epochs=2, batch_size=4, crop=32, eval_every=1)
    calls = []

    def fake(bf16):
        calls.append(bf16)
        return "channels_last"

    monkeypatch.setattr(device, "probe_narrow_bn", fake)
    monkeypatch.setattr(
        device, "resolve_precision", lambda p, d: ("fp32" if p == "auto" else p, "faked")
    )
    run = tmp_path / "run"
    said: list[str] = []
    loop.train(root / "data", run, recipe, "cpu", "auto", stop_after=1, log=said.append)
    assert calls == [False] and any("narrow batch norm: channels_last" in s for s in said)
    assert load_checkpoint(run / "last.pt")["narrow_bn"] == "channels_last"
    loop.train(root / "data", run, recipe, "cpu", "auto", resume=True)
    assert calls == [False]  # resumed: the recorded choice, no new probe
    # an asked-for precision measures nothing: the fixed kernel, run after run
    loop.train(root / "data", tmp_path / "fixed", recipe, "cpu", "fp32", stop_after=1)
    assert calls == [False]
    assert load_checkpoint(tmp_path / "fixed" / "last.pt")["narrow_bn"] == "contiguous"
    # the benchmarks ask for the measurement whatever the precision
    loop.train(
        root / "data", tmp_path / "b", recipe, "cpu", "bf16", stop_after=1, narrow_bn="probe"
    )
    assert calls == [False, True]
    assert load_checkpoint(tmp_path / "b" / "last.pt")["narrow_bn"] == "channels_last"
    rows = [r for r in read_jsonl(run / "metrics.jsonl") if "loss" in r]
    assert [r["narrow_bn"] for r in rows] == ["channels_last", "channels_last"]
    # a model without narrow batch norm has nothing to measure, even under auto
    wide = TrainRecipe(model="unet", epochs=1, batch_size=2, crop=32, eval_every=1)
    loop.train(root / "data", tmp_path / "wide", wide, "cpu", "auto", stop_after=1)
    assert calls == [False, True]
    assert load_checkpoint(tmp_path / "wide" / "last.pt")["narrow_bn"] == "contiguous"


def test_which_models_have_narrow_batch_norm():
    from sirst_synth.train.model import has_narrow_norm

    assert has_narrow_norm("aff-unet-tiny")  # 8 channels at full resolution
    assert not has_narrow_norm("aff-unet") and not has_narrow_norm("unet")  # 32 and up


def test_precision_is_recorded_and_reused_on_resume(tmp_path, monkeypatch):
    from sirst_synth.train import loop

    root = demo_with_bank(tmp_path, images=6, seed=4)
    recipe = TrainRecipe(model="aff-unet-tiny", epochs=2, batch_size=4, crop=32, eval_every=1)
    calls = []

    def fake(precision, device):
        calls.append(precision)
        return "bf16", "auto: faked for the test"

    from sirst_synth.train import device

    monkeypatch.setattr(device, "resolve_precision", fake)
    run = tmp_path / "run"
    loop.train(root / "data", run, recipe, "cpu", "auto", stop_after=1)
    assert calls == ["auto"]
    assert load_checkpoint(run / "last.pt")["precision"] == "bf16"
    assert {r["precision"] for r in read_jsonl(run / "metrics.jsonl")} == {"bf16"}
    # resumed: no new choice, the recorded one
    loop.train(root / "data", run, recipe, "cpu", "auto", resume=True)
    assert calls == ["auto"]
    assert load_checkpoint(run / "last.pt")["precision"] == "bf16"
    with pytest.raises(UsageError, match="trained in bf16"):
        loop.train(root / "data", run, recipe, "cpu", "fp32", resume=True)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if "loss" in r] == [1, 2]
    assert np.isfinite([r["loss"] for r in rows if "loss" in r]).all()


def test_compiled_kernels_have_room_for_every_batch_shape(monkeypatch):
    """L_Neg's group batches take every size up to the batch size; at torch's default of 8
    kernels a function, later shapes ran the stock kernel, so a resumed run (shapes in another
    order) computed otherwise. The limit is raised before compiling; one static kernel a shape."""
    import torch._dynamo.config as dynamo

    name = "recompile_limit" if hasattr(dynamo, "recompile_limit") else "cache_size_limit"
    monkeypatch.setattr(dynamo, name, 8)
    asked = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: asked.append(kw) or fn)
    fn = COMPILED.__wrapped__(abs)  # past the per-process cache
    assert fn is abs and asked == [{"dynamic": False}]
    assert getattr(dynamo, name) == 64 >= 16  # the batch sizes of the study recipes: at most 16
