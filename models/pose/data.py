"""Top-down pose data from COCO-format keypoint files (COCO-17 and COCO-WholeBody-133).

Each sample is one person, cropped around its ground-truth box to the model input with the
model's aspect ratio, optionally augmented (scale, rotation, flip, half-body). Augmentation is
seeded by ``(seed, epoch, index)``, so a sample is the same whichever worker loads it and a
resumed run sees exactly the data an uninterrupted run would.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from models.common.heatmap import heatmap_targets
from models.common.simcc import simcc_targets

from .transforms import (
    Augmentation,
    affine_matrix,
    box_to_crop,
    half_body_crop,
    transform_points,
    warp,
)

__all__ = [
    "KeypointDataset", "Person", "heatmap_target_fn", "load_annotations", "simcc_target_fn",
]  # fmt: skip

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: COCO-WholeBody's extra keypoint groups, in the 133-keypoint order after the 17 body ones.
WHOLEBODY_KEYS = ("foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")
#: Upper-body keypoints for half-body augmentation: COCO ids 0-10 plus face and hands.
UPPER_BODY = tuple(range(11)) + tuple(range(23, 133))

TargetFn = Callable[[np.ndarray, np.ndarray], dict[str, Tensor]]


@dataclass(frozen=True)
class Person:
    """One annotated person: ``keypoints [K, 3]`` as ``(x, y, visibility)``."""

    image_id: int
    annotation_id: int
    file: Path
    box: tuple[float, float, float, float]
    area: float
    keypoints: np.ndarray


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"annotation file {str(path)!r} is not valid JSON: {error}") from None
    if not isinstance(data, dict) or not {"images", "annotations"} <= data.keys():
        raise ValueError(
            f"annotation file {str(path)!r} is not in the COCO format (needs 'images' and "
            "'annotations')"
        )
    return data


def load_annotations(
    annotation_file: str | os.PathLike,
    image_dir: str | os.PathLike,
    num_keypoints: int = 17,
    annotated_only: bool = False,
) -> list[Person]:
    """Read the people of a COCO keypoint file.

    Args:
        annotation_file: ``person_keypoints_*.json`` or a COCO-WholeBody file.
        image_dir: folder of the images the file names.
        num_keypoints: 17 (body) or 133 (COCO-WholeBody: body, feet, face, hands).
        annotated_only: keep only people with at least one labelled keypoint (training).

    Returns:
        The people, skipping crowd annotations and empty boxes.
    """
    annotation_file, image_dir = Path(annotation_file), Path(image_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder {str(image_dir)!r} does not exist")
    if num_keypoints not in (17, 133):
        raise ValueError(f"num_keypoints must be 17 or 133, got {num_keypoints}")
    data = _read_json(annotation_file)
    files = {}
    for image in data["images"]:
        try:
            files[image["id"]] = image_dir / image["file_name"]
        except (KeyError, TypeError):
            raise ValueError(
                f"{str(annotation_file)!r}: every image needs 'id' and 'file_name', got {image!r}"
            ) from None
    people = []
    for ann in data["annotations"]:
        try:
            if ann.get("iscrowd", 0) or ann.get("category_id", 1) != 1:
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            values = list(ann["keypoints"])
            if num_keypoints == 133:
                for key in WHOLEBODY_KEYS:
                    values += list(ann[key])
            keypoints = np.asarray(values, dtype=np.float64).reshape(-1, 3)
            image_file = files[ann["image_id"]]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"{str(annotation_file)!r}: malformed annotation {ann.get('id', '?')!r} "
                f"({type(error).__name__}: {error})"
            ) from None
        if len(keypoints) != num_keypoints:
            raise ValueError(
                f"{str(annotation_file)!r}: annotation {ann.get('id')} has {len(keypoints)} "
                f"keypoints, expected {num_keypoints}"
            )
        if w <= 0 or h <= 0 or (annotated_only and not (keypoints[:, 2] > 0).any()):
            continue
        area = float(ann.get("area", w * h))
        annotation_id = int(ann.get("id", len(people)))
        people.append(
            Person(int(ann["image_id"]), annotation_id, image_file, (x, y, w, h), area, keypoints)
        )
    return people


def load_image(path: Path) -> Image.Image:
    """Decode an RGB image, naming the file in any error."""
    if not path.is_file():
        raise FileNotFoundError(f"image {str(path)!r} does not exist")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot decode image {str(path)!r}: {error}") from None


def simcc_target_fn(
    image_size: tuple[int, int], split_ratio: float = 2.0, sigma: float = 4.0
) -> TargetFn:
    """Targets for SimCC models: ``target_x``, ``target_y`` and ``target_weight``."""
    height, width = image_size

    def targets(points: np.ndarray, visible: np.ndarray) -> dict[str, Tensor]:
        tx, ty, weight = simcc_targets(
            torch.from_numpy(points).float()[None], torch.from_numpy(visible)[None],
            (width, height), split_ratio, sigma,
        )  # fmt: skip
        return {"target_x": tx[0], "target_y": ty[0], "target_weight": weight[0]}

    return targets


def heatmap_target_fn(
    image_size: tuple[int, int], heatmap_size: tuple[int, int], sigma: float = 2.0
) -> TargetFn:
    """Targets for heatmap models: ``target_heatmaps [K, h, w]`` and ``target_weight [K]``;
    sizes are ``(height, width)`` like the model's."""
    (height, width), (map_h, map_w) = image_size, heatmap_size

    def targets(points: np.ndarray, visible: np.ndarray) -> dict[str, Tensor]:
        heatmaps, weight = heatmap_targets(
            torch.from_numpy(points).float()[None], torch.from_numpy(visible)[None],
            (width, height), (map_w, map_h), sigma,
        )  # fmt: skip
        return {"target_heatmaps": heatmaps[0], "target_weight": weight[0]}

    return targets


class KeypointDataset(Dataset):
    """Top-down person crops with their training targets.

    Args:
        annotation_file, image_dir: a COCO-format keypoint data set.
        image_size: model input ``(height, width)``.
        num_keypoints: 17 or 133.
        targets: maps keypoints in input pixels ``[K, 2]`` and visibility ``[K]`` to the
            target tensors of the model (e.g. :func:`simcc_target_fn`).
        augmentation: training augmentation, or None (validation).
        flip_pairs: left/right pairs, needed for flip augmentation.
        seed: augmentation seed; call :meth:`set_epoch` before each epoch.
        padding: box enlargement of the crop.

    Each item is a dict of tensors: ``image [3, H, W]`` (ImageNet-normalised), the targets,
    ``keypoints [K, 2]`` in input pixels, ``visible [K]``, ``centre [2]``, ``size [2]`` (the
    crop in image pixels, to map predictions back), ``image_id`` and ``annotation_id``.
    """

    def __init__(
        self,
        annotation_file: str | os.PathLike,
        image_dir: str | os.PathLike,
        image_size: tuple[int, int],
        num_keypoints: int = 17,
        targets: TargetFn | None = None,
        augmentation: Augmentation | None = None,
        flip_pairs: Sequence[tuple[int, int]] = (),
        seed: int = 0,
        padding: float = 1.25,
    ) -> None:
        self.people = load_annotations(
            annotation_file, image_dir, num_keypoints, annotated_only=augmentation is not None
        )
        self.annotation_file = Path(annotation_file)
        self.image_size = tuple(image_size)
        self.num_keypoints = num_keypoints
        self.targets = targets
        self.augmentation = augmentation
        self.flip_perm = list(range(num_keypoints))
        for a, b in flip_pairs:
            self.flip_perm[a], self.flip_perm[b] = b, a
        if augmentation is not None and augmentation.flip_prob > 0 and not flip_pairs:
            raise ValueError("flip augmentation needs flip_pairs")
        self.seed = seed
        self.epoch = 0
        self.padding = padding
        self.upper_body = [k for k in UPPER_BODY if k < num_keypoints]

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.people)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        person = self.people[index]
        image = load_image(person.file)
        height, width = self.image_size
        points = person.keypoints[:, :2].copy()
        visible = person.keypoints[:, 2].astype(np.int64)
        centre, size = box_to_crop(person.box, width / height, self.padding)
        rotation = 0.0
        aug = self.augmentation
        if aug is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            if rng.random() < aug.half_body_prob:
                half = half_body_crop(points, visible, self.upper_body, rng, width / height)
                if half is not None:
                    centre, size = half
            size = size * float(np.clip(rng.normal() * aug.scale + 1, 1 - aug.scale, 1 + aug.scale))
            if rng.random() < aug.rotation_prob:
                rotation = float(np.clip(rng.normal() * aug.rotation, -2 * aug.rotation,
                                         2 * aug.rotation))  # fmt: skip
            if rng.random() < aug.flip_prob:
                image = ImageOps.mirror(image)
                points[:, 0] = image.width - 1 - points[:, 0]
                points, visible = points[self.flip_perm], visible[self.flip_perm]
                centre = np.array([image.width - 1 - centre[0], centre[1]])
        matrix = affine_matrix(centre, size, rotation, (width, height))
        crop = warp(image, matrix, (width, height))
        inputs = transform_points(points, matrix)
        pixels = torch.from_numpy(np.asarray(crop, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
        std = torch.tensor(IMAGENET_STD)[:, None, None]
        item = {
            "image": (pixels - mean) / std,
            "keypoints": torch.from_numpy(inputs).float(),
            "visible": torch.from_numpy(visible),
            "centre": torch.from_numpy(centre).float(),
            "size": torch.from_numpy(np.asarray(size)).float(),
            "image_id": torch.tensor(person.image_id),
            "annotation_id": torch.tensor(person.annotation_id),
        }
        if self.targets is not None:
            item.update(self.targets(inputs, visible))
        return item
