"""Train or evaluate MixSTE / HoT on 3-D lifting (Human3.6M layout or the synthetic motion set).

    python -m tokenprune_models.pose3d.synthetic --output data/synthetic3d   # the embedded data set
    python -m tokenprune_models.hot.train --config models/hot/configs/synthetic_hot.yaml \\
        --data data/synthetic3d --output runs/hot
    python -m tokenprune_models.hot.train --config models/hot/configs/h36m_hot.yaml \\
        --data data/h36m --output runs/hot_h36m        # HoT's published recipe (243 frames)
    python -m tokenprune_models.hot.train ... --set train.epochs=2 --set model.dim=32   # any entry
    python -m tokenprune_models.hot.train ... --resume runs/hot/last.pt
    python -m tokenprune_models.hot.train ... --eval-only --checkpoint runs/hot/best.pt
    python -m tokenprune_models.hot.train ... --eval-only --official-checkpoint hot_mixste.pth
    torchrun --nproc_per_node 4 -m tokenprune_models.hot.train ...      # several GPUs (DDP)

A config has the sections ``model`` (``preset``: a key of :data:`tokenprune_models.hot.PRESETS`,
``hot_mixste``, ``tpc_mixste`` or ``mixste``, and :class:`~tokenprune_models.hot.model.MixSTEConfig`
fields overriding the preset's), ``data``
(:class:`LiftingData`) and ``train`` (:class:`LiftingTrainConfig`); the loop, its checkpoints
(mid-epoch exact resume) and logs are the engine's (:mod:`tokenprune_models.common.engine`).

The recipe is HoT's: AdamW (weight decay 0.1), the learning rate times 0.99 after every epoch, the
loss of :mod:`tokenprune_models.hot.loss` on root-relative poses, horizontal flips for training and
a flip test for evaluation. MPJPE and P-MPJPE are in millimetres, every test frame scored, pooled
per action and averaged over actions (Protocol #1 and #2; :mod:`tokenprune_models.hot.evaluation`);
``best.pt`` is kept at the lowest test MPJPE, as HoT selects.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from tokenprune.checks import check_bool, check_float, check_int, check_number

from ..common.atomic import write_text_atomic
from ..common.engine import ModelFamily, Task, TrainConfig, Trainer, config_from, run
from ..common.presets import config_from_section
from ..pose3d.h36m import ClipDataset, PoseSequence, load_split
from .build import PRESETS, load_official_checkpoint
from .evaluation import evaluate
from .loss import lifting_loss
from .model import MixSTE, MixSTEConfig, MixSTEOutput

__all__ = [
    "FAMILY", "LiftingData", "LiftingTask", "LiftingTrainConfig", "build_trainer",
    "load_official", "main", "make_task",
]  # fmt: skip


@dataclass
class LiftingTrainConfig(TrainConfig):
    """The ``train`` section of a lifting run: the engine's settings and HoT's schedule."""

    weight_decay: float = 0.1  # AdamW's
    lr_decay: float = 0.99  # the learning rate's factor after every epoch

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number("weight_decay", self.weight_decay, low=0)
        check_float("lr_decay", self.lr_decay, low=0, high=1)


@dataclass(frozen=True)
class LiftingData:
    """The ``data`` section: which files of the data folder, and how training clips are cut.

    Attributes:
        name: the 3-D poses are ``data_3d_<name>.npz``.
        detector: the 2-D keypoints are ``data_2d_<name>_<detector>.npz``.
        train_stride: frames between training clip starts; None: a third of a clip.
        flip: horizontal flip augmentation (probability 0.5 per clip).
    """

    name: str = "h36m"
    detector: str = "cpn_ft_h36m_dbb"
    train_stride: int | None = None
    flip: bool = True

    def __post_init__(self) -> None:
        check_bool("flip", self.flip)
        if self.train_stride is not None:
            check_int("train_stride", self.train_stride, low=1)


@dataclass
class LiftingTask(Task):
    """MixSTE / HoT lifting clips of 2-D keypoints ``inputs_2d [B, F, J, 2]`` to root-relative
    3-D poses ``[B, F, J, 3]`` (seq2frame: the kept frames only) with HoT's recipe.

    Attributes:
        config: the network (a preset of :data:`~tokenprune_models.hot.build.PRESETS` and
            overrides; see :func:`make_task`).
    """

    config: MixSTEConfig = PRESETS["hot_mixste"]

    config_type: ClassVar[type[TrainConfig]] = LiftingTrainConfig
    input_key: ClassVar[str] = "inputs_2d"
    metric: ClassVar[str] = "MPJPE"
    higher_is_better: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not isinstance(self.config, MixSTEConfig):
            raise TypeError(f"config must be a MixSTEConfig, got {type(self.config).__name__}")

    def build_model(self) -> MixSTE:
        return MixSTE(self.config)

    def build_optimizer(self, model: nn.Module, config: LiftingTrainConfig) -> torch.optim.AdamW:
        """AdamW at ``config.lr`` with ``config.weight_decay``."""
        return torch.optim.AdamW(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)  # fmt: skip

    def lr_factor(self, step: int, config: LiftingTrainConfig, steps_per_epoch: int,
                  total_steps: int) -> float:  # fmt: skip
        """``lr_decay`` to the power of the completed epochs."""
        return config.lr_decay ** (step // steps_per_epoch)

    def loss(self, outputs: MixSTEOutput, batch: dict[str, Tensor], epoch: float) -> Tensor:
        """HoT's loss (:func:`~tokenprune_models.hot.loss.lifting_loss`) against ``targets_3d``; a
        seq2frame model is scored on the frames it kept."""
        target = batch["targets_3d"]
        if outputs.poses.shape[1] != target.shape[1]:
            target = target[torch.arange(len(target), device=target.device)[:, None],
                            outputs.kept_idx]  # fmt: skip
        return lifting_loss(outputs.poses.float(), target).total

    def evaluate(self, model: nn.Module, data: list[PoseSequence], device: torch.device,
                 config: TrainConfig, results_path: Path | None = None) -> dict:  # fmt: skip
        """MPJPE / P-MPJPE (mm) on the test sequences ``data``, every frame scored (see
        :func:`~tokenprune_models.hot.evaluation.evaluate`); written as JSON to ``results_path``."""
        metrics = evaluate(model, data, config.flip_test, config.eval_batch_size)
        if results_path is not None:
            write_text_atomic(results_path, json.dumps(metrics, indent=2))
        return metrics

    def settings(self) -> dict:
        """The network's :class:`MixSTEConfig` as a dict."""
        return asdict(self.config)


def make_task(config: dict) -> LiftingTask:
    """The task of a config's ``model`` section: a ``preset`` of
    :data:`~tokenprune_models.hot.build.PRESETS` and :class:`MixSTEConfig` fields overriding it
    (:func:`~tokenprune_models.common.presets.config_from_section`).

    Raises:
        ValueError: an unknown key (every valid one listed), a missing or unknown preset, or
            invalid sizes.
    """
    network, _ = config_from_section(config.get("model"), PRESETS)
    return LiftingTask(network)


def build_trainer(
    task: LiftingTask, config: dict, data_root: str | os.PathLike, output: str | os.PathLike,
    with_train: bool = True, device: str | None = None,
) -> Trainer:  # fmt: skip
    """The trainer of ``task`` on the test split of ``data_root`` and, ``with_train``, clips of
    its training split, under ``config``'s ``data`` and ``train`` sections.

    Raises:
        FileNotFoundError: missing data files.
        ValueError: an unknown key in a section (the valid ones listed), or bad settings.
    """
    data = config_from(LiftingData, config.get("data"), "config section 'data'")
    train_cfg = config_from(task.config_type, config.get("train"), "config section 'train'",
                            output=str(output))  # fmt: skip
    test = load_split(data_root, "test", data.name, data.detector)
    clips = None
    if with_train:
        frames = task.config.num_frames
        stride = data.train_stride if data.train_stride is not None else max(frames // 3, 1)
        train = load_split(data_root, "train", data.name, data.detector)
        clips = ClipDataset(train, frames, stride, flip_prob=0.5 if data.flip else 0.0,
                            seed=train_cfg.seed)  # fmt: skip
    return Trainer(task, train_cfg, clips, test, device)


def load_official(path: str | os.PathLike, task: LiftingTask) -> MixSTE:
    """The task's network with an official MixSTE / HoT checkpoint's weights (see
    :func:`~tokenprune_models.hot.build.load_official_checkpoint`)."""
    return load_official_checkpoint(path, task.config)


class LiftingFamily(ModelFamily):
    """3-D lifting families: data read by :func:`build_trainer`."""

    def build_trainer(self, task: LiftingTask, config: dict, data_root: str | os.PathLike,
                      output: str | os.PathLike, with_train: bool = True,
                      device: str | None = None) -> Trainer:  # fmt: skip
        return build_trainer(task, config, data_root, output, with_train, device)


FAMILY = LiftingFamily("HoT", make_task, load_official)


def main(argv: list[str] | None = None) -> int:
    return run(FAMILY, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
