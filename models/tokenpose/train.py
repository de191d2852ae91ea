"""Train or evaluate TokenPose and PPT (heatmaps, joints MSE loss).

    python -m models.tokenpose.train --config models/tokenpose/configs/ppt_s_coco.yaml \\
        --data /datasets/coco --output runs/ppt_s_coco
    python -m models.tokenpose.train ... --resume runs/ppt_s_coco/last.pt
    python -m models.tokenpose.train ... --eval-only --official-checkpoint ppt_s_coco.pth
    torchrun --nproc_per_node 4 -m models.tokenpose.train ...      # several GPUs (DDP)

The config's ``model`` section picks ``architecture: tokenpose`` or ``ppt``; the command line is
:mod:`models.pose.cli` (``--set section.key=value`` overrides, ``--eval-only --checkpoint``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor, nn

from models.common.heatmap import (
    decode_heatmaps,
    flip_test_heatmaps,
    heatmap_mse_loss,
)
from models.common.keypoints import COCO_FLIP_PAIRS, WHOLEBODY_FLIP_PAIRS
from models.pose.cli import ModelFamily, run
from models.pose.data import heatmap_target_fn
from models.pose.engine import PoseTask

from .build import PPT_KEEP_RATIO, build_ppt, build_tokenpose
from .convert import load_official_checkpoint
from .model import STEM_STRIDE, TokenPose

__all__ = ["FAMILY", "TokenPoseTask", "make_task"]

#: Gaussian width of TokenPose's heatmap targets, in heatmap cells.
SIGMA = 2.0
_FLIP_PAIRS = {17: COCO_FLIP_PAIRS, 133: WHOLEBODY_FLIP_PAIRS}
_ARCHITECTURES = ("tokenpose", "ppt")


@dataclass
class TokenPoseTask(PoseTask):
    """TokenPose or PPT trained on heatmaps with the joints MSE loss.

    Attributes:
        architecture: ``"tokenpose"`` (unpruned) or ``"ppt"`` (pruned after layers 4, 7, 10).
        variant: model size (``"s"`` or ``"b"``).
        num_keypoints: 17 (COCO) or 133 (COCO-WholeBody).
        image_size: input ``(height, width)``.
        keep_ratio: PPT's keep ratio per pruning step.
        sigma: heatmap Gaussian width in cells.
        options: further keyword arguments of :class:`~models.tokenpose.TokenPose` (e.g.
            ``depth`` or ``dim`` for a small model).
    """

    architecture: str = "ppt"
    variant: str = "s"
    num_keypoints: int = 17
    image_size: tuple[int, int] = (256, 192)
    keep_ratio: float = PPT_KEEP_RATIO
    sigma: float = SIGMA
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture not in _ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {_ARCHITECTURES}, got {self.architecture!r}"
            )
        if self.num_keypoints not in _FLIP_PAIRS:
            raise ValueError(f"num_keypoints must be 17 or 133, got {self.num_keypoints!r}")
        self.image_size = tuple(self.image_size)
        self.flip_pairs = _FLIP_PAIRS[self.num_keypoints]
        self.heatmap_size = (self.image_size[0] // STEM_STRIDE, self.image_size[1] // STEM_STRIDE)

    def build_model(self) -> TokenPose:
        common = dict(num_keypoints=self.num_keypoints, image_size=self.image_size, **self.options)
        if self.architecture == "ppt":
            return build_ppt(self.variant, keep_ratio=self.keep_ratio, **common)
        return build_tokenpose(self.variant, **common)

    def loss(self, outputs: Tensor, batch: dict[str, Tensor], epoch: float) -> Tensor:
        return heatmap_mse_loss(outputs, batch["target_heatmaps"], batch["target_weight"])

    def predict(self, model: nn.Module, images: Tensor, flip: bool) -> tuple[Tensor, Tensor]:
        heatmaps = flip_test_heatmaps(model, images, self.flip_pairs) if flip else model(images)
        return decode_heatmaps(heatmaps, stride=(STEM_STRIDE, STEM_STRIDE))

    def target_fn(self):
        return heatmap_target_fn(self.image_size, self.heatmap_size, self.sigma)


def make_task(config: dict) -> TokenPoseTask:
    """The task of a config's ``model`` section (TokenPose and PPT have no curriculum)."""
    if config.get("curriculum"):
        raise ValueError("TokenPose and PPT take no curriculum section")
    return TokenPoseTask(**config.get("model", {}))


def _load_official(path: Path, task: TokenPoseTask) -> nn.Module:
    return load_official_checkpoint(path, task.build_model())


FAMILY = ModelFamily("TokenPose", make_task, _load_official)


def main(argv: list[str] | None = None) -> int:
    return run(FAMILY, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
