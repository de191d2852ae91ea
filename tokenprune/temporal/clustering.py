"""Token pruning by density-peak clustering (HoT's Token Pruning Cluster).

HoT prunes the *frames* of a video pose transformer: it pools each frame's tokens into one
feature, clusters the frames with DPC-kNN (density peaks, density from the k nearest
neighbours) and keeps the cluster centres, the frames that are both typical (dense) and unlike
any denser frame (far from their parent). For frame features ``x_i`` of width ``C``:

* distance ``d_ij = ||x_i - x_j|| / sqrt(C)``;
* density ``rho_i = exp(-mean of d_ij^2 over the k nearest j)``, the frame itself included
  (its own distance is 0), so ``k = 2`` uses the one nearest other frame;
* parent distance ``delta_i = min d_ij over frames with rho_j > rho_i`` (strictly denser); a
  frame with no strictly denser frame gets the largest distance of its sequence;
* score ``rho_i * delta_i``; the ``num_kept`` best frames are kept in time order.

Ties in density are the rule, not the exception: with ``k = 2`` a frame's density depends only
on its nearest neighbour, so two frames that are each other's nearest neighbour always have the
same density, and under the strict ``>`` neither is the other's parent: the closest pair of
every cluster would become two centres. The official code breaks the ties with ``1e-6`` uniform
noise, so its selection changes from run to run. Here the tie-break is deterministic:

* ``tie_break="index"`` (default): of two frames of equal density the earlier one counts as
  denser, which makes "denser" a strict total order with one peak per cluster;
* ``tie_break="none"``: the official rule with its noise switched off (equal densities are
  all peaks), for reproducing official outputs.

Equal scores go to the earlier frame (:func:`tokenprune.select_topk`). The selection is a pure
function of the features as computed: distances of more than 25 frames come from
:func:`torch.cdist`'s matrix-product formula, whose last-bit rounding (and so a near-tie) may
differ between platforms or thread counts.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..checks import (
    check_finite,
    check_floating,
    check_index,
    check_int,
    check_same_device,
    check_values,
)
from ..selection import check_index_range, select_topk

__all__ = ["DensityPeaks", "PrunedFrames", "TokenPruningCluster", "density_peaks", "pool_frames"]


class DensityPeaks(NamedTuple):
    """Per-frame DPC-kNN quantities, each ``[B, T]``."""

    density: Tensor
    parent_distance: Tensor
    score: Tensor


class PrunedFrames(NamedTuple):
    """Output of :class:`TokenPruningCluster`.

    Attributes:
        tokens: ``[B, num_kept, ..., D]`` the kept frames' tokens, in time order.
        kept_idx: ``[B, num_kept]`` int64 frame indices of the kept frames, ascending.
    """

    tokens: Tensor
    kept_idx: Tensor


def pool_frames(tokens: Tensor) -> Tensor:
    """Average every frame's tokens into one feature: ``[B, T, ..., D] -> [B, T, D]``.

    A ``[B, T, D]`` input (one token per frame) is returned as it is.

    Raises:
        TypeError: ``tokens`` is not a floating-point tensor.
        ValueError: ``tokens`` has fewer than 3 dimensions, or an axis between time and
            channels has size 0 (a frame without tokens has no mean).
    """
    tokens = check_floating("tokens", tokens)
    if tokens.ndim < 3:
        raise ValueError(f"tokens must be [B, T, ..., D], got shape {tuple(tokens.shape)}")
    if tokens.ndim == 3:
        return tokens
    if 0 in tokens.shape[2:-1]:
        raise ValueError(
            f"tokens must have at least one token per frame (no zero-size axis between time "
            f"and channels), got shape {tuple(tokens.shape)}"
        )
    return tokens.flatten(2, -2).mean(dim=2)


TIE_BREAKS = ("index", "none")


def _check_tie_break(tie_break: object) -> str:
    if tie_break not in TIE_BREAKS:
        raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
    return tie_break  # type: ignore[return-value]


def density_peaks(features: Tensor, k: int = 2, tie_break: str = "index") -> DensityPeaks:
    """DPC-kNN density, parent distance and score of every frame (see the module docstring).

    Args:
        features: ``[B, T, C]`` one feature per frame.
        k: neighbours of the density estimate, the frame itself included; in ``[1, T]``.
        tie_break: ``"index"`` (of equal densities the earlier frame is denser) or ``"none"``
            (equal densities are all peaks, as the official code with its noise off).

    Returns:
        :class:`DensityPeaks` of ``[B, T]`` tensors, computed without gradient (empty for
        ``T = 0``).

    Raises:
        TypeError: ``features`` is not a floating-point tensor, ``k`` not an int.
        ValueError: ``features`` is not ``[B, T, C]`` with ``C >= 1``, has a NaN or infinite
            entry, or values whose distances overflow its dtype; ``k`` is outside ``[1, T]``;
            ``tie_break`` is unknown.
    """
    features = check_floating("features", features, ndim=3)
    num_frames = features.shape[1]
    k = check_int("k", k, low=1, high=num_frames if num_frames else None)
    tie_break = _check_tie_break(tie_break)
    return _density_peaks(features, k, tie_break, "features")


def _check_width(name: str, tensor: Tensor) -> None:
    if tensor.shape[-1] == 0:
        raise ValueError(
            f"{name} must have at least one channel (a distance needs features), got shape "
            f"{tuple(tensor.shape)}"
        )


def _density_peaks(features: Tensor, k: int, tie_break: str, name: str) -> DensityPeaks:
    """:func:`density_peaks` on checked arguments; ``name`` is the argument that errors about
    the features' values should name."""
    _check_width(name, features)
    check_finite(name, features)
    num_frames, width = features.shape[1], features.shape[2]
    if num_frames == 0:
        empty = features.new_zeros(features.shape[:2])
        return DensityPeaks(empty, empty.clone(), empty.clone())
    with torch.no_grad():
        # torch.cdist as HoT calls it: beyond 25 rows it uses the matrix-product formula, whose
        # rounding (a diagonal that is not exactly 0) decides near-ties; same call, same picks.
        distance = torch.cdist(features, features) / math.sqrt(width)
        nearest = torch.topk(distance, k, dim=-1, largest=False).values
        density = torch.exp(-(nearest**2).mean(dim=-1))
        denser = density[:, None, :] > density[:, :, None]  # [b, i, j]: rho_j > rho_i
        if tie_break == "index":
            frame = torch.arange(num_frames, device=features.device)
            earlier = frame[None, :] < frame[:, None]  # [i, j]: j < i
            denser |= (density[:, None, :] == density[:, :, None]) & earlier
        farthest = distance.flatten(1).amax(dim=-1)[:, None, None]
        parent = torch.where(denser, distance, farthest).amin(dim=-1)
        score = density * parent
    if score.numel():
        check_values(
            ~torch.isnan(score).any(),
            f"{name} are too large for their dtype: frame distances overflow (rescale them or "
            "use a wider dtype)",
        )
    return DensityPeaks(density, parent, score)


class TokenPruningCluster(nn.Module):
    """Keep ``num_kept`` representative frames of a ``[B, T, ..., D]`` token sequence.

    The frames' tokens are averaged over every axis between time and channels (joints, for a
    video pose transformer), the frames are scored by :func:`density_peaks` and the
    ``num_kept`` best are gathered with all their tokens, in time order. Selection carries no
    gradient; the kept tokens carry the gradient of the gather. HoT's Token Pruning Cluster
    (seq2seq) is ``TokenPruningCluster(f_n)``; its seq2frame variant, which must keep the
    frame it predicts, is ``TokenPruningCluster(f_n, keep_centre=True)``.

    Args:
        num_kept: frames kept, ``f_n``; at least 1 and at most ``T`` at call time.
        k: neighbours of the density estimate, the frame itself included (HoT: 2); sequences
            shorter than ``k`` use all their frames.
        keep_centre: always keep the centre frame ``(T - 1) // 2`` and choose the other
            ``num_kept - 1`` frames among the rest.
        tie_break: how equal densities are ordered, see :func:`density_peaks`.
    """

    def __init__(
        self, num_kept: int, k: int = 2, keep_centre: bool = False, tie_break: str = "index"
    ) -> None:
        super().__init__()
        self.num_kept = check_int("num_kept", num_kept, low=1)
        self.k = check_int("k", k, low=1)
        if not isinstance(keep_centre, bool):
            raise TypeError(f"keep_centre must be a bool, got {type(keep_centre).__name__}")
        self.keep_centre = keep_centre
        self.tie_break = _check_tie_break(tie_break)

    @torch.no_grad()
    def select(self, tokens: Tensor) -> Tensor:
        """Indices ``[B, num_kept]`` (int64, ascending) of the frames to keep. Scores are
        computed in at least float32 (half-precision distances would tie wholesale).

        Raises:
            TypeError: ``tokens`` is not a floating-point tensor.
            ValueError: ``tokens`` is not ``[B, T, ..., D]`` with ``T >= num_kept``, ``D >= 1``
                and at least one token per frame, or has a NaN or infinite entry.
        """
        features = pool_frames(tokens)
        _check_width("tokens", tokens)
        check_finite("tokens", tokens)
        if features.dtype in (torch.float16, torch.bfloat16):
            features = features.float()
        num_frames = features.shape[1]
        if self.num_kept > num_frames:
            raise ValueError(
                f"num_kept={self.num_kept} frames cannot be kept from a sequence of "
                f"{num_frames} frames (tokens of shape {tuple(tokens.shape)})"
            )
        score = _density_peaks(features, min(self.k, num_frames), self.tie_break, "tokens").score
        if not self.keep_centre:
            return select_topk(score, self.num_kept)
        centre = (num_frames - 1) // 2
        index = torch.full_like(score[:, :1], centre, dtype=torch.int64)
        if self.num_kept > 1:
            score = score.clone()
            score[:, centre] = -math.inf
            index = torch.cat([select_topk(score, self.num_kept - 1), index], dim=1)
        return index.sort(dim=1).values

    def forward(self, tokens: Tensor, kept_idx: Tensor | None = None) -> PrunedFrames:
        """Prune the frames of ``tokens`` ``[B, T, ..., D]``.

        Args:
            tokens: ``[B, T, ..., D]`` with time on axis 1 and channels last.
            kept_idx: ``[B, num_kept]`` frames to keep instead of the clustering's choice (HoT's
                flip test reuses the unflipped input's frames); None to cluster.

        Returns:
            :class:`PrunedFrames` ``(tokens [B, num_kept, ..., D], kept_idx [B, num_kept])``.

        Raises:
            TypeError: ``tokens`` is not a floating-point tensor, ``kept_idx`` not an integer
                tensor.
            ValueError: as :meth:`select` when clustering; a given ``kept_idx`` of the wrong
                shape, device or range.
        """
        tokens = check_floating("tokens", tokens)
        if tokens.ndim < 3:
            raise ValueError(f"tokens must be [B, T, ..., D], got shape {tuple(tokens.shape)}")
        if kept_idx is None:
            kept_idx = self.select(tokens)
        else:
            kept_idx = check_index("kept_idx", kept_idx)
            check_same_device(tokens=tokens, kept_idx=kept_idx)
            expected = (tokens.shape[0], self.num_kept)
            if tuple(kept_idx.shape) != expected:
                raise ValueError(
                    f"kept_idx must be [B, num_kept] = {list(expected)}, got "
                    f"{tuple(kept_idx.shape)}"
                )
            check_index_range("kept_idx", kept_idx, tokens.shape[1])
            kept_idx = kept_idx.long()
        batch = torch.arange(tokens.shape[0], device=tokens.device)[:, None]
        return PrunedFrames(tokens[batch, kept_idx], kept_idx)

    def extra_repr(self) -> str:
        return (
            f"num_kept={self.num_kept}, k={self.k}, keep_centre={self.keep_centre}, "
            f"tie_break={self.tie_break!r}"
        )
