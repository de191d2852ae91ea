"""SimCC: keypoint coordinates as two 1-D classification problems (x bins and y bins).

With split ratio ``r``, an input of ``W x H`` pixels has ``W * r`` x-bins and ``H * r`` y-bins;
a keypoint at pixel ``(u, v)`` is the bin pair ``(u * r, v * r)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from tokenprune.checks import check_floating

from .keypoints import check_keypoint_inputs

__all__ = [
    "SimCCHead",
    "decode_simcc",
    "flip_back_simcc",
    "flip_test",
    "resize_simcc_bins",
    "simcc_targets",
]


class SimCCHead(nn.Module):
    """Per-keypoint-token classifiers over x and y bins: ``LayerNorm -> Linear`` for each axis,
    shared by all keypoints.

    Args:
        dim: token width.
        bins_x, bins_y: number of bins per axis (input size times split ratio).
    """

    def __init__(self, dim: int, bins_x: int, bins_y: int) -> None:
        super().__init__()
        self.x = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, bins_x))
        self.y = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, bins_y))

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """``tokens [B, K, D]`` -> ``(x_logits [B, K, bins_x], y_logits [B, K, bins_y])``."""
        return self.x(tokens), self.y(tokens)


def resize_simcc_bins(rows: Tensor, bins: int, split_ratio: float = 2.0) -> Tensor:
    """Carry a SimCC classifier's per-bin rows (``[old_bins, ...]``: a weight or a bias) to
    ``bins`` bins, for the same crop at another input size.

    With pixel ``i`` centred at ``i``, scaling the input by ``s = bins / old_bins`` sends input
    coordinate ``u`` to ``s * u + (s - 1) / 2``, so new bin ``b`` sits at old bin
    ``(b - split_ratio * (s - 1) / 2) / s``; its row is linearly interpolated there (clamped at
    the ends). The logits of every bin then equal the old classifier's at the same image point.

    Args:
        rows: ``[old_bins, ...]``.
        bins: the new bin count (input size times split ratio).
        split_ratio: bins per input pixel.

    Returns:
        ``[bins, ...]`` in ``rows``' dtype.
    """
    if not isinstance(rows, Tensor) or rows.dim() < 1 or rows.shape[0] < 1:
        raise ValueError("rows must be a tensor of shape [old_bins, ...] with old_bins >= 1")
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive int, got {bins!r}")
    if not split_ratio > 0:
        raise ValueError(f"split_ratio must be > 0, got {split_ratio}")
    old_bins = rows.shape[0]
    scale = bins / old_bins
    at = (torch.arange(bins, dtype=torch.float64) - split_ratio * (scale - 1) / 2) / scale
    at = at.clamp(0, old_bins - 1)
    low = at.floor().long().clamp(max=old_bins - 1)
    high = (low + 1).clamp(max=old_bins - 1)
    frac = (at - low).to(rows.dtype).reshape(-1, *([1] * (rows.dim() - 1)))
    return rows[low] * (1 - frac) + rows[high] * frac


def simcc_targets(
    keypoints: Tensor,
    visible: Tensor,
    image_size: tuple[int, int],
    split_ratio: float = 2.0,
    sigma: float = 4.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gaussian SimCC targets.

    Bin ``i`` of an axis gets ``exp(-(i - mu)^2 / (2 sigma^2)) / (sigma sqrt(2 pi))`` with
    ``mu = coordinate * split_ratio``; ``sigma`` is in bins.

    Args:
        keypoints: ``[B, K, 2]`` ``(x, y)`` in input pixels.
        visible: ``[B, K]`` visibility (0 = not labelled).
        image_size: ``(width, height)`` of the input.
        split_ratio: bins per pixel.
        sigma: Gaussian width in bins.

    Returns:
        ``(target_x [B, K, W*r], target_y [B, K, H*r], weight [B, K])``. As in SimCC, a
        labelled keypoint keeps weight 1 unless the window of ``3 * sigma`` input pixels around
        it lies entirely outside the input; unlabelled keypoints get 0.
    """
    if not (isinstance(image_size, (tuple, list)) and len(image_size) == 2):
        raise TypeError(f"image_size must be a (width, height) pair, got {image_size!r}")
    keypoints = check_keypoint_inputs(keypoints, visible)
    width, height = image_size
    bins_x, bins_y = int(width * split_ratio), int(height * split_ratio)
    mu = keypoints * split_ratio
    norm = 1.0 / (sigma * math.sqrt(2 * math.pi))

    def gaussian(center: Tensor, bins: int) -> Tensor:
        positions = torch.arange(bins, dtype=keypoints.dtype, device=keypoints.device)
        return torch.exp(-((positions - center[..., None]) ** 2) / (2 * sigma**2)) * norm

    reach = 3 * sigma  # SimCC's window, in input pixels
    low = torch.trunc(keypoints - reach)
    high = torch.trunc(keypoints + reach + 1)
    outside = (
        (low[..., 0] >= width) | (low[..., 1] >= height) | (high[..., 0] < 0) | (high[..., 1] < 0)
    )
    weight = ((visible > 0) & ~outside).to(keypoints.dtype)
    return gaussian(mu[..., 0], bins_x), gaussian(mu[..., 1], bins_y), weight


def decode_simcc(
    x_logits: Tensor, y_logits: Tensor, split_ratio: float = 2.0
) -> tuple[Tensor, Tensor]:
    """Keypoints from SimCC logits.

    The coordinate of an axis is its most probable bin divided by the split ratio; the score is
    ``min(max p_x, max p_y)`` of the softmax distributions (small by construction: with many
    bins the peak probability is far below 1).

    Args:
        x_logits: ``[B, K, Wb]``; y_logits: ``[B, K, Hb]``.

    Returns:
        ``(coords [B, K, 2] in input pixels, scores [B, K])``.
    """
    _check_pair(x_logits, y_logits)
    x_probs = torch.softmax(x_logits.float(), dim=-1)
    y_probs = torch.softmax(y_logits.float(), dim=-1)
    x_max, x_bin = x_probs.max(dim=-1)
    y_max, y_bin = y_probs.max(dim=-1)
    coords = torch.stack([x_bin, y_bin], dim=-1).float() / split_ratio
    return coords, torch.minimum(x_max, y_max)


def flip_back_simcc(
    x_logits: Tensor, y_logits: Tensor, flip_pairs: Sequence[tuple[int, int]]
) -> tuple[Tensor, Tensor]:
    """Map the logits of a horizontally flipped image back to the original image: reverse the
    x bins and swap left/right keypoints on both axes. Logits are ``[B, K, bins]``."""
    _check_pair(x_logits, y_logits)
    num_keypoints = x_logits.shape[1]
    perm = list(range(num_keypoints))
    for a, b in flip_pairs:
        if not (0 <= a < num_keypoints and 0 <= b < num_keypoints):
            raise ValueError(f"flip pair {(a, b)} is out of range for {num_keypoints} keypoints")
        perm[a], perm[b] = b, a
    index = torch.tensor(perm, device=x_logits.device)
    return x_logits.flip(-1)[:, index], y_logits[:, index]


def _check_pair(x_logits: Tensor, y_logits: Tensor) -> None:
    check_floating("x_logits", x_logits, ndim=3)
    check_floating("y_logits", y_logits, ndim=3)
    if x_logits.shape[:2] != y_logits.shape[:2]:
        raise ValueError(
            "x_logits and y_logits must be [B, K, bins] with one B and K, got "
            f"{tuple(x_logits.shape)} and {tuple(y_logits.shape)}"
        )


def flip_test(
    model: Callable[[Tensor], tuple[Tensor, Tensor]],
    images: Tensor,
    flip_pairs: Sequence[tuple[int, int]],
    shift: bool = True,
) -> tuple[Tensor, Tensor]:
    """Average the SimCC logits of ``images`` and of their horizontal mirror.

    The mirrored logits are flipped back with :func:`flip_back_simcc`; with ``shift`` their x
    logits move one bin to the left (bin ``i`` takes bin ``i + 1``, the last bin is kept), which
    compensates the half-pixel misalignment of a flipped image.

    Returns:
        Averaged ``(x_logits, y_logits)``.
    """
    x_logits, y_logits = model(images)
    x_flip, y_flip = flip_back_simcc(*model(images.flip(-1)), flip_pairs)
    if shift:
        x_flip = torch.cat([x_flip[..., 1:], x_flip[..., -1:]], dim=-1)
    return (x_logits + x_flip) * 0.5, (y_logits + y_flip) * 0.5
