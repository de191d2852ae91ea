"""The training / evaluation command line shared by the pose model families.

A family (GTPT, TokenPose, PPT, DPPT, ...) describes itself with a :class:`ModelFamily`: how a
config becomes a :class:`~models.pose.engine.PoseTask` and, optionally, how a checkpoint of the
official implementation is loaded. :func:`run` is then the whole CLI:

    python -m models.<family>.train --config CONFIG --data ROOT [--output DIR]
        [--set section.key=value ...] [--resume last.pt]
        [--eval-only (--checkpoint best.pt | --official-checkpoint file.pth)]

A config is YAML with the sections ``model`` and ``curriculum`` (given to the family),
``data`` (annotation and image paths relative to ``--data``; COCO's layout by default),
``train`` (:class:`~models.pose.engine.TrainConfig`) and ``augmentation``
(:class:`~models.pose.transforms.Augmentation`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import nn

from .data import KeypointDataset
from .engine import PoseTask, TrainConfig, Trainer, load_weights
from .transforms import Augmentation

__all__ = ["COCO_DATA", "ModelFamily", "build_trainer", "load_config", "run"]

#: Where COCO 2017 keeps its person keypoints, relative to the data root.
COCO_DATA = {
    "train_annotations": "annotations/person_keypoints_train2017.json",
    "train_images": "train2017",
    "val_annotations": "annotations/person_keypoints_val2017.json",
    "val_images": "val2017",
}
SECTIONS = ("model", "curriculum", "data", "train", "augmentation")


@dataclass(frozen=True)
class ModelFamily:
    """What the CLI needs to know about a model family.

    Attributes:
        name: shown in ``--help``.
        make_task: the task of a config (it reads the ``model`` and ``curriculum`` sections).
        load_official: loads a released checkpoint of the official implementation for a task,
            for ``--eval-only --official-checkpoint``; None if there is none.
    """

    name: str
    make_task: Callable[[dict], PoseTask]
    load_official: Callable[[Path, PoseTask], nn.Module] | None = None


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> dict:
    """Read a YAML config and apply ``section.key=value`` overrides (values parsed as YAML)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config {str(path)!r} does not exist")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"config {str(path)!r} is not valid YAML: {error}") from None
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ValueError(f"--set takes section.key=value, got {item!r}")
        section, name = key.split(".", 1)
        config.setdefault(section, {})[name] = yaml.safe_load(value)
    unknown = set(config) - set(SECTIONS)
    if unknown:
        raise ValueError(
            f"config {str(path)!r} has unknown sections {sorted(unknown)} (known: {SECTIONS})"
        )
    return config


def build_trainer(
    task: PoseTask, config: dict, data_root: str | Path, output: str | Path, with_train: bool = True
) -> Trainer:
    """The data sets and trainer of ``task`` under ``config``'s ``data``, ``train`` and
    ``augmentation`` sections."""
    data = {**COCO_DATA, **config.get("data", {})}
    root = Path(data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist")
    train_cfg = TrainConfig(output=str(output), **config.get("train", {}))
    train_set = None
    if with_train:
        train_set = KeypointDataset(
            root / data["train_annotations"], root / data["train_images"], task.image_size,
            task.num_keypoints, task.target_fn(), Augmentation(**config.get("augmentation", {})),
            task.flip_pairs, seed=train_cfg.seed,
        )  # fmt: skip
    val_annotations = root / data["val_annotations"]
    val_set = KeypointDataset(val_annotations, root / data["val_images"], task.image_size,
                              task.num_keypoints)  # fmt: skip
    return Trainer(task, train_cfg, train_set, val_set, val_annotations)


def run(family: ModelFamily, argv: Sequence[str] | None = None, doc: str | None = None) -> int:
    """Parse ``argv`` and train, resume or evaluate; returns the exit status."""
    parser = argparse.ArgumentParser(
        description=doc or f"Train or evaluate {family.name}.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path, help="data set root folder")
    parser.add_argument("--output", type=Path, default=Path("runs") / family.name.lower())
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE")  # fmt: skip
    parser.add_argument("--resume", type=Path, help="continue from a checkpoint of this CLI")
    parser.add_argument("--eval-only", action="store_true")
    parser.add_argument(
        "--checkpoint", type=Path,
        help="with --eval-only: a checkpoint of this CLI or a weights-only file (shipped weights)",
    )  # fmt: skip
    if family.load_official is not None:
        parser.add_argument(
            "--official-checkpoint", type=Path,
            help="with --eval-only: a released checkpoint of the official implementation",
        )  # fmt: skip
    args = parser.parse_args(argv)

    config = load_config(args.config, args.overrides)
    task = family.make_task(config)
    trainer = build_trainer(task, config, args.data, args.output, with_train=not args.eval_only)
    if args.eval_only:
        official = getattr(args, "official_checkpoint", None)
        if official is not None:
            model = family.load_official(official, task).to(trainer.device)
        elif args.checkpoint is not None:
            weights = load_weights(args.checkpoint)
            task.load_initial_weights(trainer.model, weights, repr(str(args.checkpoint)))
            model = trainer.model
        else:
            parser.error("--eval-only needs --checkpoint or --official-checkpoint")
        metrics = trainer.evaluate(model, results_file="results.json")
        if trainer.is_main:
            print(json.dumps(metrics, indent=2))
        return 0
    if args.resume is not None:
        trainer.resume(args.resume)
    try:
        metrics = trainer.fit()
    except KeyboardInterrupt as stop:
        if trainer.is_main:
            print(f"\n{stop}", file=sys.stderr)
        return 130
    if trainer.is_main:
        print(json.dumps(metrics, indent=2))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0
