"""Top-down pose data from COCO-format keypoint files (COCO-17 and COCO-WholeBody-133).

Each sample is one person, cropped around its ground-truth box to the model input with the
model's aspect ratio, optionally augmented (scale, rotation, flip, half-body). Augmentation is
seeded by ``(seed, epoch, index)``, so a sample is the same whichever worker loads it and a
resumed run sees exactly the data an uninterrupted run would.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from ..common.codec import KeypointCodec
from ..common.keypoints import flip_permutation
from .transforms import (
    Augmentation,
    affine_matrix,
    box_to_crop,
    half_body_crop,
    transform_points,
    warp,
)

__all__ = ["MAX_COORDINATE", "AnnotationWarning", "KeypointDataset", "Person", "load_annotations"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: COCO-WholeBody's extra keypoint groups, in the 133-keypoint order after the 17 body ones.
WHOLEBODY_KEYS = ("foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts")
#: Upper-body keypoints for half-body augmentation: COCO ids 0-10 plus face and hands.
UPPER_BODY = tuple(range(11)) + tuple(range(23, 133))


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


class AnnotationWarning(UserWarning):
    """Annotations of a keypoint file were skipped for non-finite or out-of-range values."""


#: Largest absolute coordinate, box width or height (pixels) an annotation may hold; larger
#: values are taken for corrupt ones.
MAX_COORDINATE = 1e5
#: Parts of a COCO-WholeBody person: annotation field and keypoint count, in keypoint order.
_PARTS_17 = (("keypoints", 17),)
_PARTS_133 = (("keypoints", 17), ("foot_kpts", 6), ("face_kpts", 68), ("lefthand_kpts", 21),
              ("righthand_kpts", 21))  # fmt: skip


class _Malformed(Exception):
    """A structural problem of one annotation: ``(field, description)``."""


def _json_type(value: object) -> str:
    return {type(None): "null", dict: "an object", list: "a list", str: "a string",
            bool: "a boolean"}.get(type(value), "a number")  # fmt: skip


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _numbers(ann: dict, field: str, count: int) -> np.ndarray:
    """``ann[field]`` as ``count`` float64 numbers; raises :class:`_Malformed` otherwise."""
    if field not in ann:
        raise _Malformed(field, "is missing")
    value = ann[field]
    if not isinstance(value, list) or not all(_is_number(v) for v in value):
        raise _Malformed(field, f"must be a list of numbers, got {_json_type(value)}"
                         + ("" if not isinstance(value, list) else " with other values"))
    if len(value) != count:
        raise _Malformed(field, f"must have {count} numbers, got {len(value)}")
    try:
        return np.asarray(value, dtype=np.float64)
    except OverflowError:  # an integer beyond float64: out of range
        return np.full(count, np.inf)


def _bad_value(box: np.ndarray, area: float | None, parts: list[tuple[str, np.ndarray]]
               ) -> str | None:  # fmt: skip
    """The first field of an annotation with a non-finite or out-of-range value, or None."""
    if not np.isfinite(box).all() or (np.abs(box) > MAX_COORDINATE).any():
        return "bbox"
    for field, values in parts:
        xy, visibility = values[:, :2], values[:, 2]
        if not np.isfinite(values).all() or (np.abs(xy) > MAX_COORDINATE).any():
            return field
        if ((visibility < 0) | (visibility > 2)).any():
            return field
    if area is not None and not (np.isfinite(area) and area >= 0):
        return "area"
    return None


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
        The people, skipping crowd annotations, other categories and empty boxes (width or
        height <= 0), as COCO training does.

    Bad input is handled in two ways:

    * the file is **rejected** (``ValueError`` naming the file, the image or annotation id and
      the field) when its structure is wrong: ``images`` or ``annotations`` not a list, a
      record that is not an object, a missing field or one of the wrong type (``bbox`` not 4
      numbers, keypoints not numbers or of the wrong count, ids not integers), an image id
      that appears twice, or an annotation of an image the file does not list;
    * an annotation whose values are non-finite (NaN, infinity) or out of range (a
      coordinate, box width or height beyond :data:`MAX_COORDINATE` pixels, a visibility
      outside ``[0, 2]``, a negative area) is **skipped**, with one
      :class:`AnnotationWarning` per file that counts the skipped annotations and names the
      first (its id and field); if every person annotation is skipped, the file is rejected.
      (COCO-WholeBody's face and hand visibilities may be fractional confidences; ``v > 0``
      marks a labelled keypoint.)
    """
    annotation_file, image_dir = Path(annotation_file), Path(image_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder {str(image_dir)!r} does not exist")
    if num_keypoints not in (17, 133):
        raise ValueError(f"num_keypoints must be 17 or 133, got {num_keypoints}")
    where = repr(str(annotation_file))
    data = _read_json(annotation_file)
    for key in ("images", "annotations"):
        if not isinstance(data[key], list):
            raise ValueError(f"{where}: field {key!r} must be a list of records, got "
                             f"{_json_type(data[key])}")  # fmt: skip
    files: dict[int, Path] = {}
    for index, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not {"id", "file_name"} <= image.keys():
            raise ValueError(f"{where}: every image needs 'id' and 'file_name', got {image!r} "
                             f"(images[{index}])")  # fmt: skip
        image_id = image["id"]
        if not _is_int(image_id):
            raise ValueError(f"{where}: image {image_id!r} (images[{index}]): field 'id' must "
                             f"be an integer, got {_json_type(image_id)}")  # fmt: skip
        if not isinstance(image["file_name"], str):
            raise ValueError(f"{where}: image {image_id}: field 'file_name' must be a string, "
                             f"got {_json_type(image['file_name'])}")  # fmt: skip
        if image_id in files:
            raise ValueError(
                f"{where}: image id {image_id} appears twice in 'images' (field 'id'; files "
                f"{files[image_id].name!r} and {image['file_name']!r})"
            )
        files[image_id] = image_dir / image["file_name"]
    parts = _PARTS_133 if num_keypoints == 133 else _PARTS_17
    people: list[Person] = []
    skipped: list[tuple[object, str]] = []
    candidates = 0
    for index, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise ValueError(f"{where}: annotations[{index}] must be an object, got "
                             f"{_json_type(ann)}")  # fmt: skip
        ann_id = ann.get("id", f"#{index}")
        try:
            if ann.get("iscrowd", 0) or ann.get("category_id", 1) != 1:
                continue
            if "id" in ann and not _is_int(ann["id"]):
                raise _Malformed("id", f"must be an integer, got {_json_type(ann['id'])}")
            box = _numbers(ann, "bbox", 4)
            values = [(field, _numbers(ann, field, 3 * count).reshape(-1, 3))
                      for field, count in parts]  # fmt: skip
            if "image_id" not in ann:
                raise _Malformed("image_id", "is missing")
            image_id = ann["image_id"]
            if not _is_int(image_id):
                raise _Malformed("image_id", f"must be an integer, got {_json_type(image_id)}")
            if image_id not in files:
                raise _Malformed("image_id", f"refers to image {image_id}, which 'images' lacks")
            area = ann.get("area")
            if area is not None and not _is_number(area):
                raise _Malformed("area", f"must be a number, got {_json_type(area)}")
        except _Malformed as error:
            field, problem = error.args
            raise ValueError(
                f"{where}: malformed annotation {ann_id!r}: field {field!r} {problem}"
            ) from None
        candidates += 1
        bad = _bad_value(box, None if area is None else float(area), values)
        if bad is not None:
            skipped.append((ann_id, bad))
            continue
        keypoints = np.concatenate([v for _, v in values])
        x, y, w, h = (float(v) for v in box)
        if w <= 0 or h <= 0 or (annotated_only and not (keypoints[:, 2] > 0).any()):
            continue
        area = float(area) if area is not None else w * h
        annotation_id = ann["id"] if "id" in ann else len(people)
        people.append(
            Person(image_id, annotation_id, files[image_id], (x, y, w, h), area, keypoints)
        )
    if skipped:
        first_id, first_field = skipped[0]
        summary = (f"{len(skipped)} annotation(s) of {where} with non-finite or out-of-range "
                   f"values (first: annotation {first_id!r}, field {first_field!r})")  # fmt: skip
        if len(skipped) == candidates:
            raise ValueError(f"every person annotation was unusable: {summary}")
        warnings.warn(f"skipped {summary}", AnnotationWarning, stacklevel=2)
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


class KeypointDataset(Dataset):
    """Top-down person crops with their training targets.

    Args:
        annotation_file, image_dir: a COCO-format keypoint data set.
        image_size: model input ``(height, width)``.
        num_keypoints: 17 or 133.
        codec: the model's codec (e.g. :class:`~tokenprune_models.common.simcc.SimCCCodec`), which
            encodes each item's keypoints into its training targets; None: no targets.
        augmentation: training augmentation, or None (validation).
        flip_pairs: left/right pairs, needed for flip augmentation.
        seed: augmentation seed; call :meth:`set_epoch` before each epoch.
        padding: box enlargement of the crop.

    Each item is a dict of tensors: ``image [3, H, W]`` (ImageNet-normalised), the codec's
    targets (e.g. ``target_x``, ``target_y``, ``target_weight``),
    ``keypoints [K, 2]`` in input pixels, ``visible [K]``, ``centre [2]``, ``size [2]`` (the
    crop in image pixels, to map predictions back), ``image_id`` and ``annotation_id``.
    """

    def __init__(
        self,
        annotation_file: str | os.PathLike,
        image_dir: str | os.PathLike,
        image_size: tuple[int, int],
        num_keypoints: int = 17,
        codec: KeypointCodec | None = None,
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
        if codec is not None and tuple(codec.image_size) != self.image_size:
            raise ValueError(
                f"codec.image_size {tuple(codec.image_size)} must equal image_size "
                f"{self.image_size}"
            )
        self.num_keypoints = num_keypoints
        self.codec = codec
        self.augmentation = augmentation
        self.flip_perm = flip_permutation(num_keypoints, flip_pairs)
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
        # COCO-WholeBody's fractional visibilities (0 < v < 1) mark labelled keypoints too
        visible = np.ceil(person.keypoints[:, 2]).astype(np.int64)
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
        matrix = affine_matrix(centre, size, rotation, (height, width))
        crop = warp(image, matrix, (height, width))
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
        if self.codec is not None:  # the codec takes a batch: this item is a batch of one
            targets = self.codec.encode(torch.from_numpy(inputs).float()[None],
                                        torch.from_numpy(visible)[None])  # fmt: skip
            item.update({key: value[0] for key, value in targets.items()})
        return item
