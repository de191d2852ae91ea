"""The training / evaluation command line of the 2-D pose families.

A family (GTPT, TokenPose, PPT, DPPT, ...) describes itself with a :class:`PoseFamily`: how a
config becomes a :class:`~tokenprune_models.pose.engine.PoseTask` and, optionally, how a
checkpoint of the official implementation is loaded. :func:`run` (the engine's,
:func:`tokenprune_models.common.engine.run`) is then the whole CLI:

    python -m tokenprune_models.<family>.train --config CONFIG --data ROOT [--output DIR]
        [--set section.key=value ...] [--resume last.pt] [--device cpu]
        [--eval-only (--checkpoint best.pt | --official-checkpoint file.pth)]

A config is YAML with the sections ``model`` and ``curriculum`` (given to the family),
``data`` (annotation and image paths relative to ``--data``; COCO's layout by default),
``train`` (:class:`~tokenprune_models.pose.engine.PoseTrainConfig`) and ``augmentation``
(:class:`~tokenprune_models.pose.transforms.Augmentation`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..common import engine
from ..common.engine import Trainer, check_keys, config_from, run
from .data import KeypointDataset
from .engine import PoseTask
from .transforms import Augmentation

__all__ = ["COCO_DATA", "PoseFamily", "build_trainer", "load_config", "run"]

#: Where COCO 2017 keeps its person keypoints, relative to the data root.
COCO_DATA = {
    "train_annotations": "annotations/person_keypoints_train2017.json",
    "train_images": "train2017",
    "val_annotations": "annotations/person_keypoints_val2017.json",
    "val_images": "val2017",
}
SECTIONS = ("model", "curriculum", "data", "train", "augmentation")


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict:
    """Read a 2-D family's YAML config and apply ``section.key=value`` overrides (see
    :func:`tokenprune_models.common.engine.load_config`)."""
    return engine.load_config(path, overrides, SECTIONS)


def build_trainer(
    task: PoseTask, config: dict, data_root: str | os.PathLike, output: str | os.PathLike,
    with_train: bool = True, device: str | None = None,
) -> Trainer:  # fmt: skip
    """The data sets and trainer of ``task`` under ``config``'s ``data``, ``train`` and
    ``augmentation`` sections.

    Raises:
        FileNotFoundError: no folder ``data_root``.
        ValueError: an unknown key in one of those sections, naming it and the valid keys.
    """
    data = {**COCO_DATA, **check_keys(config.get("data"), COCO_DATA, "config section 'data'")}
    root = Path(data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist")
    train_cfg = config_from(task.config_type, config.get("train"), "config section 'train'",
                            output=str(output))  # fmt: skip
    augmentation = config_from(Augmentation, config.get("augmentation"),
                               "config section 'augmentation'")  # fmt: skip
    train_set = None
    if with_train:
        train_set = KeypointDataset(
            root / data["train_annotations"], root / data["train_images"], task.image_size,
            task.num_keypoints, task.codec, augmentation, task.flip_pairs,
            seed=train_cfg.seed,
        )  # fmt: skip
    val_set = KeypointDataset(root / data["val_annotations"], root / data["val_images"],
                              task.image_size, task.num_keypoints)  # fmt: skip
    return Trainer(task, train_cfg, train_set, val_set, device)


class PoseFamily(engine.ModelFamily):
    """A 2-D pose family: ``PoseFamily(name, make_task, load_official=None)``, its data
    read by :func:`build_trainer`."""

    sections = SECTIONS

    def build_trainer(self, task: PoseTask, config: dict, data_root: str | os.PathLike,
                      output: str | os.PathLike, with_train: bool = True,
                      device: str | None = None) -> Trainer:  # fmt: skip
        return build_trainer(task, config, data_root, output, with_train, device)
