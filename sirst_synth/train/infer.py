"""Inference at the image's own size: pad to a multiple of 16, predict, crop back.

Large images are predicted in overlapping tiles so memory stays bounded, with the output of
whole-image inference (up to float rounding): each tile carries ``HALO`` pixels of context,
more than the model's local receptive radius, and the one global operation, channel
attention's max and mean pooling, is measured over the whole image first. A model with k
channel-attention blocks therefore takes k short passes (each ends at the block it measures)
and one full pass; a model without attention takes one.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sirst_synth.convert import resize_bilinear, resize_nearest
from sirst_synth.io.files import read_gray, read_mask
from sirst_synth.io.samples import Item
from sirst_synth.metrics import MetricTotals, score_probability
from sirst_synth.train.device import Runtime
from sirst_synth.train.model import ChannelAttention

MULTIPLE = 16  # 4 downsampling stages
#: Context each tile carries: the 4-stage U-Net's local receptive radius is 122 px (measured in
#: the tests), rounded up to MULTIPLE so tiles stay on the pooling grid.
HALO = 128
#: Default tile side (without the halo); an image that fits one tile plus halo is predicted whole.
TILE = 1024


@torch.inference_mode()
def predict(
    model: torch.nn.Module,
    image: np.ndarray,
    mean: float,
    std: float,
    rt: Runtime,
    tile: int = TILE,
) -> np.ndarray:
    """Probability map (float32, same shape as ``image``); no resizing of anything.

    ``tile``: predict in tiles of this side (a multiple of 16) when the image is larger than a
    tile with its halo; 0 predicts the whole image at once."""
    if tile < 0 or tile % MULTIPLE:
        raise ValueError(f"tile must be 0 or a positive multiple of {MULTIPLE}, got {tile}")
    h, w = image.shape
    x = torch.from_numpy((image.astype(np.float32) / 255.0 - mean) / std)[None, None].to(rt.device)
    ph, pw = (-h) % MULTIPLE, (-w) % MULTIPLE
    x = F.pad(x, (0, pw, 0, ph))  # zero = the dataset mean after normalisation
    if tile and max(x.shape[-2:]) > tile + 2 * HALO:
        logits = _tiled_logits(model, x, rt, tile)
    else:
        with rt.autocast():
            logits = model(rt.layout(x))[0]
    return torch.sigmoid(logits.float())[0, 0, :h, :w].cpu().numpy()


class _Measured(Exception):
    """Ends a tile's pass once the channel attention it measures has been reached."""


def _tiled_logits(model: torch.nn.Module, x: torch.Tensor, rt: Runtime, tile: int) -> torch.Tensor:
    """The fused logits of padded ``x`` (1 x 1 x H x W), tile by tile (see the module doc)."""
    height, width = x.shape[-2:]
    cores = [
        (y, xx, min(y + tile, height), min(xx + tile, width))
        for y in range(0, height, tile)
        for xx in range(0, width, tile)
    ]
    fixed: dict[torch.nn.Module, torch.Tensor] = {}  # block -> its whole-image attention weights
    state: dict = {}  # the block this pass measures and its running max and sum

    def hook(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        feat = inputs[0]
        if module in fixed:
            return feat * fixed[module]
        if state.get("module", module) is not module:
            raise RuntimeError("channel attention blocks ran in a different order on a tile")
        scale = state["tile_h"] // feat.shape[-2]
        y0, x0, y1, x1 = (v // scale for v in state["core"])
        core = feat[..., y0:y1, x0:x1]
        peak = core.amax(dim=(2, 3), keepdim=True)
        total = core.double().sum(dim=(2, 3), keepdim=True)
        if "module" in state:
            peak, total = torch.maximum(peak, state["max"]), total + state["sum"]
        state.update(module=module, max=peak, sum=total, pixels=height * width // scale**2)
        raise _Measured

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, ChannelAttention)
    ]
    try:
        while True:
            state.clear()
            out = None
            for cy0, cx0, cy1, cx1 in cores:
                ty0, tx0 = max(cy0 - HALO, 0), max(cx0 - HALO, 0)
                ty1, tx1 = min(cy1 + HALO, height), min(cx1 + HALO, width)
                state.update(core=(cy0 - ty0, cx0 - tx0, cy1 - ty0, cx1 - tx0), tile_h=ty1 - ty0)
                try:
                    with rt.autocast():
                        logits = model(rt.layout(x[..., ty0:ty1, tx0:tx1]))[0]
                except _Measured:
                    continue
                if out is None:
                    out = torch.empty((1, 1, height, width), dtype=logits.dtype, device=x.device)
                out[..., cy0:cy1, cx0:cx1] = logits[
                    ..., cy0 - ty0 : cy1 - ty0, cx0 - tx0 : cx1 - tx0
                ]
            if "module" not in state:
                return out
            module = state["module"]
            mean = (state["sum"] / state["pixels"]).to(state["max"].dtype)
            with rt.autocast():
                fixed[module] = module.weights(state["max"], mean)
    finally:
        for h in handles:
            h.remove()


def evaluate_items(
    model: torch.nn.Module,
    items: list[Item],
    mean: float,
    std: float,
    rt: Runtime,
    threshold: float = 0.5,
    keep_probs: bool = False,
    resize: int | None = None,
    tile: int = TILE,
) -> tuple[MetricTotals, list[np.ndarray]]:
    """Score a model on items; optionally return the probability maps (for curves, saving).

    ``resize``: DNA-Net's protocol, the image resized to N x N (bilinear) for the model and the
    label to N x N (nearest), so the metrics count N x N pixels per image."""
    was_training = model.training
    model.eval()
    totals, probs = MetricTotals(), []
    for it in items:
        image, label = read_gray(it.image), read_mask(it.mask)
        if resize:
            image, label = resize_bilinear(image, resize), resize_nearest(label, resize)
        prob = predict(model, image, mean, std, rt, tile)
        totals.add(score_probability(prob, label, threshold, str(it.mask)))
        if keep_probs:
            probs.append(prob)
    model.train(was_training)
    return totals, probs
