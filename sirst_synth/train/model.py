"""The SIRST-5K detector: a U-Net whose fusion nodes use attention feature fusion (AFF).

The paper's "AFF" block is channel attention followed by spatial attention (its eqs. 5-6), the
form of CBAM (Woo et al., ECCV 2018); it is not the gated "attentional feature fusion" of Dai et
al. (WACV 2021), which shares the acronym. Channel attention: a shared MLP with one hidden layer
over the max- and average-pooled features, summed, sigmoid, multiplied in. Spatial attention: a
7x7 convolution over the channel-wise max and mean maps, sigmoid, multiplied in. Outputs at
full, 1/2, 1/4 and 1/8 scale are supervised and fused by a 1x1 convolution into the final map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sirst_synth.errors import UsageError

#: Stage widths per model name. "aff-unet" has about the paper's 8.79 M parameters.
WIDTHS = {
    "aff-unet": (32, 64, 128, 256, 544),
    "unet": (32, 64, 128, 256, 544),
    "aff-unet-tiny": (8, 16, 32, 48, 64),
}


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(F.adaptive_max_pool2d(x, 1), F.adaptive_avg_pool2d(x, 1))

    def weights(self, peak: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """Per-channel weights (N x C x 1 x 1) from the max- and mean-pooled features; tiled
        inference calls it with pools measured over the whole image."""
        return torch.sigmoid(self.mlp(peak) + self.mlp(mean))


class SpatialAttention(nn.Module):
    def __init__(self, kernel: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel, padding=kernel // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(maps))


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = (
            nn.Identity()
            if cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class AttentionFeatureFusion(nn.Module):
    """Fuse a skip connection with the upsampled deeper feature, then CA followed by SA."""

    def __init__(self, cskip: int, cdeep: int, cout: int, attention: bool = True):
        super().__init__()
        self.block = ResBlock(cskip + cdeep, cout)
        self.ca = ChannelAttention(cout) if attention else nn.Identity()
        self.sa = SpatialAttention() if attention else nn.Identity()

    def forward(self, skip: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        deep = F.interpolate(deep, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.sa(self.ca(self.block(torch.cat([skip, deep], dim=1))))


class AFFUNet(nn.Module):
    """U-Net with 4 downsampling stages, AFF decoder nodes and deep supervision."""

    def __init__(
        self, widths: tuple[int, ...] = WIDTHS["aff-unet"], attention: bool = True, in_ch: int = 1
    ):
        super().__init__()
        w = widths
        self.enc = nn.ModuleList(
            [ResBlock(in_ch, w[0])] + [ResBlock(w[i], w[i + 1]) for i in range(4)]
        )
        self.dec = nn.ModuleList(
            [AttentionFeatureFusion(w[i], w[i + 1], w[i], attention) for i in range(4)]
        )
        self.heads = nn.ModuleList([nn.Conv2d(w[i], 1, 1) for i in range(4)])
        self.fuse = nn.Conv2d(4, 1, 1)
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
        size = x.shape[-2:]
        sides = [self.heads[0](decoded[0])] + [
            F.interpolate(
                self.heads[i](decoded[i]), size=size, mode="bilinear", align_corners=False
            )
            for i in (1, 2, 3)
        ]
        return [self.fuse(torch.cat(sides, dim=1)), *sides]


def _xavier(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def build_model(name: str) -> AFFUNet:
    """The model of a recipe's ``model`` name."""
    if name not in WIDTHS:
        raise UsageError(f"--model must be one of {', '.join(WIDTHS)}, got {name!r}")
    return AFFUNet(WIDTHS[name], attention=name != "unet")


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
