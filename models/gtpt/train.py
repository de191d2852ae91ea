"""Train or evaluate GTPT.

    python -m tokenprune_models.gtpt.train --config models/gtpt/configs/gtpt_t_coco.yaml \\
        --data /datasets/coco --output runs/gtpt_t_coco
    python -m tokenprune_models.gtpt.train ... --resume runs/gtpt_t_coco/last.pt
    python -m tokenprune_models.gtpt.train ... --eval-only --checkpoint runs/gtpt_t_coco/best.pt
    python -m tokenprune_models.gtpt.train ... --eval-only --official-checkpoint gtpt_t_coco.pth
    torchrun --nproc_per_node 4 -m tokenprune_models.gtpt.train ...      # several GPUs (DDP)

The config's ``model`` section names a preset of :data:`tokenprune_models.gtpt.config.PRESETS`
(``preset: gtpt_t_coco``) and overrides of its
:class:`~tokenprune_models.gtpt.config.GTPTConfig` fields (``image_size``, ``keep_rates``,
``keypoint_init_std``, ...); ``curriculum`` is the keep-rate curriculum
(:func:`keep_rate_schedule`).

``--set section.key=value`` overrides a config entry (e.g. ``--set train.epochs=5``). The data
folder holds the files named in the config's ``data`` section (COCO's layout by default; the
synthetic data set of ``tokenprune_models.pose.synthetic`` has its own config). The command
line itself is :func:`tokenprune_models.common.engine.run` (the 2-D data and trainer:
:mod:`tokenprune_models.pose.cli`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from tokenprune import (
    ConstantKeepRate,
    CosineWarmupKeepRate,
    KeepRateSchedule,
    LinearWarmupKeepRate,
)

from ..common.engine import Trainer
from ..common.presets import check_keys, config_from_section
from ..pose.cli import PoseFamily, run
from ..pose.cli import build_trainer as build_pose_trainer
from ..pose.engine import PoseTask
from .config import PRESETS, GTPTConfig
from .convert import fit_simcc_bins, load_official_checkpoint
from .model import GTPT, GTPTOutput


def keep_rate_schedule(
    target: Sequence[float],
    kind: str = "direct",
    warmup_epochs: float = 10,
    end_epoch: float = 100,
) -> KeepRateSchedule:
    """GTPT's keep-rate curriculum.

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


class _TrainingPasses(nn.Module):
    """``forward(images)`` runs GTPT's pruned and entire passes (what DDP wraps)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor):
        return self.model.forward_train(images)


@dataclass
class GTPTTask(PoseTask):
    """GTPT trained with the Global Perceived loss and a keep-rate curriculum towards
    ``config.keep_rates``; the data and the predictions share ``config.codec``.

    Attributes:
        config: the network (a preset of :data:`~tokenprune_models.gtpt.config.PRESETS` and
            overrides).
        curriculum, warmup_epochs, end_epoch: see :func:`keep_rate_schedule`.
    """

    config: GTPTConfig = PRESETS["gtpt_t_coco"]
    curriculum: str = "direct"
    warmup_epochs: float = 10
    end_epoch: float = 100

    def __post_init__(self) -> None:
        if not isinstance(self.config, GTPTConfig):
            raise TypeError(f"config must be a GTPTConfig, got {type(self.config).__name__}")
        self.image_size = self.config.image_size
        self.num_keypoints = self.config.num_keypoints
        self.flip_pairs = self.config.flip_pairs
        self.codec = self.config.codec
        self.schedule = keep_rate_schedule(
            self.config.keep_rates, self.curriculum, self.warmup_epochs, self.end_epoch
        )

    def build_model(self) -> nn.Module:
        return GTPT(self.config)

    def load_initial_weights(
        self, model: nn.Module, state_dict: dict[str, Tensor], source: str = "weights"
    ) -> None:
        """Strict load; weights trained at another input size (progressive resolution) get
        their SimCC classifiers resized to this size's bins (:func:`fit_simcc_bins`, as
        :func:`~tokenprune_models.gtpt.convert.checkpoint_filter` does)."""
        super().load_initial_weights(model, fit_simcc_bins(state_dict, model), source)

    def training_module(self, model: nn.Module) -> nn.Module:
        return _TrainingPasses(model)

    def prepare_step(self, model: nn.Module, epoch: float) -> None:
        model.keep_rates = self.schedule(epoch)

    def loss(self, outputs: tuple[GTPTOutput, GTPTOutput], batch: dict[str, Tensor],
             epoch: float) -> Tensor:  # fmt: skip
        """The Global Perceived loss of the pruned and the entire pass."""
        pruned, entire = outputs
        return self.codec.loss((pruned.x_logits, pruned.y_logits), batch,
                               entire=(entire.x_logits, entire.y_logits))  # fmt: skip

    def predict(self, model: nn.Module, images: Tensor, flip: bool) -> tuple[Tensor, Tensor]:
        outputs = self.codec.flip_test(model, images, self.flip_pairs) if flip else model(images)
        return self.codec.decode(outputs)


#: The keys of a config's ``curriculum`` section and the :class:`GTPTTask` fields they set.
CURRICULUM_KEYS = {"kind": "curriculum", "warmup_epochs": "warmup_epochs", "end_epoch": "end_epoch"}


def make_task(config: dict) -> GTPTTask:
    """The GTPT task of a config's ``model`` section (a preset of
    :data:`~tokenprune_models.gtpt.config.PRESETS` and its overrides) and ``curriculum`` section
    (``kind``, ``warmup_epochs``, ``end_epoch``: see :func:`keep_rate_schedule`).

    Raises:
        ValueError: an unknown key in either section (every valid one listed), a missing or
            unknown preset, or a bad value.
    """
    curriculum = check_keys(config.get("curriculum"), CURRICULUM_KEYS,
                            "config section 'curriculum'")  # fmt: skip
    network, _ = config_from_section(config.get("model"), PRESETS)
    return GTPTTask(network, **{CURRICULUM_KEYS[k]: v for k, v in curriculum.items()})


def _load_official(path: Path, task: GTPTTask) -> nn.Module:
    return load_official_checkpoint(path, task.config)


FAMILY = PoseFamily("GTPT", make_task, _load_official)


def build_trainer(config: dict, data_root: str | Path, output: str | Path,
                  with_train: bool = True) -> Trainer:  # fmt: skip
    """The GTPT task, data sets and trainer a config describes."""
    return build_pose_trainer(make_task(config), config, data_root, output, with_train)


def main(argv: list[str] | None = None) -> int:
    return run(FAMILY, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
