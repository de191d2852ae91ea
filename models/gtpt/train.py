"""Train or evaluate GTPT.

    python -m models.gtpt.train --config models/gtpt/configs/gtpt_t_coco.yaml \\
        --data /datasets/coco --output runs/gtpt_t_coco
    python -m models.gtpt.train ... --resume runs/gtpt_t_coco/last.pt
    python -m models.gtpt.train ... --eval-only --checkpoint runs/gtpt_t_coco/best.pt
    python -m models.gtpt.train ... --eval-only --official-checkpoint gtpt_t_coco.pth
    torchrun --nproc_per_node 4 -m models.gtpt.train ...      # several GPUs (DDP)

``--set section.key=value`` overrides a config entry (e.g. ``--set train.epochs=5``). The data
folder holds the files named in the config's ``data`` section (COCO's layout by default; the
synthetic data set of ``models.pose.synthetic`` has its own config). The command line itself is
:mod:`models.pose.cli`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from models.common.simcc import decode_simcc, flip_test, resize_simcc_bins
from models.pose.cli import ModelFamily, run
from models.pose.cli import build_trainer as build_pose_trainer
from models.pose.data import simcc_target_fn
from models.pose.engine import PoseTask, Trainer

from .build import build_gtpt
from .config import LAYOUTS, SPLIT_RATIO
from .convert import load_official_checkpoint
from .training import SIGMA, gtpt_loss, keep_rate_schedule


class _TrainingPasses(nn.Module):
    """``forward(images)`` runs GTPT's pruned and entire passes (what DDP wraps)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor):
        return self.model.forward_train(images)


@dataclass
class GTPTTask(PoseTask):
    """GTPT trained with the Global Perceived loss and a keep-rate curriculum."""

    variant: str = "t"
    dataset: str = "coco"
    image_size: tuple[int, int] = (256, 192)
    keep_rates: tuple[float, ...] | None = None
    curriculum: str = "direct"
    warmup_epochs: float = 10
    end_epoch: float = 100
    keypoint_init_std: float = 0.02  # GTPT's; the synthetic recipe departs with 1.0

    def __post_init__(self) -> None:
        layout = LAYOUTS.get(self.dataset)
        if layout is None:
            raise ValueError(f"dataset must be one of {sorted(LAYOUTS)}, got {self.dataset!r}")
        self.image_size = tuple(self.image_size)
        self.num_keypoints = layout.num_keypoints
        self.flip_pairs = layout.flip_pairs
        self.keep_rates = tuple(self.keep_rates or layout.keep_rates)
        self.schedule = keep_rate_schedule(
            self.keep_rates, self.curriculum, self.warmup_epochs, self.end_epoch
        )

    def build_model(self) -> nn.Module:
        return build_gtpt(
            self.variant, self.dataset, self.keep_rates, self.image_size, self.keypoint_init_std
        )

    def load_initial_weights(
        self, model: nn.Module, state_dict: dict[str, Tensor], source: str = "weights"
    ) -> None:
        """Strict load; weights trained at another input size (progressive resolution) get
        their SimCC classifiers resized to this size's bins (:func:`resize_simcc_bins`). The
        rest of GTPT does not depend on the input size (the position table is a fixed sine)."""
        state = dict(state_dict)
        for axis in ("x", "y"):
            bins = getattr(model.head, axis)[1].out_features
            for entry in ("weight", "bias"):
                key = f"head.{axis}.1.{entry}"
                if key in state and state[key].shape[0] != bins:
                    state[key] = resize_simcc_bins(state[key], bins, SPLIT_RATIO)
        super().load_initial_weights(model, state, source)

    def training_module(self, model: nn.Module) -> nn.Module:
        return _TrainingPasses(model)

    def prepare_step(self, model: nn.Module, epoch: float) -> None:
        model.keep_rates = self.schedule(epoch)

    def loss(self, outputs, batch: dict[str, Tensor], epoch: float) -> Tensor:
        pruned, entire = outputs
        targets = batch["target_x"], batch["target_y"], batch["target_weight"]
        return gtpt_loss(pruned, entire, *targets)

    def predict(self, model: nn.Module, images: Tensor, flip: bool) -> tuple[Tensor, Tensor]:
        if flip:
            x_logits, y_logits = flip_test(model, images, self.flip_pairs)
        else:
            x_logits, y_logits = model(images)
        return decode_simcc(x_logits, y_logits, SPLIT_RATIO)

    def target_fn(self):
        return simcc_target_fn(self.image_size, SPLIT_RATIO, SIGMA)


def make_task(config: dict) -> GTPTTask:
    """The GTPT task of a config's ``model`` and ``curriculum`` sections."""
    curriculum = dict(config.get("curriculum", {}))
    if "kind" in curriculum:
        curriculum["curriculum"] = curriculum.pop("kind")
    return GTPTTask(**config.get("model", {}), **curriculum)


def _load_official(path: Path, task: GTPTTask) -> nn.Module:
    return load_official_checkpoint(path, task.variant, task.dataset)


FAMILY = ModelFamily("GTPT", make_task, _load_official)


def build_trainer(config: dict, data_root: str | Path, output: str | Path,
                  with_train: bool = True) -> Trainer:  # fmt: skip
    """The GTPT task, data sets and trainer a config describes."""
    return build_pose_trainer(make_task(config), config, data_root, output, with_train)


def main(argv: list[str] | None = None) -> int:
    return run(FAMILY, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
