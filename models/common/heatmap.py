"""Heatmap keypoints (SimpleBaseline / TokenPose convention): one Gaussian map per keypoint.

A heatmap of ``w x h`` cells covers an input of ``W x H`` pixels with stride ``W / w``; cell
``(i, j)`` stands for input pixel ``(i * stride, j * stride)``. Targets put an unnormalised
Gaussian (peak 1) on the cell nearest to the keypoint, cut off ``3 sigma`` cells from it;
predictions are the arg-max cell moved a quarter cell towards its higher neighbour.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from tokenprune.checks import check_floating

from .keypoints import check_keypoint_inputs, flip_permutation

__all__ = [
    "decode_heatmaps",
    "flip_back_heatmaps",
    "flip_test_heatmaps",
    "heatmap_mse_loss",
    "heatmap_targets",
]


def _check_size(name: str, size) -> tuple[int, int]:
    if not (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(v, int) and v > 0 for v in size)
    ):
        raise TypeError(f"{name} must be a (width, height) pair of positive ints, got {size!r}")
    return int(size[0]), int(size[1])


def heatmap_targets(
    keypoints: Tensor,
    visible: Tensor,
    image_size: tuple[int, int],
    heatmap_size: tuple[int, int],
    sigma: float = 2.0,
) -> tuple[Tensor, Tensor]:
    """Gaussian heatmap targets.

    A keypoint at input pixel ``(u, v)`` is centred on cell ``(round(u / s_x), round(v / s_y))``
    (``s``: the stride per axis; halves round up); cell ``(i, j)`` gets
    ``exp(-((i - c_x)^2 + (j - c_y)^2) / (2 sigma^2))`` within ``3 sigma`` cells of the centre
    on both axes and 0 elsewhere.

    Args:
        keypoints: ``[B, K, 2]`` ``(x, y)`` in input pixels.
        visible: ``[B, K]`` visibility (0 = not labelled).
        image_size: input ``(width, height)``.
        heatmap_size: heatmap ``(width, height)``.
        sigma: Gaussian width in cells (TokenPose and SimpleBaseline: 2).

    Returns:
        ``(heatmaps [B, K, h, w], weight [B, K])``: a labelled keypoint has weight 1 unless its
        whole ``3 sigma`` window lies outside the heatmap (its map is then all zeros);
        unlabelled keypoints have weight 0.
    """
    width, height = _check_size("image_size", image_size)
    map_w, map_h = _check_size("heatmap_size", heatmap_size)
    keypoints = check_keypoint_inputs(keypoints, visible)
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    stride = keypoints.new_tensor([width / map_w, height / map_h])
    centre = torch.floor(keypoints / stride + 0.5)  # [B, K, 2], integer-valued
    reach = int(3 * sigma)
    inside = (
        (centre[..., 0] - reach < map_w)
        & (centre[..., 1] - reach < map_h)
        & (centre[..., 0] + reach >= 0)
        & (centre[..., 1] + reach >= 0)
    )
    weight = ((visible > 0) & inside).to(keypoints.dtype)

    def axis(size: int, c: Tensor) -> Tensor:  # [B, K, size]: the 1-D factor of the Gaussian
        offset = torch.arange(size, dtype=keypoints.dtype, device=keypoints.device) - c[..., None]
        return torch.exp(-(offset**2) / (2 * sigma**2)) * (offset.abs() <= reach)

    heatmaps = axis(map_h, centre[..., 1])[..., :, None] * axis(map_w, centre[..., 0])[..., None, :]
    return heatmaps * weight[..., None, None], weight


def heatmap_mse_loss(heatmaps: Tensor, targets: Tensor, weight: Tensor) -> Tensor:
    """SimpleBaseline's joints MSE: ``0.5 * mean((w_k * (pred - target))^2)`` over batch,
    keypoints and cells.

    Args:
        heatmaps, targets: ``[B, K, h, w]``.
        weight: ``[B, K]`` per-keypoint weights (0 drops a keypoint).
    """
    heatmaps = check_floating("heatmaps", heatmaps, ndim=4)
    if targets.shape != heatmaps.shape:
        raise ValueError(
            f"targets must match heatmaps {tuple(heatmaps.shape)}, got {tuple(targets.shape)}"
        )
    if tuple(weight.shape) != tuple(heatmaps.shape[:2]):
        raise ValueError(
            f"weight must have shape {tuple(heatmaps.shape[:2])}, got {tuple(weight.shape)}"
        )
    error = (heatmaps - targets) * weight[..., None, None].to(heatmaps.dtype)
    return 0.5 * error.pow(2).mean()


def decode_heatmaps(
    heatmaps: Tensor, stride: tuple[float, float] = (1.0, 1.0)
) -> tuple[Tensor, Tensor]:
    """Keypoints from heatmaps: the arg-max cell, moved a quarter cell on each axis towards the
    higher of its two neighbours (where both exist and differ), times ``stride``.

    Args:
        heatmaps: ``[B, K, h, w]``.
        stride: input pixels per cell ``(x, y)``; the default returns cell coordinates.

    Returns:
        ``(coords [B, K, 2] (x, y), scores [B, K])``: the score is the maximum of the map.
    """
    heatmaps = check_floating("heatmaps", heatmaps, ndim=4).float()
    batch, keypoints, map_h, map_w = heatmaps.shape
    if map_h * map_w == 0:
        raise ValueError(f"heatmaps must have at least one cell, got {tuple(heatmaps.shape)}")
    flat = heatmaps.reshape(batch, keypoints, -1)
    scores, index = flat.max(dim=-1)
    x, y = index % map_w, torch.div(index, map_w, rounding_mode="floor")

    def value(px: Tensor, py: Tensor) -> Tensor:
        cell = py.clamp(0, map_h - 1) * map_w + px.clamp(0, map_w - 1)
        return flat.gather(-1, cell[..., None])[..., 0]

    dx = torch.where((x > 0) & (x < map_w - 1), value(x + 1, y) - value(x - 1, y), 0.0)
    dy = torch.where((y > 0) & (y < map_h - 1), value(x, y + 1) - value(x, y - 1), 0.0)
    coords = torch.stack([x + 0.25 * dx.sign(), y + 0.25 * dy.sign()], dim=-1)
    return coords * coords.new_tensor(stride), scores


def flip_back_heatmaps(heatmaps: Tensor, flip_pairs: Sequence[tuple[int, int]]) -> Tensor:
    """Map the heatmaps of a horizontally flipped image back to the original image: mirror the
    columns and swap left/right keypoints. ``[B, K, h, w] -> [B, K, h, w]``."""
    heatmaps = check_floating("heatmaps", heatmaps, ndim=4)
    num_keypoints = heatmaps.shape[1]
    for a, b in flip_pairs:
        if not (0 <= a < num_keypoints and 0 <= b < num_keypoints):
            raise ValueError(f"flip pair {(a, b)} is out of range for {num_keypoints} keypoints")
    index = torch.tensor(flip_permutation(num_keypoints, flip_pairs), device=heatmaps.device)
    return heatmaps.flip(-1)[:, index]


def flip_test_heatmaps(
    model: Callable[[Tensor], Tensor],
    images: Tensor,
    flip_pairs: Sequence[tuple[int, int]],
    shift: bool = True,
) -> Tensor:
    """Average the heatmaps of ``images`` and of their horizontal mirror.

    The mirrored heatmaps are flipped back with :func:`flip_back_heatmaps`; with ``shift`` they
    move one cell to the right (column ``i`` takes column ``i - 1``, the first is kept): a
    mirrored input pixel ``x`` lands ``1 - 1 / stride`` cells left of ``x / stride``.

    Returns:
        Averaged heatmaps ``[B, K, h, w]``.
    """
    heatmaps = model(images)
    flipped = flip_back_heatmaps(model(images.flip(-1)), flip_pairs)
    if shift:
        flipped = torch.cat([flipped[..., :1], flipped[..., :-1]], dim=-1)
    return (heatmaps + flipped) * 0.5
