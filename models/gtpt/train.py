"""Train or evaluate GTPT.

    python -m models.gtpt.train --config models/gtpt/configs/gtpt_t_coco.yaml \\
        --data /datasets/coco --output runs/gtpt_t_coco
    python -m models.gtpt.train ... --resume runs/gtpt_t_coco/last.pt
    python -m models.gtpt.train ... --eval-only --checkpoint runs/gtpt_t_coco/best.pt
    python -m models.gtpt.train ... --eval-only --official-checkpoint gtpt_t_coco.pth
    torchrun --nproc_per_node 4 -m models.gtpt.train ...      # several GPUs (DDP)

``--set section.key=value`` overrides a config entry (e.g. ``--set train.epochs=5``). The data
folder holds the files named in the config's ``data`` section (COCO's layout by default; the
synthetic data set of ``models.pose.synthetic`` has its own config).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import Tensor, nn

from models.common.simcc import decode_simcc, flip_test
from models.pose.data import KeypointDataset, simcc_target_fn
from models.pose.engine import PoseTask, TrainConfig, Trainer, load_training_checkpoint
from models.pose.transforms import Augmentation

from .build import build_gtpt
from .config import LAYOUTS, SPLIT_RATIO
from .convert import load_official_checkpoint
from .training import SIGMA, gtpt_loss, keep_rate_schedule

DEFAULT_DATA = {
    "train_annotations": "annotations/person_keypoints_train2017.json",
    "train_images": "train2017",
    "val_annotations": "annotations/person_keypoints_val2017.json",
    "val_images": "val2017",
}


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
        return build_gtpt(self.variant, self.dataset, self.keep_rates, self.image_size)

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


def load_config(path: str | Path, overrides: list[str] = ()) -> dict:
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
    unknown = set(config) - {"model", "curriculum", "data", "train", "augmentation"}
    if unknown:
        raise ValueError(f"config {str(path)!r} has unknown sections {sorted(unknown)}")
    return config


def build_trainer(config: dict, data_root: str | Path, output: str | Path,
                  with_train: bool = True) -> Trainer:  # fmt: skip
    """The task, data sets and trainer a config describes."""
    curriculum = dict(config.get("curriculum", {}))
    if "kind" in curriculum:
        curriculum["curriculum"] = curriculum.pop("kind")
    task = GTPTTask(**config.get("model", {}), **curriculum)
    data = {**DEFAULT_DATA, **config.get("data", {})}
    root = Path(data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist")
    train_cfg = TrainConfig(output=str(output), **config.get("train", {}))
    layout = LAYOUTS[task.dataset]
    train_set = None
    if with_train:
        augmentation = Augmentation(**config.get("augmentation", {}))
        train_set = KeypointDataset(
            root / data["train_annotations"], root / data["train_images"], task.image_size,
            task.num_keypoints, task.target_fn(), augmentation, layout.flip_pairs,
            seed=train_cfg.seed,
        )  # fmt: skip
    val_annotations = root / data["val_annotations"]
    val_set = KeypointDataset(val_annotations, root / data["val_images"], task.image_size,
                              task.num_keypoints)  # fmt: skip
    return Trainer(task, train_cfg, train_set, val_set, val_annotations)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path, help="data set root folder")
    parser.add_argument("--output", type=Path, default=Path("runs/gtpt"))
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE")  # fmt: skip
    parser.add_argument("--resume", type=Path, help="continue from a checkpoint of this CLI")
    parser.add_argument("--eval-only", action="store_true")
    parser.add_argument("--checkpoint", type=Path, help="with --eval-only: a checkpoint of ours")
    parser.add_argument(
        "--official-checkpoint", type=Path,
        help="with --eval-only: a released checkpoint of the official implementation",
    )  # fmt: skip
    args = parser.parse_args(argv)

    config = load_config(args.config, args.overrides)
    trainer = build_trainer(config, args.data, args.output, with_train=not args.eval_only)
    if args.eval_only:
        if args.official_checkpoint is not None:
            official = load_official_checkpoint(args.official_checkpoint, trainer.task.variant,
                                                trainer.task.dataset)  # fmt: skip
            model = official.to(trainer.device)
        elif args.checkpoint is not None:
            state = load_training_checkpoint(args.checkpoint)
            trainer.model.load_state_dict(state["ema"] or state["model"])
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


if __name__ == "__main__":
    sys.exit(main())
