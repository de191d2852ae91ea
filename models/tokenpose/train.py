"""Train or evaluate TokenPose and PPT (heatmaps, joints MSE loss).

    python -m tokenprune_models.tokenpose.train --config models/tokenpose/configs/ppt_s_coco.yaml \\
        --data /datasets/coco --output runs/ppt_s_coco
    python -m tokenprune_models.tokenpose.train ... --resume runs/ppt_s_coco/last.pt
    python -m tokenprune_models.tokenpose.train ... --eval-only --official-checkpoint ppt_s_coco.pth
    torchrun --nproc_per_node 4 -m tokenprune_models.tokenpose.train ...      # several GPUs (DDP)

The config's ``model`` section names a preset of :data:`tokenprune_models.tokenpose.config.PRESETS`
(``preset: ppt_s``; ``tokenpose_s``, ``tokenpose_b``, ``ppt_b``) and overrides of its
:class:`~tokenprune_models.tokenpose.config.TokenPoseConfig` fields (``image_size``, ``keep_rate``,
the heatmap ``sigma``, ...); the command line is :func:`tokenprune_models.common.engine.run`
(``--set section.key=value`` overrides, ``--eval-only --checkpoint``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..common.keypoints import COCO_FLIP_PAIRS, WHOLEBODY_FLIP_PAIRS
from ..common.presets import config_from_section
from ..pose.cli import PoseFamily, run
from ..pose.engine import PoseTask
from .config import PRESETS, TokenPoseConfig
from .convert import load_official_checkpoint
from .model import TokenPose

__all__ = ["FAMILY", "TokenPoseTask", "make_task", "task_from_section"]

_FLIP_PAIRS = {17: COCO_FLIP_PAIRS, 133: WHOLEBODY_FLIP_PAIRS}


@dataclass
class TokenPoseTask(PoseTask):
    """TokenPose or PPT trained on heatmaps with the joints MSE loss; the data, the model and
    the predictions share one codec, ``config.codec`` (its heatmap ``sigma`` is a config field).

    Attributes:
        config: the network (a preset of :data:`~tokenprune_models.tokenpose.config.PRESETS` and
            overrides), for 17 (COCO) or 133 (COCO-WholeBody) keypoints.
    """

    config: TokenPoseConfig = PRESETS["ppt_s"]

    def __post_init__(self) -> None:
        if not isinstance(self.config, TokenPoseConfig):
            raise TypeError(f"config must be a TokenPoseConfig, got {type(self.config).__name__}")
        if self.config.num_keypoints not in _FLIP_PAIRS:
            raise ValueError(
                f"config.num_keypoints must be 17 or 133, got {self.config.num_keypoints!r}"
            )
        self.image_size = self.config.image_size
        self.num_keypoints = self.config.num_keypoints
        self.flip_pairs = _FLIP_PAIRS[self.num_keypoints]
        self.codec = self.config.codec

    def build_model(self) -> TokenPose:
        return TokenPose(self.config)

    def loss(self, outputs: Tensor, batch: dict[str, Tensor], epoch: float) -> Tensor:
        return self.codec.loss(outputs, batch)

    def predict(self, model: nn.Module, images: Tensor, flip: bool) -> tuple[Tensor, Tensor]:
        outputs = self.codec.flip_test(model, images, self.flip_pairs) if flip else model(images)
        return self.codec.decode(outputs)


def task_from_section(task: type[TokenPoseTask], section: dict[str, Any] | None,
                      presets: dict[str, TokenPoseConfig]) -> TokenPoseTask:  # fmt: skip
    """``task`` of a config's ``model`` section: a preset of ``presets`` and
    :class:`~tokenprune_models.tokenpose.config.TokenPoseConfig` overrides name the network, the
    entries that are fields of ``task`` (DPPT's teacher, ...) go to it.

    Raises:
        ValueError: an unknown key (every valid one listed: ``preset``, the config's fields and
            the task's), a missing or unknown preset, or a bad value.
    """
    own = [f.name for f in fields(task) if f.init and f.name != "config"]
    config, options = config_from_section(section, presets, other_keys=own)
    return task(config, **options)


def make_task(config: dict) -> TokenPoseTask:
    """The task of a config's ``model`` section (TokenPose and PPT have no curriculum)."""
    if config.get("curriculum"):
        raise ValueError("TokenPose and PPT take no curriculum section")
    return task_from_section(TokenPoseTask, config.get("model", {}), PRESETS)


def _load_official(path: Path, task: TokenPoseTask) -> nn.Module:
    return load_official_checkpoint(path, task.build_model())


FAMILY = PoseFamily("TokenPose", make_task, _load_official)


def main(argv: list[str] | None = None) -> int:
    return run(FAMILY, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
