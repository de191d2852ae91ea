"""Train DPPT: a PPT student distilled from a trained, frozen TokenPose teacher.

    python -m tokenprune_models.dppt.train --config models/dppt/configs/dppt_s_coco.yaml \\
        --data /datasets/coco --output runs/dppt_s_coco \\
        --set model.teacher_checkpoint=runs/tokenpose_s_coco/best.pt

The config's ``model`` section names the student, a preset of :data:`tokenprune_models.dppt.PRESETS`
(``dppt_s``, ``dppt_b``) with :class:`~tokenprune_models.tokenpose.config.TokenPoseConfig`
overrides, and the distillation (teacher checkpoint, loss weights, layers; see :class:`DPPTTask`).
The teacher is the student's network unpruned: a checkpoint of
``python -m tokenprune_models.tokenpose.train`` (``teacher_format: ours``, its EMA weights when it
kept them) or an official TokenPose checkpoint (``teacher_format: official``). Evaluation, resuming
and the other options are those of the command line :func:`tokenprune_models.common.engine.run`;
checkpoints hold the student only.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..common.checkpoint import read_weights_only
from ..pose.cli import PoseFamily, run
from ..tokenpose import TokenPose, TokenPoseConfig
from ..tokenpose.convert import checkpoint_filter
from ..tokenpose.train import TokenPoseTask, task_from_section
from .config import PRESETS
from .loss import DISTILL_LAYERS, DPPTLoss

__all__ = ["FAMILY", "DPPTTask", "load_teacher", "make_task"]

_TEACHER_FORMATS = ("ours", "official")


def load_teacher(path: str | Path, teacher: TokenPose, checkpoint_format: str = "ours") -> None:
    """Load teacher weights into ``teacher``: a training checkpoint of this project (the
    weights its evaluation used), a weights-only file, or an official TokenPose checkpoint
    (TokenPose's :func:`~tokenprune_models.tokenpose.convert.checkpoint_filter`).

    Raises:
        ValueError: an unknown ``checkpoint_format``, or weights that do not fit ``teacher``.
    """
    if checkpoint_format not in _TEACHER_FORMATS:
        raise ValueError(
            f"teacher_format must be one of {_TEACHER_FORMATS}, got {checkpoint_format!r}"
        )
    weights = checkpoint_filter(read_weights_only(path), teacher,
                                official=checkpoint_format == "official", source=path)  # fmt: skip
    teacher.load_state_dict(weights)


class _FrozenTeacher(nn.Module):
    """A teacher that stays in eval mode, without gradients."""

    def __init__(self, model: TokenPose) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> _FrozenTeacher:
        return self  # never leaves eval mode

    @torch.no_grad()
    def forward(self, images: Tensor, layers) -> Tensor:
        return self.model.forward_tokens(images, record=layers)


class _DistillationPasses(nn.Module):
    """``forward(images)`` runs the student and the teacher (what DDP wraps)."""

    def __init__(self, student: TokenPose, teacher: _FrozenTeacher, layers) -> None:
        super().__init__()
        self.student, self.teacher, self.layers = student, teacher, tuple(layers)

    def forward(self, images: Tensor):
        return self.student.forward_tokens(images, record=self.layers), self.teacher(
            images, self.layers
        )


@dataclass
class DPPTTask(TokenPoseTask):
    """A PPT student (``config``), a TokenPose teacher of the same network unpruned
    (``config.unpruned()``) and :class:`DPPTLoss`.

    Attributes (besides :class:`~tokenprune_models.tokenpose.train.TokenPoseTask`'s):
        teacher_checkpoint: the teacher's weights (needed for training).
        teacher_format: ``"ours"`` or ``"official"`` (see :func:`load_teacher`).
        output_weight, attention_weight, feature_weight, layers: see :class:`DPPTLoss`.
    """

    config: TokenPoseConfig = PRESETS["dppt_s"]
    teacher_checkpoint: str | None = None
    teacher_format: str = "ours"
    output_weight: float = 1.0
    attention_weight: float = 1e-4
    feature_weight: float = 5e-6
    layers: tuple[int, ...] = field(default=DISTILL_LAYERS)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.config.prune_after:
            raise ValueError("DPPT's student is a PPT (a preset such as 'dppt_s'), got a config "
                             "with prune_after=() (no pruning)")  # fmt: skip
        self.criterion = DPPTLoss(self.output_weight, self.attention_weight,
                                  self.feature_weight, self.layers)  # fmt: skip

    def build_teacher(self) -> TokenPose:
        """The teacher with its weights: the student's network unpruned."""
        if self.teacher_checkpoint is None:
            raise ValueError("DPPT training needs model.teacher_checkpoint (a trained TokenPose)")
        teacher = TokenPose(self.config.unpruned())
        load_teacher(self.teacher_checkpoint, teacher, self.teacher_format)
        return teacher

    def training_module(self, model: nn.Module) -> nn.Module:
        device = next(model.parameters()).device
        teacher = _FrozenTeacher(self.build_teacher().to(device))
        return _DistillationPasses(model, teacher, self.layers)

    def loss(self, outputs, batch: dict[str, Tensor], epoch: float) -> Tensor:
        student, teacher = outputs
        return self.criterion(student, teacher, batch["target_heatmaps"],
                              batch["target_weight"]).total  # fmt: skip


def make_task(config: dict) -> DPPTTask:
    """The task of a config's ``model`` section."""
    if config.get("curriculum"):
        raise ValueError("DPPT takes no curriculum section")
    return task_from_section(DPPTTask, config.get("model", {}), PRESETS)


FAMILY = PoseFamily("DPPT", make_task)


def main(argv: list[str] | None = None) -> int:
    return run(FAMILY, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
