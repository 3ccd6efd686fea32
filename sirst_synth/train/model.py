"""The SIRST-5K detector: a U-Net whose fusion nodes use attention feature fusion (AFF).

The paper's "AFF" block is channel attention followed by spatial attention (its eqs. 5-6), the
form of CBAM (Woo et al., ECCV 2018); it is not the gated "attentional feature fusion" of Dai et
al. (WACV 2021), which shares the acronym. Channel attention: a shared MLP with one hidden layer
over the max- and average-pooled features, summed, sigmoid, multiplied in. Spatial attention: a
7x7 convolution over the channel-wise max and mean maps, sigmoid, multiplied in. Outputs at
full, 1/2, 1/4 and 1/8 scale are supervised and fused by a 1x1 convolution into the final map.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sirst_synth.errors import UsageError
from sirst_synth.train import kernels

#: Stage widths per model name. "aff-unet" has about the paper's 8.79 M parameters.
WIDTHS = {
    "aff-unet": (32, 64, 128, 256, 544),
    "unet": (32, 64, 128, 256, 544),
    "aff-unet-tiny": (8, 16, 32, 48, 64),
}


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 16, reference: bool = False):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )
        self.reference = reference

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # max before mean: the order the graph records is the order autograd sums x's
        # gradients in, so swapping the two would change fp32 results in the last bits
        peak = F.adaptive_max_pool2d(x, 1)
        mean = F.adaptive_avg_pool2d(x, 1) if self.reference else _SpatialMean.apply(x)
        return x * self.weights(peak, mean)

    def weights(self, peak: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """Per-channel weights (N x C x 1 x 1) from the max- and mean-pooled features; tiled
        inference calls it with pools measured over the whole image."""
        return torch.sigmoid(self.mlp(peak) + self.mlp(mean))


class SpatialAttention(nn.Module):
    """``narrow``: the run's kernel choice for its narrow layers (``device.NARROW_BN``); under
    "native" training runs this module through the project's C kernel
    (``kernels.spatial_attention``: the same function, 4-8x faster forward and backward on a
    CPU, where the stock ops' 2-to-1 convolution and channel-broadcast product run far below
    oneDNN's usual rate)."""

    narrow = "contiguous"

    def __init__(self, kernel: int = 7, reference: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel, padding=kernel // 2, bias=False)
        self.reference = reference

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.runs_native(x):
            return kernels.spatial_attention(x, self.conv.weight)
        weights = torch.sigmoid(self.conv(self.maps(x)))
        if not self.reference and _slow_channel_broadcast(x):
            return _PixelScale.apply(x, weights)
        return x * weights

    def runs_native(self, x: torch.Tensor) -> bool:
        """Whether this call runs through the C kernel ("native", training mode, an input the
        kernel takes). Scoring keeps the stock ops."""
        return _native_training(self) and kernels.takes_spatial_attention(x, self.conv.weight)

    def maps(self, x: torch.Tensor) -> torch.Tensor:
        """The channel-wise max and mean maps (N x 2 x H x W).

        The fast form computes the same values without the two slow paths of the plain one on
        CPU (2x less time for forward and backward at full resolution in bf16, 1.3x in fp32):
        amax's backward counts ties through a bool-to-integer copy of the whole input, and a
        bf16 mean first copies the input to fp32. It takes the max with its index (the
        gradient goes to one of tied channels rather than split among them; the input is a
        ReLU output times positive weights, so channels tie only at 0, where the ReLU passes
        no gradient) and the channel sum as a 1x1 convolution with weights 1, which oneDNN
        accumulates in fp32 in any precision.
        """
        if self.reference:
            return torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        peak = _ChannelMax.apply(x)
        total = F.conv2d(x, x.new_ones((1, x.shape[1], 1, 1)))
        return torch.cat([peak, total * (1.0 / x.shape[1])], dim=1)


class _ChannelMax(torch.autograd.Function):
    """``x.max(dim=1, keepdim=True).values`` whose gradient has ``x``'s memory format.

    Autograd's own backward scatters into a new contiguous tensor, so for a channels_last
    ``x`` the gradient is then summed with the other branches' channels_last gradients
    through a slow mixed-layout path. Same values bit for bit (tested), another layout.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        values, index = x.max(dim=1, keepdim=True)
        ctx.save_for_backward(index)
        ctx.like = (x.shape, x.device, _memory_format(x))
        # decided on x: the incoming gradient has one channel, so it is contiguous too and
        # does not show x's layout
        ctx.nhwc = _slow_channel_broadcast(x)
        return values

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (index,) = ctx.saved_tensors
        shape, device, layout = ctx.like
        if ctx.nhwc:
            return _scatter_nhwc(shape, index, grad)
        out = torch.empty(shape, dtype=grad.dtype, device=device, memory_format=layout)
        return out.zero_().scatter_(1, index, grad)


def _scatter_nhwc(shape: torch.Size, index: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``zeros(shape).scatter_(1, index, grad)`` in channels_last, as a scatter along the last
    dimension of the N x H x W x C view of that memory: 3-9x faster in bf16 on a CPU, where
    scatter_ along channels_last's channels is not vectorised (slower in fp32, so not taken
    there)."""
    n, c, h, w = shape
    out = grad.new_zeros((n, h, w, c))
    out.scatter_(3, index.permute(0, 2, 3, 1), grad.permute(0, 2, 3, 1))
    return out.permute(0, 3, 1, 2)


class _PixelScale(torch.autograd.Function):
    """``x * weights`` for a per-pixel ``weights`` (N x 1 x H x W) broadcast over ``x``'s
    channels, with the weights first copied out to ``x``'s shape and layout.

    PyTorch's CPU kernels for bf16 products that broadcast along channels_last's innermost
    (channel) dimension are not vectorised: 16 x 8 x 128 x 128 took 3.9 ms on one Zen 4
    core against 0.9 + 0.5 ms for the copy and a same-shape product. Same values and
    gradients bit for bit (the products are the same products; the weights' gradient is the
    same channel sum autograd takes; tested)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        full = weights.expand_as(x).contiguous(memory_format=_memory_format(x))
        ctx.save_for_backward(x, full)
        return x * full

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, full = ctx.saved_tensors
        return grad * full, (grad * x).sum(1, keepdim=True)


def _slow_channel_broadcast(x: torch.Tensor) -> bool:
    """A bf16 channels_last tensor on a CPU: where broadcasting across channels (and
    scattering along them) runs unvectorised, and the _PixelScale and _ChannelMax detours
    pay (measured; in fp32 they cost more than they save)."""
    return (
        x.device.type == "cpu"
        and x.dtype is torch.bfloat16
        and _memory_format(x) is torch.channels_last
    )


class _SpatialMean(torch.autograd.Function):
    """``F.adaptive_avg_pool2d(x, 1)`` whose gradient has ``x``'s memory format (autograd's
    own is the upstream gradient expanded and divided into a contiguous tensor). Same values
    bit for bit (tested)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.like = (x.shape, x.device, _memory_format(x))
        return x.mean(dim=(-2, -1), keepdim=True)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        shape, device, layout = ctx.like
        out = torch.empty(shape, dtype=grad.dtype, device=device, memory_format=layout)
        return out.copy_(grad.expand(shape)).div_(shape[-2] * shape[-1])


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last only where the memory is that and not also contiguous (as a 1 x 1
    image or one channel would be)."""
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if cl else torch.contiguous_format


#: Batch norm over fewer channels than this is "narrow": its kernel choice depends on the CPU.
NARROW_CHANNELS = 16


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same parameters, same function) with a choice of kernel for narrow
    channels_last inputs (``narrow``, one of ``device.NARROW_BN``).

    PyTorch's channels_last batch-norm kernel vectorises across channels, so below 16 channels
    it runs 4-9x slower per element than at 16 (a Zen 4 EPYC: 7.4 ms forward + backward for
    16 x 8 x 128 x 128 in bf16, against 0.8 ms for 16 x 16 x 64 x 64). "contiguous" detours
    through the contiguous kernel (two layout copies; the faster one on a Sapphire Rapids Xeon),
    "channels_last" runs the stock kernel, "compiled" runs training-mode batch norm as a kernel
    torch.compile generates for this shape (3.0 ms there), "native" as the project's C kernel
    (``kernels``; no compiler import or compilation at the start of a run). The run measures
    which is fastest (``device.probe_narrow_bn``); the tiny model's full-resolution stage has
    8 channels.
    """

    narrow = "contiguous"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.narrow == "contiguous" and _narrow_channels_last(x):
            out = super().forward(x.contiguous())
            return out.contiguous(memory_format=torch.channels_last)
        fused = self._fused_kernel(x)
        if fused is not None:
            self.num_batches_tracked.add_(1)  # what nn.BatchNorm2d.forward does in training
            # Batch norm runs in its input's dtype with or without autocast; outside it, the
            # kernel the probe compiled is the one training calls (no recompilation).
            with torch.autocast(x.device.type, enabled=False):
                return fused(
                    x, self.running_mean, self.running_var, self.weight, self.bias,
                    self.momentum, self.eps,
                )  # fmt: skip
        return super().forward(x)

    def _fused_kernel(self, x: torch.Tensor) -> Callable | None:
        """The training-mode function this call runs instead of the stock module, if any."""
        if self.runs_native(x):
            return kernels.batch_norm
        if self.runs_compiled(x):
            return compiled(_batch_norm)
        return None

    def runs_compiled(self, x: torch.Tensor) -> bool:
        """Whether this call runs through the compiled kernel ("compiled", training mode, a
        narrow channels_last input)."""
        return self.narrow == "compiled" and self._training_narrow(x)

    def runs_native(self, x: torch.Tensor) -> bool:
        """Whether this call runs through the C kernel ("native", training mode, a narrow
        channels_last input the kernel takes)."""
        return (
            self.narrow == "native"
            and self._training_narrow(x)
            and kernels.takes_batch_norm(x, self.weight)
        )

    def _training_narrow(self, x: torch.Tensor) -> bool:
        return (
            self.training
            and self.track_running_stats
            and self.momentum is not None
            and _narrow_channels_last(x)
        )


def _narrow_channels_last(x: torch.Tensor) -> bool:
    """Fewer than NARROW_CHANNELS channels in channels_last memory (not also contiguous, as a
    1 x 1 image or one channel would be): the input whose kernel is chosen."""
    return x.shape[1] < NARROW_CHANNELS and _memory_format(x) is torch.channels_last


def _batch_norm(x, mean, var, weight, bias, momentum: float, eps: float):
    return F.batch_norm(x, mean, var, weight, bias, True, momentum, eps)


#: Static kernels kept per compiled function: more than the batch shapes a run meets (L_Neg's
#: group batches take every size up to the batch size), so that no shape falls back to eager.
RECOMPILE_LIMIT = 64


@functools.cache
def compiled(fn: Callable) -> Callable:
    """``fn`` through torch.compile, made once per process on first use (inductor's CPU code
    needs a C++ compiler; the probe chooses "compiled" only where it compiled, matched the
    stock kernel and ran faster). Training only: scoring never calls it.

    One static kernel per shape, and room for every shape: at torch's default limit of 8,
    shapes met after the eighth ran the stock kernel instead, so which kernel a batch ran
    depended on the order shapes came in, and a resumed run (which meets them in another
    order) was no longer the same computation."""
    import torch._dynamo.config as dynamo

    for name in ("recompile_limit", "cache_size_limit"):  # the second: older torch's name
        if hasattr(dynamo, name):
            setattr(dynamo, name, max(getattr(dynamo, name), RECOMPILE_LIMIT))
    return torch.compile(fn, dynamic=False)


class ResBlock(nn.Module):
    narrow = "contiguous"  # the run's kernel choice: under "native" forward_pair upsamples in C

    def __init__(self, cin: int, cout: int, reference: bool = False):
        super().__init__()
        bn = nn.BatchNorm2d if reference else BatchNorm2d
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            bn(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            bn(cout),
        )
        self.skip = (
            nn.Identity()
            if cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), bn(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))

    def forward_pair(self, skip: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        """``forward(cat([skip, upsample(deep)]))`` without building the concatenation.

        A convolution over concatenated channels is the sum of convolutions over each part,
        and a 1x1 convolution commutes with bilinear upsampling (both are linear, one across
        channels, one across pixels), so the shortcut convolves ``deep`` at its own, 4x smaller,
        resolution. Same function and weights as the concatenated form (tested to 1e-5); on CPU
        it saves the widest full-resolution tensors of the decoder.
        """
        size, cs = skip.shape[-2:], skip.shape[1]
        native = _native_training(self)
        up = upsample(deep, size, native)
        conv1, bn1, relu, conv2, bn2 = self.body
        w1 = conv1.weight
        h = F.conv2d(skip, w1[:, :cs], padding=1) + F.conv2d(up, w1[:, cs:], padding=1)
        h = bn2(conv2(relu(bn1(h))))
        conv, bn = self.skip
        short = F.conv2d(skip, conv.weight[:, :cs]) + upsample(
            F.conv2d(deep, conv.weight[:, cs:]), size, native
        )
        return F.relu(h + bn(short))


def _native_training(module: nn.Module) -> bool:
    """Whether ``module`` runs its work through the project's C kernels: the run chose
    "native", it is training (scoring keeps the stock ops), and it is not the reference form."""
    return module.narrow == "native" and module.training and not getattr(module, "reference", False)


def upsample(x: torch.Tensor, size: torch.Size, native: bool = False) -> torch.Tensor:
    """Bilinear, align_corners=False; ``native`` (training under "native"): through the C
    kernel where it takes ``x`` (``kernels.resample``: PyTorch's indices and weights, 6-8x
    faster for the side outputs' single channel on a CPU, 2x for 16 channels in bf16)."""
    if native and kernels.takes_resample(x):
        return kernels.resample(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class AttentionFeatureFusion(nn.Module):
    """Fuse a skip connection with the upsampled deeper feature, then CA followed by SA."""

    def __init__(
        self, cskip: int, cdeep: int, cout: int, attention: bool = True, reference: bool = False
    ):
        super().__init__()
        self.block = ResBlock(cskip + cdeep, cout, reference)
        if not reference:
            # forward_pair takes the 1x1 shortcut weight in two slices, so its gradient comes
            # back with contiguous strides; in channels_last the weight has others (the same
            # memory order: a 1x1 kernel). Give the gradient the weight's strides, as DDP's
            # buckets expect (else it warns and copies at every step).
            weight = self.block.skip[0].weight
            weight.register_hook(functools.partial(_like_strides, weight))
        self.ca = ChannelAttention(cout, reference=reference) if attention else nn.Identity()
        self.sa = SpatialAttention(reference=reference) if attention else nn.Identity()
        self.reference = reference

    def forward(self, skip: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        return self.sa(self.ca(self.fuse_inputs(skip, deep)))

    def fuse_inputs(self, skip: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        """The residual block over skip and upsampled deep feature, before the attentions
        (tiled inference measures channel attention's pools on it)."""
        if self.reference:
            return self.block(torch.cat([skip, upsample(deep, skip.shape[-2:])], dim=1))
        return self.block.forward_pair(skip, deep)


def _like_strides(param: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    if grad.stride() == param.stride():
        return grad
    return torch.empty_strided(
        grad.shape, param.stride(), dtype=grad.dtype, device=grad.device
    ).copy_(grad)


class AFFUNet(nn.Module):
    """U-Net with 4 downsampling stages, AFF decoder nodes and deep supervision."""

    narrow = "contiguous"  # the run's kernel choice: under "native" outputs upsamples in C

    def __init__(
        self,
        widths: tuple[int, ...] = WIDTHS["aff-unet"],
        attention: bool = True,
        in_ch: int = 1,
        reference: bool = False,
    ):
        super().__init__()
        w, ref = widths, reference
        self.enc = nn.ModuleList(
            [ResBlock(in_ch, w[0], ref)] + [ResBlock(w[i], w[i + 1], ref) for i in range(4)]
        )
        self.dec = nn.ModuleList(
            [AttentionFeatureFusion(w[i], w[i + 1], w[i], attention, ref) for i in range(4)]
        )
        self.heads = nn.ModuleList([nn.Conv2d(w[i], 1, 1) for i in range(4)])
        self.fuse = nn.Conv2d(4, 1, 1)
        self.reference = reference
        self.apply(_xavier)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits: [fused, full, 1/2, 1/4, 1/8], all upsampled to the input size."""
        feats = [self.enc[0](x)]
        for i in range(1, 5):
            feats.append(self.enc[i](F.max_pool2d(feats[-1], 2)))
        deep = feats[4]
        decoded = [None] * 4
        for i in (3, 2, 1, 0):
            deep = self.dec[i](feats[i], deep)
            decoded[i] = deep
        return self.outputs([head(d) for head, d in zip(self.heads, decoded, strict=True)])

    def outputs(self, sides: list[torch.Tensor]) -> list[torch.Tensor]:
        """[fused, *sides] at full size from the side logits at their own scales (full, 1/2,
        1/4, 1/8); tiled inference calls it on crops."""
        size = sides[0].shape[-2:]
        native = _native_training(self)
        sides = [sides[0]] + [upsample(s, size, native) for s in sides[1:]]
        return [self.fuse(torch.cat(sides, dim=1)), *sides]


def _xavier(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def build_model(name: str, reference: bool = False) -> AFFUNet:
    """The model of a recipe's ``model`` name.

    ``reference``: the plain form (concatenated fusion input, stock batch norm): the same
    function and state dict, kept for the tests of the fast form and for ``make bench``."""
    if name not in WIDTHS:
        raise UsageError(f"--model must be one of {', '.join(WIDTHS)}, got {name!r}")
    return AFFUNet(WIDTHS[name], attention=name != "unet", reference=reference)


def has_narrow_norm(name: str) -> bool:
    """Whether the model has a narrow batch norm, the only layer whose kernel the run chooses
    per CPU (a model without one skips the measurement)."""
    return min(WIDTHS[name]) < NARROW_CHANNELS if name in WIDTHS else True


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
