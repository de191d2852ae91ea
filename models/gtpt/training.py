"""GTPT's training recipe: SimCC targets, the Global Perceived loss and the keep-rate
curriculum. (The EMA and the optimiser come from the training config, see
``models/gtpt/configs``.)"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from models.common.simcc import simcc_targets
from tokenprune import (
    ConstantKeepRate,
    CosineWarmupKeepRate,
    KeepRateSchedule,
    LinearWarmupKeepRate,
    global_perceived_loss,
)

from .config import IMAGE_SIZE, SPLIT_RATIO
from .model import GTPTOutput

#: Gaussian width of the SimCC targets, in bins.
SIGMA = 4.0


def keep_rate_schedule(
    target: Sequence[float],
    kind: str = "direct",
    warmup_epochs: float = 10,
    end_epoch: float = 100,
) -> KeepRateSchedule:
    """The keep-rate curriculum.

    ``"direct"`` trains at the target rates from the first step, as GTPT's released code does;
    ``"linear"`` (GTPT's earlier curriculum: no pruning for ``warmup_epochs``, then linear to
    the targets at ``end_epoch``) and ``"cosine"`` (EViT's warmup shape) ramp up.
    """
    if kind == "direct":
        return ConstantKeepRate(target)
    if kind == "linear":
        return LinearWarmupKeepRate(target, warmup_epochs, end_epoch)
    if kind == "cosine":
        return CosineWarmupKeepRate(target, warmup_epochs, end_epoch)
    raise ValueError(f"kind must be 'direct', 'linear' or 'cosine', got {kind!r}")


def targets_for(
    keypoints: Tensor, visible: Tensor, image_size: tuple[int, int] = IMAGE_SIZE
) -> tuple[Tensor, Tensor, Tensor]:
    """SimCC targets of keypoints in input pixels (``image_size = (height, width)``):
    ``(x, y, weight)``."""
    height, width = image_size
    return simcc_targets(keypoints, visible, (width, height), SPLIT_RATIO, SIGMA)


def gtpt_loss(
    pruned: GTPTOutput, entire: GTPTOutput, target_x: Tensor, target_y: Tensor, weight: Tensor
) -> Tensor:
    """The Global Perceived loss of one training step (see
    :func:`tokenprune.global_perceived_loss`)."""
    return global_perceived_loss(
        (pruned.x_logits, pruned.y_logits),
        (entire.x_logits, entire.y_logits),
        (target_x, target_y),
        weight,
    )
