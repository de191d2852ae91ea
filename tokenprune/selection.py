"""Selecting, gathering and fusing tokens along the token axis."""

from __future__ import annotations

import torch
from torch import Tensor

from ._validation import (
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


def select_topk(scores: Tensor, k: int) -> Tensor:
    """Positions of the ``k`` highest scores of every row, in ascending position order.

    Keeping positions sorted preserves the original token order. Ties are resolved toward the
    lower position, so the result is deterministic. ``-inf`` scores are allowed (they lose to
    any finite score); NaN scores raise.

    Args:
        scores: ``[..., N]`` floating-point scores.
        k: number of positions to keep, in ``[1, N]``.

    Returns:
        ``[..., k]`` int64 positions.
    """
    scores = check_floating("scores", scores)
    if scores.ndim == 0:
        raise ValueError("scores must have at least one dimension [..., N], got a scalar")
    num_tokens = scores.shape[-1]
    k = check_int("k", k, low=1, high=num_tokens)
    check_values(~torch.isnan(scores).any(), NAN_SCORES)
    if torch.onnx.is_in_onnx_export():
        # ONNX has no stable sort, but its TopK is specified to put the lower index first
        # among equal values: the same tie rule.
        top = torch.topk(scores, k, dim=-1, largest=True, sorted=True).indices
    else:
        # A stable descending sort keeps equal scores in position order: ties to the lower one.
        top = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]
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
        weights: ``[..., N]`` non-negative weights (attention probabilities).
        kept_idx: ``[..., k]`` positions of the kept tokens.
        key_mask: optional bool ``[..., N]``; False slots (padding) get zero weight.

    Returns:
        ``[..., N]``.
    """
    weights = check_floating("weights", weights)
    kept_idx = check_index("kept_idx", kept_idx)
    check_same_device(weights=weights, kept_idx=kept_idx, key_mask=key_mask)
    if weights.ndim == 0 or kept_idx.shape[:-1] != weights.shape[:-1]:
        raise ValueError(
            f"kept_idx must have leading shape {tuple(weights.shape[:-1])} (that of weights), "
            f"got {tuple(kept_idx.shape)}"
        )
    check_values(
        ~(weights < 0).any(),
        "weights must be non-negative to fuse tokens (use attention probabilities, e.g. the "
        "'mean' or 'cls' score rules)",
    )
    check_index_range("kept_idx", kept_idx, weights.shape[-1])
    kept_idx = kept_idx.to(torch.int64)
    # a tensor source (not a Python bool) keeps this traceable by torch.jit.trace
    not_pruned = torch.zeros_like(kept_idx, dtype=torch.bool)
    pruned = torch.ones_like(weights, dtype=torch.bool).scatter(-1, kept_idx, not_pruned)
    if key_mask is not None:
        check_bool_mask("key_mask", key_mask, weights.shape)
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
    """
    x = check_floating("x", x)
    if x.ndim < 2 or tuple(weights.shape) != tuple(x.shape[:-1]):
        raise ValueError(
            f"weights must have shape x.shape[:-1] = {tuple(x.shape[:-1])}, got "
            f"{tuple(getattr(weights, 'shape', ()))}"
        )
    check_same_device(x=x, weights=weights)
    fused_weights = pruned_token_weights(weights, kept_idx, key_mask)
    if normalize:
        total = fused_weights.sum(dim=-1, keepdim=True)
        fused_weights = torch.where(total > 0, fused_weights / total.clamp_min(1e-30), 0.0)
    return torch.einsum("...n,...nd->...d", fused_weights.to(x.dtype), x).unsqueeze(-2)
