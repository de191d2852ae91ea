"""Losses over discrete 1-D distributions (SimCC bins) and GTPT's self-distillation.

Shapes: logits and targets are ``[B, K, bins]`` per axis (``K`` keypoints); weights ``[B, K]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ._validation import check_floating

__all__ = ["bin_kl_divergence", "global_perceived_loss", "keypoint_kl_loss"]


def bin_kl_divergence(logits: Tensor, target: Tensor) -> Tensor:
    """``KL(target || softmax(logits))`` averaged over the bins of the last axis.

    ``target`` holds (not necessarily normalised) probabilities; zero entries contribute zero.

    Returns:
        ``logits.shape[:-1]``.
    """
    logits = check_floating("logits", logits)
    target = check_floating("target", target)
    if logits.shape != target.shape:
        raise ValueError(
            f"logits and target must have one shape, got {tuple(logits.shape)} and "
            f"{tuple(target.shape)}"
        )
    log_probs = F.log_softmax(logits, dim=-1)
    return (torch.xlogy(target, target) - target * log_probs).mean(dim=-1)


def keypoint_kl_loss(
    logits: Sequence[Tensor], targets: Sequence[Tensor], weight: Tensor
) -> Tensor:
    """SimCC's KL loss: ``(1/K) sum_k mean_b w[b, k] sum_axes KL_axis[b, k]``.

    Args:
        logits, targets: one ``[B, K, bins]`` tensor per axis.
        weight: ``[B, K]`` keypoint weights (visibility).
    """
    if len(logits) != len(targets) or not logits:
        raise ValueError("logits and targets need one tensor per axis each")
    per_keypoint = sum(bin_kl_divergence(z, y) for z, y in zip(logits, targets, strict=True))
    if tuple(weight.shape) != tuple(per_keypoint.shape):
        raise ValueError(
            f"weight must have shape {tuple(per_keypoint.shape)}, got {tuple(weight.shape)}"
        )
    return (per_keypoint * weight).mean(dim=0).mean()


def global_perceived_loss(
    pruned: Sequence[Tensor],
    entire: Sequence[Tensor],
    targets: Sequence[Tensor],
    weight: Tensor,
) -> Tensor:
    """GTPT's Global Perceived loss.

    Both passes (pruned keep rates, and every keep rate 1) fit the targets, and the pruned pass
    also fits the detached softmax of the entire pass (self-distillation with temperature 1)::

        L = KL(y || p_entire) + KL(y || p_pruned) + KL(sg(softmax z_entire) || p_pruned)

    each term as in :func:`keypoint_kl_loss`.

    Args:
        pruned, entire: per-axis logits ``[B, K, bins]`` of the two passes.
        targets: per-axis targets.
        weight: ``[B, K]``.
    """
    teacher = [torch.softmax(z.detach(), dim=-1) for z in entire]
    return (
        keypoint_kl_loss(entire, targets, weight)
        + keypoint_kl_loss(pruned, targets, weight)
        + keypoint_kl_loss(pruned, teacher, weight)
    )
