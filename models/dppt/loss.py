"""DPPT's distillation objective, as this project defines it.

DPPT (arXiv 2304.05548) distils an unpruned TokenPose teacher into a PPT student through the
teacher's output and its internal attention maps and keypoint-token features. Only the abstract
is public, so the terms, layers and weights below are this project's definition:

    L = MSE(H_S, H_gt) + output_weight * MSE(H_S, H_T)
        + attention_weight * mean_l KL(A_T[l] restricted to the student's tokens || A_S[l])
        + feature_weight * mean_l mean_j ||t_S[l, j] - t_T[l, j]||^2

* ``H``: heatmaps; both MSE terms are the joints MSE weighted by the keypoints' target weight.
* ``A[l]``: the keypoint queries' attention over the visual tokens at layer ``l`` (before that
  layer's pruning). The student sees only the tokens it kept so far, so the teacher's attention
  is restricted to those tokens and renormalised
  (:func:`tokenprune.losses.kept_attention_distillation_loss`); mass the teacher puts on pruned
  tokens is something the student cannot match and is not penalised.
* ``t[l, j]``: keypoint token ``j`` after layer ``l``
  (:func:`tokenprune.losses.token_feature_distillation_loss`).
* Layers: 4, 7 and 10 (PPT's pruning layers) and 12 (the last).

Default weights: ``feature_weight = 5e-6`` is the weight SDPose gives its
self-distillation terms; ``output_weight = 1`` and ``attention_weight = 1e-4`` are our starting
points. None of them has been tuned on COCO or MPII; sweep them for a real run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from tokenprune.losses import kept_attention_distillation_loss, token_feature_distillation_loss

from ..common.heatmap import heatmap_mse_loss
from ..tokenpose import TokenPoseOutput

__all__ = ["DISTILL_LAYERS", "DPPTLoss", "DPPTLossTerms"]

#: Layers whose attention and keypoint tokens are distilled: PPT's pruning layers and the last.
DISTILL_LAYERS = (4, 7, 10, 12)


class DPPTLossTerms(NamedTuple):
    """The weighted total and its unweighted terms (for logging)."""

    total: Tensor
    ground_truth: Tensor
    output: Tensor
    attention: Tensor
    feature: Tensor


@dataclass(frozen=True)
class DPPTLoss:
    """DPPT's loss of a student and teacher pass over the same images.

    Both passes must be run with ``forward_tokens(images, record=layers)`` for the same
    ``layers``; the teacher is detached here.

    Attributes:
        output_weight, attention_weight, feature_weight: weights of the distillation terms.
        layers: 1-based layers recorded in both passes.
    """

    output_weight: float = 1.0
    attention_weight: float = 1e-4
    feature_weight: float = 5e-6
    layers: Sequence[int] = DISTILL_LAYERS

    def __post_init__(self) -> None:
        for name in ("output_weight", "attention_weight", "feature_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        if not self.layers:
            raise ValueError("layers must name at least one layer")
        object.__setattr__(self, "layers", tuple(self.layers))

    def __call__(
        self,
        student: TokenPoseOutput,
        teacher: TokenPoseOutput,
        target_heatmaps: Tensor,
        target_weight: Tensor,
    ) -> DPPTLossTerms:
        """The loss terms.

        Args:
            student: the pruned student's output with records of :attr:`layers`.
            teacher: the unpruned teacher's output with records of the same layers.
            target_heatmaps: ``[B, K, h, w]`` ground-truth heatmaps.
            target_weight: ``[B, K]`` keypoint weights.
        """
        count = len(self.layers)
        if len(student.records) != count or len(teacher.records) != count:
            raise ValueError(
                f"student and teacher need records of the {count} layers {self.layers}, got "
                f"{len(student.records)} and {len(teacher.records)}"
            )
        if teacher.kept:
            raise ValueError("the teacher must be unpruned (it pruned tokens in this pass)")
        ground_truth = heatmap_mse_loss(student.heatmaps, target_heatmaps, target_weight)
        output = heatmap_mse_loss(student.heatmaps, teacher.heatmaps.detach(), target_weight)
        attention = torch.stack([
            kept_attention_distillation_loss(s.attention, t.attention.detach(), s.visual_ids)
            for s, t in zip(student.records, teacher.records, strict=True)
        ]).mean()  # fmt: skip
        feature = token_feature_distillation_loss(
            [s.keypoint_tokens for s in student.records],
            [t.keypoint_tokens.detach() for t in teacher.records],
        )
        total = (
            ground_truth
            + self.output_weight * output
            + self.attention_weight * attention
            + self.feature_weight * feature
        )
        return DPPTLossTerms(total, ground_truth, output, attention, feature)
