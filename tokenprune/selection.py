"""Selecting, gathering and fusing tokens along the token axis."""

from __future__ import annotations

import torch
from torch import Tensor

from .checks import (
    check_bool,
    check_bool_mask,
    check_floating,
    check_index,
    check_int,
    check_same_device,
    check_tensor,
    check_values,
)

__all__ = ["fuse_pruned_tokens", "gather_tokens", "pruned_token_weights", "select_topk"]

NAN_SCORES = "scores contain NaN; every candidate token needs a comparable score"


def check_index_range(name: str, idx: Tensor, size: int) -> None:
    """Require every entry of ``idx`` in ``[0, size)``."""
    if idx.numel() == 0:
        return

    def message() -> str:
        low, high = int(idx.min()), int(idx.max())
        return f"{name} must lie in [0, {size}) for {size} tokens, got values in [{low}, {high}]"

    check_values((idx >= 0).all() & (idx < size).all(), message)


def select_topk(scores: Tensor, k: int, *, key_mask: Tensor | None = None) -> Tensor:
    """Positions of the ``k`` highest scores of every row, in ascending position order.

    Keeping positions sorted preserves the original token order. Ties are resolved toward the
    lower position, so the result is deterministic. ``-inf`` scores are allowed (they lose to
    any finite score); NaN scores raise.

    Args:
        scores: ``[..., N]`` floating-point scores.
        k: number of positions to keep, in ``[1, N]``.
        key_mask: optional bool ``[..., N]``, False for padding. Padding ranks below every real
            position, ``-inf`` scores included, so it is chosen only when a row has fewer than
            ``k`` real positions (then in position order); its scores are ignored (may be NaN).

    Returns:
        ``[..., k]`` int64 positions.

    Raises:
        TypeError: ``scores`` is not a floating-point tensor, ``k`` not an int, ``key_mask``
            not a bool tensor.
        ValueError: ``scores`` is a scalar, ``k`` is outside ``[1, N]``, ``key_mask`` has
            another shape or device, or a real score is NaN.
    """
    scores = check_floating("scores", scores)
    if scores.ndim == 0:
        raise ValueError("scores must have at least one dimension [..., N], got a scalar")
    num_tokens = scores.shape[-1]
    k = check_int("k", k, low=1, high=num_tokens)
    if key_mask is not None:
        check_same_device(scores=scores, key_mask=key_mask)
        check_bool_mask("key_mask", key_mask, scores.shape)
        check_values(~torch.isnan(scores.masked_fill(~key_mask, 0.0)).any(), NAN_SCORES)
    else:
        check_values(~torch.isnan(scores).any(), NAN_SCORES)
    return _select_topk(scores, k, key_mask)


def _descending_order(values: Tensor) -> Tensor:
    """Positions that sort the last axis by descending value, ties to the lower position."""
    if torch.onnx.is_in_onnx_export():
        # ONNX has no stable sort, but its TopK is specified to put the lower index first
        # among equal values: the same tie rule.
        return torch.topk(values, values.shape[-1], dim=-1, largest=True, sorted=True).indices
    return torch.sort(values, dim=-1, descending=True, stable=True).indices


def _select_topk(scores: Tensor, k: int, key_mask: Tensor | None) -> Tensor:
    """:func:`select_topk` on validated arguments."""
    if key_mask is None:
        if torch.onnx.is_in_onnx_export():
            top = torch.topk(scores, k, dim=-1, largest=True, sorted=True).indices
        else:
            # A stable descending sort keeps equal scores in position order: ties to the lower
            # one.
            top = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]
        return top.sort(dim=-1).values
    # Rank by (is real, score) lexicographically: order by score (padding scores replaced by
    # one constant, so padding stays in position order), then stably move the real positions
    # ahead of the padding. Replacing padding scores by -inf instead would tie padding with
    # real -inf scores and could keep padding over a real token.
    order = _descending_order(scores.masked_fill(~key_mask, 0.0))
    real_first = _descending_order(key_mask.gather(-1, order).to(scores.dtype))
    top = order.gather(-1, real_first[..., :k])
    return top.sort(dim=-1).values


def gather_tokens(x: Tensor, idx: Tensor) -> Tensor:
    """Gather tokens (or per-token values) along the token axis.

    ``x`` is either ``[..., N, D]`` (tokens, positional embeddings) or ``[..., N]`` (per-token
    scalars, masks, original indices); which one is told by its rank relative to ``idx``. The
    leading dimensions of ``x`` and ``idx`` broadcast, so one positional table ``[1, N, D]``
    can be gathered with per-sample indices ``[B, k]``.

    Args:
        x: ``[..., N, D]`` or ``[..., N]``.
        idx: ``[..., k]`` integer positions in ``[0, N)``.

    Returns:
        ``[..., k, D]`` or ``[..., k]``, with the broadcast leading shape.
    """
    x = check_tensor("x", x)
    idx = check_index("idx", idx)
    check_same_device(x=x, idx=idx)
    if idx.ndim == 0:
        raise ValueError("idx must have at least one dimension [..., k], got a scalar")
    if x.ndim == idx.ndim + 1:
        has_features = True
    elif x.ndim == idx.ndim:
        has_features = False
    else:
        raise ValueError(
            f"x must be [..., N, D] or [..., N] with the leading dimensions of idx "
            f"{tuple(idx.shape[:-1])}, got x of shape {tuple(x.shape)}"
        )
    token_axis = idx.ndim - 1
    num_tokens = x.shape[token_axis]
    try:
        lead = torch.broadcast_shapes(x.shape[:token_axis], idx.shape[:-1])
    except RuntimeError:
        raise ValueError(
            f"leading dimensions of x {tuple(x.shape[:token_axis])} and idx "
            f"{tuple(idx.shape[:-1])} do not broadcast"
        ) from None
    if not has_features and tuple(lead) != tuple(idx.shape[:-1]):
        # x [N, D] with idx [1, k] would otherwise be read as 256 rows of per-token values
        raise ValueError(
            f"x of shape {tuple(x.shape)} is read as per-token values [..., N] (same rank as "
            f"idx {tuple(idx.shape)}), and then idx may not broadcast up to x's leading "
            "dimensions; to gather rows of a table [N, D], give it a leading axis ([1, N, D])"
        )
    check_index_range("idx", idx, num_tokens)
    idx = idx.to(torch.int64).expand(*lead, idx.shape[-1])
    if has_features:
        x = x.expand(*lead, *x.shape[token_axis:])
        return torch.gather(x, token_axis, idx.unsqueeze(-1).expand(*idx.shape, x.shape[-1]))
    x = x.expand(*lead, num_tokens)
    return torch.gather(x, token_axis, idx)


def pruned_token_weights(
    weights: Tensor, kept_idx: Tensor, key_mask: Tensor | None = None
) -> Tensor:
    """Fusion weights of the pruned tokens: ``weights`` on pruned real slots, zero elsewhere.

    Args:
        weights: ``[..., N]`` finite non-negative weights (attention probabilities); entries
            of padding slots are ignored.
        kept_idx: ``[..., k]`` positions of the kept tokens.
        key_mask: optional bool ``[..., N]``; False slots (padding) get zero weight.

    Returns:
        ``[..., N]``.

    Raises:
        TypeError: ``weights`` is not a floating-point tensor, ``kept_idx`` not an integer
            tensor, ``key_mask`` not a bool tensor.
        ValueError: shapes or devices disagree, ``kept_idx`` is out of range, or a weight of a
            real slot is NaN, infinite or negative.
    """
    weights = check_floating("weights", weights)
    kept_idx = check_index("kept_idx", kept_idx)
    check_same_device(weights=weights, kept_idx=kept_idx, key_mask=key_mask)
    if (
        weights.ndim == 0
        or kept_idx.ndim != weights.ndim
        or kept_idx.shape[:-1] != weights.shape[:-1]
    ):
        raise ValueError(
            f"kept_idx must have leading shape {tuple(weights.shape[:-1])} (that of weights), "
            f"got {tuple(kept_idx.shape)}"
        )
    if key_mask is not None:
        check_bool_mask("key_mask", key_mask, weights.shape)
    real = weights if key_mask is None else weights.masked_fill(~key_mask, 0.0)
    if real.numel():
        check_values(
            torch.isfinite(real).all(),
            "weights must be finite (no NaN or inf) on real slots to fuse tokens",
        )
        check_values(
            ~(real < 0).any(),
            "weights must be non-negative to fuse tokens (use attention probabilities, e.g. "
            "the 'mean' or 'cls' score rules)",
        )
    check_index_range("kept_idx", kept_idx, weights.shape[-1])
    kept_idx = kept_idx.to(torch.int64)
    # a tensor source (not a Python bool) keeps this traceable by torch.jit.trace
    not_pruned = torch.zeros_like(kept_idx, dtype=torch.bool)
    pruned = torch.ones_like(weights, dtype=torch.bool).scatter(-1, kept_idx, not_pruned)
    if key_mask is not None:
        pruned = pruned & key_mask
    return torch.where(pruned, weights, torch.zeros_like(weights))


def fuse_pruned_tokens(
    x: Tensor,
    weights: Tensor,
    kept_idx: Tensor,
    key_mask: Tensor | None = None,
    normalize: bool = False,
) -> Tensor:
    """Fuse the tokens *not* in ``kept_idx`` into one token, weighted by ``weights`` (EViT).

    Args:
        x: ``[..., N, D]`` tokens.
        weights: ``[..., N]`` non-negative weights (attention probabilities such as the
            ``mean`` or ``cls`` scores; logit-based scores are not valid weights).
        kept_idx: ``[..., k]`` positions of the kept tokens.
        key_mask: optional bool ``[..., N]``; False slots (padding) never contribute.
        normalize: if True, divide by the total weight of the pruned tokens (a weighted
            average). The default False returns the weighted sum, as EViT's released code
            computes it (its weights are class-token probabilities, which sum to < 1).

    Returns:
        ``[..., 1, D]``. All zeros where no token was pruned or all pruned weights are zero.

    Raises:
        TypeError: ``x`` or ``weights`` is not a floating-point tensor, ``kept_idx`` not an
            integer tensor, ``key_mask`` not a bool tensor, ``normalize`` not a bool.
        ValueError: shapes or devices disagree, ``kept_idx`` is out of range, or a weight of a
            real slot is NaN, infinite or negative.
    """
    x = check_floating("x", x)
    weights = check_floating("weights", weights)
    normalize = check_bool("normalize", normalize)
    if x.ndim < 2 or tuple(weights.shape) != tuple(x.shape[:-1]):
        raise ValueError(
            f"weights must have shape x.shape[:-1] = {tuple(x.shape[:-1])}, got "
            f"{tuple(weights.shape)}"
        )
    check_same_device(x=x, weights=weights)
    fused_weights = pruned_token_weights(weights, kept_idx, key_mask)
    if normalize:
        total = fused_weights.sum(dim=-1, keepdim=True)
        fused_weights = torch.where(total > 0, fused_weights / total.clamp_min(1e-30), 0.0)
    return torch.einsum("...n,...nd->...d", fused_weights.to(x.dtype), x).unsqueeze(-2)
