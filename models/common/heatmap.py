"""Heatmap keypoints (SimpleBaseline / TokenPose convention): one Gaussian map per keypoint.

A heatmap of ``h x w`` cells covers an input of ``H x W`` pixels with stride ``W / w`` (x) and
``H / h`` (y); cell ``(i, j)`` stands for input pixel ``(i * stride_x, j * stride_y)``. Targets
put an unnormalised Gaussian (peak 1) on the cell nearest to the keypoint, cut off ``3 sigma``
cells from it; predictions are the arg-max cell moved a quarter cell towards its higher
neighbour. :class:`HeatmapCodec` does both, and the flip test, for one input and heatmap size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from tokenprune.checks import check_floating, check_number

from .codec import check_size, target_tensors
from .keypoints import check_keypoint_inputs, flip_permutation

__all__ = ["DEFAULT_SIGMA", "HeatmapCodec", "heatmap_mse_loss"]

#: The Gaussian width in cells of TokenPose's and SimpleBaseline's heatmaps.
DEFAULT_SIGMA = 2.0


@dataclass(frozen=True)
class HeatmapCodec:
    """The heatmap codec of an input and heatmap size.

    Attributes:
        image_size: input ``(height, width)`` in pixels.
        heatmap_size: heatmap ``(height, width)`` in cells.
        sigma: Gaussian width in cells (TokenPose and SimpleBaseline: 2, :data:`DEFAULT_SIGMA`).

    Targets (:meth:`encode`) are ``target_heatmaps [B, K, h, w]`` and ``target_weight [B, K]``;
    model outputs are heatmaps ``[B, K, h, w]``.

    Raises:
        TypeError: a size is not a pair of ints, ``sigma`` not a number.
        ValueError: a side or ``sigma`` is not positive.
    """

    image_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    sigma: float = DEFAULT_SIGMA

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", check_size("image_size", self.image_size))
        object.__setattr__(self, "heatmap_size", check_size("heatmap_size", self.heatmap_size))
        sigma = check_number("sigma", self.sigma)
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {self.sigma!r}")
        object.__setattr__(self, "sigma", sigma)

    @property
    def stride(self) -> tuple[float, float]:
        """Input pixels per cell, ``(x, y)`` like the keypoints."""
        (height, width), (map_h, map_w) = self.image_size, self.heatmap_size
        return width / map_w, height / map_h

    def encode(self, keypoints: Tensor, visible: Tensor) -> dict[str, Tensor]:
        """Gaussian heatmap targets.

        A keypoint at input pixel ``(u, v)`` is centred on cell
        ``(round(u / s_x), round(v / s_y))`` (``s``: :attr:`stride`; halves round up); cell
        ``(i, j)`` gets ``exp(-((i - c_x)^2 + (j - c_y)^2) / (2 sigma^2))`` within ``3 sigma``
        cells of the centre on both axes and 0 elsewhere.

        Args:
            keypoints: ``[B, K, 2]`` ``(x, y)`` in input pixels.
            visible: ``[B, K]`` visibility (0 = not labelled).

        Returns:
            ``target_heatmaps [B, K, h, w]`` and ``target_weight [B, K]``: a labelled keypoint
            has weight 1 unless its whole ``3 sigma`` window lies outside the heatmap (its map
            is then all zeros); unlabelled keypoints have weight 0.
        """
        keypoints = check_keypoint_inputs(keypoints, visible)
        map_h, map_w = self.heatmap_size
        sigma = self.sigma
        stride = keypoints.new_tensor(self.stride)
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
            offset = torch.arange(size, dtype=keypoints.dtype, device=keypoints.device)
            offset = offset - c[..., None]
            return torch.exp(-(offset**2) / (2 * sigma**2)) * (offset.abs() <= reach)

        rows, columns = axis(map_h, centre[..., 1]), axis(map_w, centre[..., 0])
        heatmaps = rows[..., :, None] * columns[..., None, :]
        return {"target_heatmaps": heatmaps * weight[..., None, None], "target_weight": weight}

    def decode(self, outputs: Tensor) -> tuple[Tensor, Tensor]:
        """Keypoints from heatmaps ``[B, K, h, w]``: the arg-max cell, moved a quarter cell on
        each axis towards the higher of its two neighbours (where both exist and differ), times
        the :attr:`stride`.

        Returns:
            ``(coords [B, K, 2] (x, y) in input pixels, scores [B, K])``: the score is the
            maximum of the map.
        """
        heatmaps = self._check_heatmaps(outputs).float()
        batch, keypoints, map_h, map_w = heatmaps.shape
        flat = heatmaps.reshape(batch, keypoints, -1)
        scores, index = flat.max(dim=-1)
        x, y = index % map_w, torch.div(index, map_w, rounding_mode="floor")

        def value(px: Tensor, py: Tensor) -> Tensor:
            cell = py.clamp(0, map_h - 1) * map_w + px.clamp(0, map_w - 1)
            return flat.gather(-1, cell[..., None])[..., 0]

        dx = torch.where((x > 0) & (x < map_w - 1), value(x + 1, y) - value(x - 1, y), 0.0)
        dy = torch.where((y > 0) & (y < map_h - 1), value(x, y + 1) - value(x, y - 1), 0.0)
        coords = torch.stack([x + 0.25 * dx.sign(), y + 0.25 * dy.sign()], dim=-1)
        return coords * coords.new_tensor(self.stride), scores

    def flip_back(self, outputs: Tensor, flip_pairs: Sequence[tuple[int, int]]) -> Tensor:
        """Map the heatmaps of a horizontally flipped image back to the original image: mirror
        the columns and swap left/right keypoints. ``[B, K, h, w] -> [B, K, h, w]``."""
        heatmaps = check_floating("heatmaps", outputs, ndim=4)
        perm = flip_permutation(heatmaps.shape[1], flip_pairs)
        return heatmaps.flip(-1)[:, torch.tensor(perm, device=heatmaps.device)]

    def flip_test(
        self,
        model: Callable[[Tensor], Tensor],
        images: Tensor,
        flip_pairs: Sequence[tuple[int, int]],
        shift: bool = True,
    ) -> Tensor:
        """Average the heatmaps of ``images [B, 3, H, W]`` and of their horizontal mirror.

        The mirrored heatmaps are flipped back with :meth:`flip_back`; with ``shift`` they
        move one cell to the right (column ``i`` takes column ``i - 1``, the first is kept): a
        mirrored input pixel ``x`` lands ``1 - 1 / stride`` cells left of ``x / stride``.

        Returns:
            Averaged heatmaps ``[B, K, h, w]``.
        """
        heatmaps = model(images)
        flipped = self.flip_back(model(images.flip(-1)), flip_pairs)
        if shift:
            flipped = torch.cat([flipped[..., :1], flipped[..., :-1]], dim=-1)
        return (heatmaps + flipped) * 0.5

    def loss(self, outputs: Tensor, targets: Mapping[str, Tensor]) -> Tensor:
        """The joints MSE (:func:`heatmap_mse_loss`) of heatmaps ``[B, K, h, w]`` against
        ``targets`` (``target_heatmaps``, ``target_weight``, as :meth:`encode` returns them or a
        training batch holds them)."""
        target, weight = target_tensors(targets, "target_heatmaps", "target_weight")
        return heatmap_mse_loss(outputs, target, weight)

    def _check_heatmaps(self, outputs: object) -> Tensor:
        heatmaps = check_floating("heatmaps", outputs, ndim=4)
        if tuple(heatmaps.shape[2:]) != self.heatmap_size:
            raise ValueError(
                f"heatmaps must be [B, K, {self.heatmap_size[0]}, {self.heatmap_size[1]}] "
                f"(the codec's heatmap_size), got {tuple(heatmaps.shape)}"
            )
        return heatmaps


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
