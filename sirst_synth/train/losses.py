"""Soft-IoU (DNA-Net's form, smooth = 1) and L_Neg over the rotations of one target."""

from __future__ import annotations

import torch

NEG_LOSS_MODES = ("sum", "min", "off")


def soft_iou_per_sample(
    logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0
) -> torch.Tensor:
    """``1 - (sum(p*y) + smooth) / (sum(p) + sum(y) - sum(p*y) + smooth)`` per sample."""
    p = torch.sigmoid(logits.float()).flatten(1)
    y = target.float().flatten(1)
    inter = (p * y).sum(1)
    return 1.0 - (inter + smooth) / (p.sum(1) + y.sum(1) - inter + smooth)


def deep_supervision_loss(outputs: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """Per-sample Soft-IoU averaged over the fused map and every supervised scale."""
    return torch.stack([soft_iou_per_sample(o, target) for o in outputs]).mean(0)


def group_loss(per_sample: torch.Tensor, groups: torch.Tensor, mode: str = "sum") -> torch.Tensor:
    """Batch loss from per-sample losses and group ids (samples of one group share an id).

    ``sum``: the losses of one group's samples are summed (SIRST-5K eq. 9), then averaged over
    groups; ``min``: the group's smallest loss; ``off``: the plain mean over samples.
    """
    if mode == "off":
        return per_sample.mean()
    if mode not in NEG_LOSS_MODES:
        raise ValueError(f"neg_loss must be one of {NEG_LOSS_MODES}, got {mode!r}")
    uniq, inverse = torch.unique(groups, return_inverse=True)
    if mode == "sum":
        per_group = torch.zeros(uniq.numel(), dtype=per_sample.dtype, device=per_sample.device)
        per_group = per_group.index_add(0, inverse, per_sample)
    else:
        per_group = torch.full(
            (uniq.numel(),), float("inf"), dtype=per_sample.dtype, device=per_sample.device
        )
        per_group = per_group.scatter_reduce(0, inverse, per_sample, reduce="amin")
    return per_group.mean()
