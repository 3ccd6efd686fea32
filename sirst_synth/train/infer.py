"""Inference at the image's own size: pad to a multiple of 16, predict, crop back."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sirst_synth.convert import resize_bilinear, resize_nearest
from sirst_synth.io.files import read_gray, read_mask
from sirst_synth.io.samples import Item
from sirst_synth.metrics import MetricTotals, score_probability
from sirst_synth.train.device import Runtime

MULTIPLE = 16  # 4 downsampling stages


@torch.no_grad()
def predict(
    model: torch.nn.Module, image: np.ndarray, mean: float, std: float, rt: Runtime
) -> np.ndarray:
    """Probability map (float32, same shape as ``image``); no resizing of anything."""
    h, w = image.shape
    x = torch.from_numpy((image.astype(np.float32) / 255.0 - mean) / std)[None, None].to(rt.device)
    ph, pw = (-h) % MULTIPLE, (-w) % MULTIPLE
    x = rt.layout(F.pad(x, (0, pw, 0, ph)))  # zero = the dataset mean after normalisation
    with rt.autocast():
        logits = model(x)[0]
    return torch.sigmoid(logits.float())[0, 0, :h, :w].cpu().numpy()


def evaluate_items(
    model: torch.nn.Module,
    items: list[Item],
    mean: float,
    std: float,
    rt: Runtime,
    threshold: float = 0.5,
    keep_probs: bool = False,
    resize: int | None = None,
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
        prob = predict(model, image, mean, std, rt)
        totals.add(score_probability(prob, label, threshold, str(it.mask)))
        if keep_probs:
            probs.append(prob)
    model.train(was_training)
    return totals, probs
