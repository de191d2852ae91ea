"""HoT's training loss for 3-D lifting (inherited from MixSTE).

``loss = weighted MPJPE + 0.5 * temporal consistency + 2.0 * mean velocity error`` on
root-relative poses ``[B, T, J, 3]``:

* weighted MPJPE: mean over frames and joints of ``w_j * ||pred - target||``;
* temporal consistency: mean of ``w_j * (pred[t+1] - pred[t])^2`` over frames, joints and
  coordinates (it smooths the prediction; the target does not enter);
* mean velocity error: mean of ``||(pred[t+1] - pred[t]) - (target[t+1] - target[t])||``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["H36M_JOINT_WEIGHTS", "LiftingLossTerms", "lifting_loss"]

#: Per-joint weights of HoT/MixSTE (Human3.6M 17-joint order): wrists, ankles and elbows count most.
H36M_JOINT_WEIGHTS = (1, 1, 2.5, 2.5, 1, 2.5, 2.5, 1, 1, 1, 1.5, 1.5, 4, 4, 1.5, 4, 4)


class LiftingLossTerms(NamedTuple):
    total: Tensor
    weighted_mpjpe: Tensor
    temporal_consistency: Tensor
    velocity: Tensor


def lifting_loss(
    pred: Tensor,
    target: Tensor,
    joint_weights: tuple[float, ...] = H36M_JOINT_WEIGHTS,
    consistency_weight: float = 0.5,
    velocity_weight: float = 2.0,
) -> LiftingLossTerms:
    """HoT's loss of ``pred`` and ``target`` ``[B, T, J, 3]`` (see the module docstring).

    With one frame (``T = 1``, seq2frame training on a single frame) the two temporal terms are
    zero.
    """
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(f"pred and target must both be [B, T, J, 3], got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")  # fmt: skip
    weights = torch.as_tensor(joint_weights, dtype=pred.dtype, device=pred.device)
    if weights.shape != (pred.shape[2],):
        raise ValueError(f"joint_weights must have {pred.shape[2]} entries, got {len(weights)}")
    weighted = (weights * torch.linalg.vector_norm(pred - target, dim=-1)).mean()
    zero = pred.new_zeros(())
    if pred.shape[1] > 1:
        step = pred[:, 1:] - pred[:, :-1]
        consistency = (weights[:, None] * step.square()).mean()
        velocity = torch.linalg.vector_norm(step - (target[:, 1:] - target[:, :-1]), dim=-1).mean()
    else:
        consistency = velocity = zero
    total = weighted + consistency_weight * consistency + velocity_weight * velocity
    return LiftingLossTerms(total, weighted, consistency, velocity)
