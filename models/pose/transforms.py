"""Top-down crops: the affine map from an image to the model input, and augmentation.

Coordinates are in pixels with pixel ``i`` centred at ``i`` (COCO's keypoint convention).
A crop is described by a centre and a size ``(w, h)`` in image pixels (a vector in the ``(x, y)``
order of the points) plus a rotation; the map sends that rectangle onto the model input, whose size
is ``(height, width)`` as every size of the zoo.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = [
    "Augmentation",
    "affine_matrix",
    "box_to_crop",
    "half_body_crop",
    "transform_points",
    "warp",
]


def box_to_crop(
    box: Sequence[float], aspect_ratio: float, padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """The crop around a COCO box ``(x, y, w, h)``: centre and size with the model's
    ``aspect_ratio`` (width / height), enlarged by ``padding``."""
    x, y, w, h = (float(v) for v in box)
    centre = np.array([x + (w - 1) / 2, y + (h - 1) / 2])
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return centre, np.array([w, h]) * padding


def affine_matrix(
    centre: np.ndarray,
    size: np.ndarray,
    rotation: float,
    output_size: tuple[int, int],
    inverse: bool = False,
) -> np.ndarray:
    """The 2x3 map from image pixels to output pixels (or back, with ``inverse``).

    The crop's centre goes to the output's centre, the crop is rotated by ``rotation`` degrees
    (counter-clockwise in the image) and scaled so that its width spans the output width.

    Args:
        centre: ``(x, y)`` of the crop in the image.
        size: ``(w, h)`` of the crop in image pixels.
        rotation: degrees.
        output_size: ``(height, width)`` of the output.
    """
    out_h, out_w = output_size
    scale = out_w / float(size[0])
    theta = math.radians(rotation)
    cos, sin = math.cos(theta) * scale, math.sin(theta) * scale
    # x_out = R (x_in - centre) + out_centre, with R rotating counter-clockwise on screen
    linear = np.array([[cos, sin], [-sin, cos]])
    out_centre = np.array([(out_w - 1) / 2, (out_h - 1) / 2])
    forward = np.concatenate([linear, (out_centre - linear @ centre)[:, None]], axis=1)
    if not inverse:
        return forward
    inv_linear = np.linalg.inv(linear)
    return np.concatenate([inv_linear, (-inv_linear @ forward[:, 2])[:, None]], axis=1)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine map to ``[K, 2]`` points."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp(image: Image.Image, matrix: np.ndarray, output_size: tuple[int, int]) -> Image.Image:
    """Resample ``image`` through the image-to-output map ``matrix`` (bilinear, zero fill) into
    an image of ``output_size`` ``(height, width)``."""
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    # PIL samples output pixel (i, j) at the input position inverse @ (i + 0.5, j + 0.5) in a
    # convention where pixel centres sit at +0.5; ours sit at integers, hence the shifts.
    shift_in = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1.0]])
    shift_out = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1.0]])
    pil = (shift_in @ np.vstack([inverse, [0, 0, 1]]) @ shift_out)[:2].reshape(-1)
    height, width = output_size
    return image.transform((width, height), Image.Transform.AFFINE, tuple(pil),
                           resample=Image.Resampling.BILINEAR)  # fmt: skip


def half_body_crop(
    points: np.ndarray,
    visible: np.ndarray,
    upper_ids: Sequence[int],
    rng: np.random.Generator,
    aspect_ratio: float,
    min_visible: int = 8,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Half-body augmentation: a crop around the upper or the lower body's visible keypoints.

    Returns None when fewer than ``min_visible`` keypoints are labelled or the chosen half has
    fewer than 2.
    """
    shown = visible > 0
    if shown.sum() <= min_visible:
        return None
    upper = np.zeros(len(points), dtype=bool)
    upper[list(upper_ids)] = True
    half = shown & (upper if rng.random() < 0.5 else ~upper)
    if half.sum() < 2:
        half = shown & ~half if (shown & ~half).sum() >= 2 else half
        if half.sum() < 2:
            return None
    selected = points[half]
    low, high = selected.min(0), selected.max(0)
    centre = (low + high) / 2
    w, h = high - low
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    return centre, np.array([w, h]) * 1.5


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation of the top-down pipeline (HRNet/SimCC defaults).

    Attributes:
        scale: the crop size is multiplied by a factor in ``[1 - scale, 1 + scale]``.
        rotation: standard deviation of the rotation in degrees (clipped at twice it), applied
            with probability ``rotation_prob``.
        flip_prob: probability of a horizontal flip.
        half_body_prob: probability of a half-body crop (needs more than 8 labelled keypoints).
    """

    scale: float = 0.35
    rotation: float = 45.0
    rotation_prob: float = 0.6
    flip_prob: float = 0.5
    half_body_prob: float = 0.3
