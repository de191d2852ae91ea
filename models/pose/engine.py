"""The 2-D pose task of the training engine (:mod:`tokenprune_models.common.engine`).

:class:`PoseTask` is what a top-down keypoint family (GTPT, TokenPose/PPT, DPPT) implements: the
model, the loss of a batch of :class:`~tokenprune_models.pose.data.KeypointDataset` items, the
keypoint predictions and the codec its data and predictions share. It supplies the rest of the
published 2-D recipe: Adam with a linear warmup and a step (or cosine) schedule
(:class:`PoseTrainConfig`) and OKS AP/AR evaluation with pycocotools (:func:`evaluate_model`).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from tokenprune.checks import check_int

from ..common.codec import KeypointCodec
from ..common.engine import Task, TrainConfig
from .data import KeypointDataset
from .evaluation import evaluate_keypoints, evaluate_wholebody, keypoint_results, write_results
from .transforms import affine_matrix, transform_points

__all__ = ["PoseTask", "PoseTrainConfig", "evaluate_model", "predict_dataset"]


@dataclass
class PoseTrainConfig(TrainConfig):
    """The ``train`` section of a 2-D family: the engine's settings and the schedule."""

    #: "step": the rate drops 10x at each of ``milestones`` (epochs), as published;
    #: "cosine": after the warmup it follows a half cosine from ``lr`` to 0 at the last step.
    lr_schedule: str = "step"
    milestones: tuple[int, ...] = (200, 260)  # epochs at which the learning rate drops 10x
    warmup_steps: int = 0  # linear learning-rate warmup over the first steps

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lr_schedule not in ("step", "cosine"):
            raise ValueError(f"lr_schedule must be 'step' or 'cosine', got {self.lr_schedule!r}")
        check_int("warmup_steps", self.warmup_steps, low=0)
        self.milestones = tuple(self.milestones)


class PoseTask(Task):
    """What the engine needs from a top-down keypoint family."""

    config_type: ClassVar[type[TrainConfig]] = PoseTrainConfig
    input_key: ClassVar[str] = "image"  # [B, 3, H, W]

    #: Input ``(height, width)``, keypoint count and left/right pairs of the model, and the
    #: codec that encodes the data's training targets (and decodes the model's outputs).
    image_size: tuple[int, int]
    num_keypoints: int
    flip_pairs: tuple[tuple[int, int], ...]
    codec: KeypointCodec

    @property
    def metric(self) -> str:
        """OKS AP; over all parts for COCO-WholeBody's 133 keypoints."""
        return "wholebody/AP" if self.num_keypoints == 133 else "AP"

    @abstractmethod
    def predict(self, model: nn.Module, images: Tensor, flip: bool) -> tuple[Tensor, Tensor]:
        """``(keypoints [B, K, 2] in input pixels, scores [B, K])`` of ``images [B, 3, H, W]``
        in eval mode."""

    def build_optimizer(self, model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
        """Adam at ``config.lr``."""
        return torch.optim.Adam(model.parameters(), lr=config.lr)

    def lr_factor(self, step: int, config: PoseTrainConfig, steps_per_epoch: int,
                  total_steps: int) -> float:  # fmt: skip
        """Linear warmup over ``warmup_steps``, then a 10x drop at each milestone epoch
        (``"step"``) or a half cosine to 0 at the last step (``"cosine"``)."""
        warmup = config.warmup_steps
        factor = min(1.0, (step + 1) / warmup) if warmup else 1.0
        if config.lr_schedule == "cosine":
            progress = min(max(step - warmup, 0) / max(total_steps - warmup, 1), 1.0)
            return factor * 0.5 * (1.0 + math.cos(math.pi * progress))
        epoch = step // steps_per_epoch
        return factor * 0.1 ** sum(epoch >= m for m in config.milestones)

    def evaluate(self, model: nn.Module, data: KeypointDataset, device: torch.device,
                 config: TrainConfig, results_path: Path | None = None) -> dict:  # fmt: skip
        """OKS AP/AR on ``data`` against its annotation file (see :func:`evaluate_model`)."""
        return evaluate_model(self, model, data, data.annotation_file, device,
                              config.eval_batch_size, config.workers, config.flip_test,
                              results_path)  # fmt: skip


@torch.no_grad()
def predict_dataset(
    task: PoseTask, model: nn.Module, dataset: KeypointDataset, device, batch_size: int = 64,
    workers: int = 0, flip: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Predictions for every person of ``dataset`` mapped back to image pixels:
    ``(image_ids [N], keypoints [N, K, 2], scores [N, K])``."""
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False)
    ids, points, scores = [], [], []
    for batch in loader:
        coords, conf = task.predict(model, batch["image"].to(device), flip)
        coords, conf = coords.cpu().double().numpy(), conf.cpu().double().numpy()
        for i in range(len(coords)):
            back = affine_matrix(batch["centre"][i].double().numpy(),
                                 batch["size"][i].double().numpy(), 0.0, task.image_size,
                                 inverse=True)  # fmt: skip
            points.append(transform_points(coords[i], back))
        scores.append(conf)
        ids.append(batch["image_id"].numpy())
    if not ids:
        k = task.num_keypoints
        return np.zeros(0, dtype=np.int64), np.zeros((0, k, 2)), np.zeros((0, k))
    return np.concatenate(ids), np.stack(points), np.concatenate(scores)


def evaluate_model(
    task: PoseTask, model: nn.Module, dataset: KeypointDataset, annotations, device,
    batch_size: int = 64, workers: int = 0, flip: bool = True, results_path=None,
) -> dict:  # fmt: skip
    """OKS metrics of ``model`` on ``dataset`` (COCO AP/AR, or per part for 133 keypoints)."""
    ids, points, scores = predict_dataset(task, model, dataset, device, batch_size, workers, flip)
    results = keypoint_results(ids, points, scores)
    if results_path is not None:
        write_results(results, results_path)
    if dataset.num_keypoints == 133:
        return evaluate_wholebody(annotations, results)
    return evaluate_keypoints(annotations, results)
