"""SimCC: keypoint coordinates as two 1-D classification problems (x bins and y bins).

With split ratio ``r``, an input of ``H x W`` pixels has ``W * r`` x-bins and ``H * r`` y-bins;
a keypoint at pixel ``(u, v)`` is the bin pair ``(u * r, v * r)``. :class:`SimCCCodec` holds the
split ratio and the Gaussian width of the targets (SimCC's and GTPT's published 2 and 4 bins
are its defaults, the one place they are written) and encodes, decodes, flips and scores SimCC
outputs; the KL losses (:func:`keypoint_kl_loss`, GTPT's :func:`global_perceived_loss`) are
here too. Shapes: logits and targets are ``[B, K, bins]`` per axis (``K`` keypoints), weights
``[B, K]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tokenprune.checks import (
    check_finite,
    check_floating,
    check_number,
    check_same_device,
    check_tensor,
    check_tensor_sequence,
    check_values,
)

from .codec import check_size, target_tensors
from .keypoints import check_keypoint_inputs, flip_permutation

__all__ = [
    "SimCCCodec",
    "SimCCHead",
    "bin_kl_divergence",
    "global_perceived_loss",
    "keypoint_kl_loss",
    "resize_simcc_bins",
]

#: The logits of a SimCC model: ``(x_logits [B, K, bins_x], y_logits [B, K, bins_y])``.
SimCCLogits = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class SimCCCodec:
    """The SimCC codec of an input size.

    Attributes:
        image_size: input ``(height, width)`` in pixels.
        split_ratio: bins per input pixel (SimCC and GTPT: 2).
        sigma: width of the Gaussian targets, in bins (SimCC and GTPT: 4).

    Targets (:meth:`encode`) are ``target_x [B, K, W*r]``, ``target_y [B, K, H*r]`` and
    ``target_weight [B, K]``; model outputs are the pair ``(x_logits, y_logits)`` of the same
    widths.

    Raises:
        TypeError: ``image_size`` is not a pair of ints, ``split_ratio`` or ``sigma`` not a
            number.
        ValueError: a side, ``split_ratio`` or ``sigma`` is not positive and finite.
    """

    image_size: tuple[int, int]
    split_ratio: float = 2.0
    sigma: float = 4.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", check_size("image_size", self.image_size))
        for name in ("split_ratio", "sigma"):
            value = check_number(name, getattr(self, name))
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
            object.__setattr__(self, name, value)

    @property
    def bins_x(self) -> int:
        """Number of x bins: input width times the split ratio."""
        return int(self.image_size[1] * self.split_ratio)

    @property
    def bins_y(self) -> int:
        """Number of y bins: input height times the split ratio."""
        return int(self.image_size[0] * self.split_ratio)

    def encode(self, keypoints: Tensor, visible: Tensor) -> dict[str, Tensor]:
        """Gaussian SimCC targets.

        Bin ``i`` of an axis gets ``exp(-(i - mu)^2 / (2 sigma^2)) / (sigma sqrt(2 pi))`` with
        ``mu = coordinate * split_ratio``.

        Args:
            keypoints: ``[B, K, 2]`` ``(x, y)`` in input pixels.
            visible: ``[B, K]`` visibility (0 = not labelled).

        Returns:
            ``target_x [B, K, bins_x]``, ``target_y [B, K, bins_y]`` and
            ``target_weight [B, K]``. As in SimCC, a labelled keypoint keeps weight 1 unless the
            window of ``3 * sigma`` input pixels around it lies entirely outside the input;
            unlabelled keypoints get 0.
        """
        keypoints = check_keypoint_inputs(keypoints, visible)
        height, width = self.image_size
        sigma = self.sigma
        mu = keypoints * self.split_ratio
        norm = 1.0 / (sigma * math.sqrt(2 * math.pi))

        def gaussian(center: Tensor, bins: int) -> Tensor:
            positions = torch.arange(bins, dtype=keypoints.dtype, device=keypoints.device)
            return torch.exp(-((positions - center[..., None]) ** 2) / (2 * sigma**2)) * norm

        reach = 3 * sigma  # SimCC's window, in input pixels
        low = torch.trunc(keypoints - reach)
        high = torch.trunc(keypoints + reach + 1)
        outside = (
            (low[..., 0] >= width) | (low[..., 1] >= height) | (high[..., 0] < 0)
            | (high[..., 1] < 0)
        )  # fmt: skip
        weight = ((visible > 0) & ~outside).to(keypoints.dtype)
        return {
            "target_x": gaussian(mu[..., 0], self.bins_x),
            "target_y": gaussian(mu[..., 1], self.bins_y),
            "target_weight": weight,
        }

    def decode(self, outputs: SimCCLogits) -> tuple[Tensor, Tensor]:
        """Keypoints from SimCC logits ``(x_logits [B, K, bins_x], y_logits [B, K, bins_y])``.

        The coordinate of an axis is its most probable bin divided by the split ratio; the score
        is ``min(max p_x, max p_y)`` of the softmax distributions (small by construction: with
        many bins the peak probability is far below 1).

        Returns:
            ``(coords [B, K, 2] (x, y) in input pixels, scores [B, K])``.
        """
        x_logits, y_logits = self._check_logits(outputs)
        x_probs = torch.softmax(x_logits.float(), dim=-1)
        y_probs = torch.softmax(y_logits.float(), dim=-1)
        x_max, x_bin = x_probs.max(dim=-1)
        y_max, y_bin = y_probs.max(dim=-1)
        coords = torch.stack([x_bin, y_bin], dim=-1).float() / self.split_ratio
        return coords, torch.minimum(x_max, y_max)

    def flip_back(self, outputs: SimCCLogits, flip_pairs: Sequence[tuple[int, int]]
                  ) -> SimCCLogits:  # fmt: skip
        """Map the logits of a horizontally flipped image back to the original image: reverse
        the x bins and swap left/right keypoints on both axes."""
        x_logits, y_logits = self._check_logits(outputs)
        perm = flip_permutation(x_logits.shape[1], flip_pairs)
        index = torch.tensor(perm, device=x_logits.device)
        return x_logits.flip(-1)[:, index], y_logits[:, index]

    def flip_test(
        self,
        model: Callable[[Tensor], SimCCLogits],
        images: Tensor,
        flip_pairs: Sequence[tuple[int, int]],
        shift: bool = True,
    ) -> SimCCLogits:
        """Average the SimCC logits of ``images [B, 3, H, W]`` and of their horizontal mirror.

        The mirrored logits are flipped back with :meth:`flip_back`; with ``shift`` their x
        logits move one bin to the left (bin ``i`` takes bin ``i + 1``, the last bin is kept),
        which compensates the half-pixel misalignment of a flipped image.

        Returns:
            Averaged ``(x_logits [B, K, bins_x], y_logits [B, K, bins_y])``.
        """
        x_logits, y_logits = model(images)
        x_flip, y_flip = self.flip_back(model(images.flip(-1)), flip_pairs)
        if shift:
            x_flip = torch.cat([x_flip[..., 1:], x_flip[..., -1:]], dim=-1)
        return (x_logits + x_flip) * 0.5, (y_logits + y_flip) * 0.5

    def loss(
        self,
        outputs: SimCCLogits,
        targets: Mapping[str, Tensor],
        entire: SimCCLogits | None = None,
    ) -> Tensor:
        """SimCC's KL loss (:func:`keypoint_kl_loss`) of ``outputs`` against ``targets``
        (``target_x``, ``target_y``, ``target_weight``, as :meth:`encode` returns them or a
        training batch holds them).

        With ``entire``, the logits of the same network's unpruned pass, it is GTPT's Global
        Perceived loss (:func:`global_perceived_loss`) with ``outputs`` as the pruned pass.
        """
        target_x, target_y, weight = target_tensors(
            targets, "target_x", "target_y", "target_weight"
        )
        if entire is None:
            return keypoint_kl_loss(outputs, (target_x, target_y), weight)
        return global_perceived_loss(outputs, entire, (target_x, target_y), weight)

    def _check_logits(self, outputs: object) -> SimCCLogits:
        if not (isinstance(outputs, (tuple, list)) and len(outputs) == 2):
            raise TypeError(
                "outputs must be the pair (x_logits, y_logits) of a SimCC model, got "
                f"{type(outputs).__name__}"
            )
        x_logits = check_floating("x_logits", outputs[0], ndim=3)
        y_logits = check_floating("y_logits", outputs[1], ndim=3)
        if x_logits.shape[:2] != y_logits.shape[:2]:
            raise ValueError(
                "x_logits and y_logits must be [B, K, bins] with one B and K, got "
                f"{tuple(x_logits.shape)} and {tuple(y_logits.shape)}"
            )
        for name, logits, bins in (("x", x_logits, self.bins_x), ("y", y_logits, self.bins_y)):
            if logits.shape[-1] != bins:
                raise ValueError(
                    f"{name}_logits must have {bins} bins ({self.image_size} input, split "
                    f"ratio {self.split_ratio}), got {logits.shape[-1]}"
                )
        return x_logits, y_logits


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


def resize_simcc_bins(rows: Tensor, bins: int, split_ratio: float) -> Tensor:
    """Carry a SimCC classifier's per-bin rows (``[old_bins, ...]``: a weight or a bias) to
    ``bins`` bins, for the same crop at another input size.

    With pixel ``i`` centred at ``i``, scaling the input by ``s = bins / old_bins`` sends input
    coordinate ``u`` to ``s * u + (s - 1) / 2``, so new bin ``b`` sits at old bin
    ``(b - split_ratio * (s - 1) / 2) / s``; its row is linearly interpolated there (clamped at
    the ends). The logits of every bin then equal the old classifier's at the same image point.

    Args:
        rows: ``[old_bins, ...]``.
        bins: the new bin count (input size times split ratio).
        split_ratio: bins per input pixel (the codec's, :attr:`SimCCCodec.split_ratio`).

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


def bin_kl_divergence(logits: Tensor, target: Tensor) -> Tensor:
    """``KL(target || softmax(logits))`` averaged over the bins of the last axis.

    ``target`` holds (not necessarily normalised) probabilities; zero entries contribute zero,
    also against a ``-inf`` logit.

    Returns:
        ``logits.shape[:-1]``.

    Raises:
        TypeError: ``logits`` or ``target`` is not a floating-point tensor.
        ValueError: they differ in shape or device, have no bin axis or zero bins, or
            ``target`` has an entry that is negative, NaN or infinite.
    """
    logits, target = _check_bins(logits, target)
    _check_target_values("target", target)
    return _bin_kl(logits, target)


def _check_bins(
    logits: object, target: object, logits_name: str = "logits", target_name: str = "target"
) -> tuple[Tensor, Tensor]:
    logits = check_floating(logits_name, logits)
    target = check_floating(target_name, target)
    if logits.shape != target.shape:
        raise ValueError(
            f"{logits_name} and {target_name} must have one shape, got {tuple(logits.shape)} "
            f"and {tuple(target.shape)}"
        )
    check_same_device(**{logits_name: logits, target_name: target})
    if logits.ndim == 0 or logits.shape[-1] == 0:
        raise ValueError(
            f"{logits_name} must have a last (bin) axis with at least one bin, got shape "
            f"{tuple(logits.shape)}"
        )
    return logits, target


def _check_target_values(name: str, target: Tensor) -> None:
    check_finite(name, target)
    if target.numel():
        check_values(~(target < 0).any(), f"{name} must be >= 0 (probabilities)")


def _bin_kl(logits: Tensor, target: Tensor) -> Tensor:
    """:func:`bin_kl_divergence` on validated arguments."""
    # a zero target entry contributes 0, also where the logit is -inf (0 * -inf would be NaN)
    log_probs = F.log_softmax(logits, dim=-1).masked_fill(target == 0, 0.0)
    return (torch.xlogy(target, target) - target * log_probs).mean(dim=-1)


def _check_axes(name: str, value: object) -> list[Tensor]:
    return check_tensor_sequence(name, value, what="axis")


def _check_weight(weight: object, shape: tuple[int, ...], reference: Tensor) -> Tensor:
    weight = check_tensor("weight", weight)
    if weight.is_complex():
        raise TypeError(f"weight must be a real-valued tensor, got {weight.dtype}")
    if tuple(weight.shape) != tuple(shape):
        raise ValueError(f"weight must have shape {tuple(shape)}, got {tuple(weight.shape)}")
    check_same_device(logits=reference, weight=weight)
    check_finite("weight", weight)
    if weight.numel():
        check_values(~(weight < 0).any(), "weight must be >= 0 (keypoint weights)")
    return weight


def _keypoint_kl(
    logits: list[Tensor], targets: list[Tensor], weight: object, check_targets: bool = True
) -> Tensor:
    """:func:`keypoint_kl_loss`; the targets' values are only checked if ``check_targets``."""
    per_keypoint = None
    for axis, (z, y) in enumerate(zip(logits, targets, strict=True)):
        z, y = _check_bins(z, y, f"logits[{axis}]", f"targets[{axis}]")
        if check_targets:
            _check_target_values(f"targets[{axis}]", y)
        if per_keypoint is not None and z.shape[:-1] != per_keypoint.shape:
            raise ValueError(
                f"logits[{axis}] must have the leading shape {tuple(per_keypoint.shape)} of "
                f"logits[0], got {tuple(z.shape)}"
            )
        term = _bin_kl(z, y)
        per_keypoint = term if per_keypoint is None else per_keypoint + term
    assert per_keypoint is not None
    weight = _check_weight(weight, tuple(per_keypoint.shape), logits[0])
    weighted = per_keypoint * weight
    if weighted.numel() == 0:  # no sample or no keypoint: nothing to fit (mean would be NaN)
        return weighted.sum() * 0.0
    return weighted.mean(dim=0).mean()


def keypoint_kl_loss(logits: Sequence[Tensor], targets: Sequence[Tensor], weight: Tensor) -> Tensor:
    """SimCC's KL loss: ``(1/K) sum_k mean_b w[b, k] sum_axes KL_axis[b, k]``.

    Args:
        logits, targets: one ``[B, K, bins]`` tensor per axis (a list or tuple).
        weight: ``[B, K]`` keypoint weights (visibility), finite and non-negative.

    Returns:
        A scalar; 0 when ``B`` or ``K`` is 0.

    Raises:
        TypeError: ``logits`` or ``targets`` is not a list or tuple of floating-point tensors,
            ``weight`` not a real-valued tensor.
        ValueError: the counts of axes differ, shapes or devices disagree, a target entry is
            negative, NaN or infinite, or a weight is negative, NaN or infinite.
    """
    logits = _check_axes("logits", logits)
    targets = _check_axes("targets", targets)
    if len(logits) != len(targets):
        raise ValueError(
            "logits and targets need one tensor per axis each, got "
            f"{len(logits)} and {len(targets)}"
        )
    return _keypoint_kl(logits, targets, weight)


def global_perceived_loss(
    pruned: Sequence[Tensor],
    entire: Sequence[Tensor],
    targets: Sequence[Tensor],
    weight: Tensor,
) -> Tensor:
    """GTPT's Global Perceived loss.

    Both passes (pruned keep rates, and every keep rate 1) fit the targets, and the pruned pass
    also fits the detached softmax of the entire pass (self-distillation with temperature 1)::

        L = KL(y || p_entire) + KL(y || p_pruned) + KL(sg(softmax z_entire) || p_pruned)

    each term as in :func:`keypoint_kl_loss`.

    Args:
        pruned, entire: per-axis logits ``[B, K, bins]`` of the two passes (lists or tuples).
        targets: per-axis targets.
        weight: ``[B, K]``.

    Raises:
        TypeError: ``pruned``, ``entire`` or ``targets`` is not a list or tuple of
            floating-point tensors, ``weight`` not a real-valued tensor.
        ValueError: as :func:`keypoint_kl_loss`, or the three differ in their number of axes.
    """
    pruned = _check_axes("pruned", pruned)
    entire = _check_axes("entire", entire)
    targets = _check_axes("targets", targets)
    if not len(pruned) == len(entire) == len(targets):
        raise ValueError(
            "pruned, entire and targets need one tensor per axis each, got "
            f"{len(pruned)}, {len(entire)} and {len(targets)}"
        )
    for axis, (p, e) in enumerate(zip(pruned, entire, strict=True)):
        check_floating(f"entire[{axis}]", e)
        if p.shape != e.shape:
            raise ValueError(
                f"pruned[{axis}] and entire[{axis}] must have one shape, got "
                f"{tuple(p.shape)} and {tuple(e.shape)}"
            )
    teacher = [torch.softmax(z.detach(), dim=-1) for z in entire]
    # The teacher derives from the entire pass's logits: a NaN there shows in the loss already.
    return (
        _keypoint_kl(entire, targets, weight)
        + _keypoint_kl(pruned, targets, weight)
        + _keypoint_kl(pruned, teacher, weight, check_targets=False)
    )
