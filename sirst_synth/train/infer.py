"""Inference at the image's own size: pad to a multiple of 16, predict, crop back.

Large images are predicted stage by stage in tiles, so memory stays far below whole-image
inference, with its output (up to float rounding). Each stage (an encoder block, a decoder
block before its attentions, the spatial attention, the output heads) reads tiles of the
whole-image result of the stage before it, with a halo of a few pixels (more than that
stage's own receptive radius), and writes the tiles' cores into a whole-image result at its
own scale. Channel attention, the one operation that sees the whole image, pools over a whole
stage result. Every layer runs once per pixel plus the halos (a few percent), except the
first encoder block, recomputed where it is read so that its full-scale result is never held.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from sirst_synth.convert import normalise, resize_bilinear, resize_nearest
from sirst_synth.io.files import read_gray, read_mask
from sirst_synth.io.samples import Item
from sirst_synth.metrics import MetricTotals, score_probability
from sirst_synth.train.device import Runtime
from sirst_synth.train.model import AFFUNet, ChannelAttention

MULTIPLE = 16  # 4 downsampling stages
#: Default tile side at full resolution (1/2**k of it at scale 1/2**k); an image whose sides
#: both fit one tile is predicted whole.
TILE = 1024
#: Context per stage, in pixels of the stage's output scale: encoder block (two 3x3 convs),
#: decoder block (upsampling, two 3x3 convs), spatial attention (7x7), output heads (up to
#: 8x bilinear upsampling, at full scale). Even, so crops stay on the pooling grid.
HALOS = {"encoder": 2, "decoder": 4, "spatial": 4, "heads": 8}


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

    ``tile``: predict in tiles of this side (a multiple of 16) when a side of the image is
    larger; 0 predicts the whole image at once."""
    return predict_batch(model, [image], mean, std, rt, tile)[0]


@torch.inference_mode()
def predict_batch(
    model: torch.nn.Module,
    images: list[np.ndarray],
    mean: float,
    std: float,
    rt: Runtime,
    tile: int = TILE,
) -> list[np.ndarray]:
    """``predict`` for images of one size in one forward pass (a tiled size one by one). In
    eval mode every sample is its own: channel attention pools per sample and batch norm uses
    its running statistics, so a batch gives each image's own map (to float rounding)."""
    if tile < 0 or tile % MULTIPLE:
        raise ValueError(f"tile must be 0 or a positive multiple of {MULTIPLE}, got {tile}")
    h, w = images[0].shape
    if any(im.shape != (h, w) for im in images):
        raise ValueError("predict_batch takes images of one size")
    ph, pw = (-h) % MULTIPLE, (-w) % MULTIPLE
    tiled = bool(tile) and max(h + ph, w + pw) > tile
    maps = []
    for chunk in [images[i : i + 1] for i in range(len(images))] if tiled else [images]:
        x = torch.from_numpy(np.stack([normalise(im, mean, std) for im in chunk]))[:, None]
        x = F.pad(x.to(rt.device), (0, pw, 0, ph))  # zero = the dataset mean after normalisation
        with rt.autocast():
            logits = _tiled_logits(model, x, rt, tile) if tiled else model(rt.layout(x))[0]
        maps += list(torch.sigmoid(logits.float())[:, 0, :h, :w].cpu().numpy())
    return maps


def _tiled(
    fn: Callable[..., torch.Tensor],
    inputs: list[tuple[torch.Tensor, int]],
    halo: int,
    tile: int,
    rt: Runtime,
) -> torch.Tensor:
    """``fn(*inputs)`` computed tile by tile into one whole result.

    ``inputs``: (tensor, k) pairs, the tensor at 2**k times the output's scale (k < 0:
    coarser). A crop of the output at [a, b) reads [a * 2**k, b * 2**k) of each input, so
    ``tile`` and ``halo`` are multiples of every coarser input's step."""
    first, k0 = inputs[0]
    height, width = (n * 2.0**-k0 for n in first.shape[-2:])
    height, width = int(height), int(width)
    out = None
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            a, b = max(y0 - halo, 0), max(x0 - halo, 0)
            c, d = min(y1 + halo, height), min(x1 + halo, width)
            crops = [
                rt.layout(t[..., _at(a, k) : _at(c, k), _at(b, k) : _at(d, k)]) for t, k in inputs
            ]
            part = fn(*crops)
            if out is None:
                out = torch.empty(
                    (*part.shape[:2], height, width), dtype=part.dtype, device=part.device
                )
            out[..., y0:y1, x0:x1] = part[..., y0 - a : y1 - a, x0 - b : x1 - b]
    return out


def _at(coordinate: int, k: int) -> int:
    scaled = coordinate * 2.0**k
    if scaled != int(scaled):
        raise AssertionError(f"crop bound {coordinate} is off the 2**{k} grid")
    return int(scaled)


def _tiled_logits(model: AFFUNet, x: torch.Tensor, rt: Runtime, tile: int) -> torch.Tensor:
    """The fused logits of padded ``x`` (1 x 1 x H x W), stage by stage (see the module doc).

    The widest results, the first encoder block's and the last decoder block's at full
    scale, are never held whole: the first block is recomputed inside the two stages that
    read it, and the last node's output goes straight into its head."""
    enc0, halo = model.enc[0], HALOS["encoder"]
    feats = [x]  # the full-scale skip is recomputed from x where it is read
    for i in range(1, 5):
        block, pre = model.enc[i], (enc0 if i == 1 else _identity)
        step = partial(_encode, block, pre)
        feats.append(_tiled(step, [(feats[-1], 1)], halo * (2 if i == 1 else 1), tile >> i, rt))
    deep, sides = feats[4], [None] * 4
    for i in (3, 2, 1, 0):
        node = model.dec[i]
        pre = enc0 if i == 0 else _identity
        fuse = partial(_fuse, node, pre)
        reach = HALOS["decoder"] + (halo if i == 0 else 0)
        fused = _tiled(fuse, [(feats[i], 0), (deep, -1)], reach, tile >> i, rt)
        feats[i] = deep = None  # free what no later stage reads
        if isinstance(node.ca, ChannelAttention):
            weights = node.ca.weights(
                F.adaptive_max_pool2d(fused, 1), F.adaptive_avg_pool2d(fused, 1)
            )
            # in place where no dtype promotion is lost: one buffer less at full scale
            fused = fused.mul_(weights) if weights.dtype == fused.dtype else fused * weights
        head = model.heads[i]
        if i == 0:
            last = partial(_attend_and_head, node, head)
            sides[0] = _tiled(last, [(fused, 0)], HALOS["spatial"], tile, rt)
        else:
            deep = _tiled(node.sa, [(fused, 0)], HALOS["spatial"], tile >> i, rt)
            sides[i] = head(deep)
        del fused
    return _tiled(
        lambda *s: model.outputs(list(s))[0],
        [(side, -i) for i, side in enumerate(sides)],
        HALOS["heads"],
        tile,
        rt,
    )


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def _encode(block: torch.nn.Module, pre: Callable, t: torch.Tensor) -> torch.Tensor:
    return block(F.max_pool2d(pre(t), 2))


def _fuse(node: torch.nn.Module, pre: Callable, skip: torch.Tensor, deep: torch.Tensor):
    return node.fuse_inputs(pre(skip), deep)


def _attend_and_head(node: torch.nn.Module, head: torch.nn.Module, t: torch.Tensor):
    return head(node.sa(t))


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
    for start in range(0, len(items), SCORE_CHUNK):
        chunk = items[start : start + SCORE_CHUNK]
        pairs = []
        for it in chunk:
            image, label = read_gray(it.image, it.value_range), read_mask(it.mask)
            if resize:
                image, label = resize_bilinear(image, resize), resize_nearest(label, resize)
            pairs.append((image, label))
        maps: list[np.ndarray | None] = [None] * len(chunk)
        for members in _same_size(pairs, SCORE_BATCH):
            batch = predict_batch(model, [pairs[i][0] for i in members], mean, std, rt, tile)
            for i, prob in zip(members, batch, strict=True):
                maps[i] = prob
        for it, (_, label), prob in zip(chunk, pairs, maps, strict=True):
            totals.add(score_probability(prob, label, threshold, str(it.mask)))
            if keep_probs:
                probs.append(prob)
    model.train(was_training)
    return totals, probs


#: Items decoded at a time (memory), and images of one size per forward pass.
SCORE_CHUNK, SCORE_BATCH = 64, 8


def _same_size(pairs: list[tuple[np.ndarray, np.ndarray]], most: int) -> list[list[int]]:
    """Indices of ``pairs`` grouped by image size, at most ``most`` a group, in first-seen
    order (scores are added back in the items' order)."""
    groups: dict[tuple[int, int], list[list[int]]] = {}
    for i, (image, _) in enumerate(pairs):
        runs = groups.setdefault(image.shape, [[]])
        if len(runs[-1]) == most:
            runs.append([])
        runs[-1].append(i)
    return [g for runs in groups.values() for g in runs]
