"""Token importance scores derived from attention.

Each rule turns the attention of a few *scoring queries* (keypoint, human or class tokens) to a
set of *candidate* tokens into one score per candidate. Higher means more important.

=================  =========================================================================
rule               definition (``a``: pre-softmax logits, ``p``: post-softmax probabilities)
=================  =========================================================================
``mean`` (PPT)     ``s_n = sum_j mean_h p[h, j, n]``
``softmax_pool``   ``s_n = sum_m softmax_m(a[:, n])[m] * a[m, n]`` with ``m`` running over
(GTPT)             all (head, query) pairs: a max-leaning mean of the logits of column ``n``
``cls`` (EViT)     ``s_n = mean_h p[h, 0, n]`` for a single query (the class token)
=================  =========================================================================

The functions take tensors shaped ``[..., H, J, N]`` (heads, scoring queries, candidates) and
return ``[..., N]``. :func:`token_scores` applies a rule to the :class:`AttentionLogits`
returned by :class:`~tokenprune.MultiHeadGroupAttention`, scoring each group's private tokens.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .checks import check_floating, check_same_device, check_tensor
from .layout import AttentionLogits

__all__ = ["ScoreRule", "cls_score", "mean_score", "softmax_pool_score", "token_scores"]

ScoreRule = Literal["mean", "softmax_pool", "cls"]
_RULES = ("mean", "softmax_pool", "cls")


def _query_row_mask(query_mask: Tensor | None, attention: Tensor) -> Tensor | None:
    """Broadcast a ``[..., J]`` query mask to ``[..., 1, J, 1]`` against ``[..., H, J, N]``."""
    if query_mask is None:
        return None
    query_mask = check_tensor("query_mask", query_mask)
    check_same_device(attention=attention, query_mask=query_mask)
    if query_mask.dtype != torch.bool:
        raise TypeError(f"query_mask must be a bool tensor, got {query_mask.dtype}")
    rows = attention.shape[-2]
    if query_mask.ndim == 0 or query_mask.shape[-1] != rows:
        raise ValueError(
            f"query_mask must have last dimension {rows} (one entry per scoring query), "
            f"got shape {tuple(query_mask.shape)}"
        )
    lead = attention.shape[:-3]
    try:
        torch.broadcast_shapes(query_mask.shape[:-1], lead)
    except RuntimeError:
        raise ValueError(
            f"query_mask leading shape {tuple(query_mask.shape[:-1])} does not broadcast "
            f"against the attention's leading shape {tuple(lead)}"
        ) from None
    return query_mask[..., None, :, None]


def _check_heads(probs: Tensor) -> None:
    """A mean over no head would be NaN."""
    if probs.shape[-3] == 0:
        raise ValueError(
            f"probs must have at least one head (H >= 1) in [..., H, J, N], got shape "
            f"{tuple(probs.shape)}"
        )


def softmax_pool_score(logits: Tensor, query_mask: Tensor | None = None) -> Tensor:
    """GTPT's softmax pooling of pre-softmax logits.

    For every candidate column ``n``, a softmax over all (head, query) rows of ``a[:, n]``
    weights those same logits: ``s_n = sum_m softmax_m(a[:, n])[m] * a[m, n]``. The strongest
    head/query dominates, but unlike a max every row contributes.

    Args:
        logits: ``[..., H, J, N]`` scaled pre-softmax logits; ``-inf`` marks masked keys.
        query_mask: optional bool ``[..., J]``; False rows are ignored (e.g. GTPT's dummy
            keypoint token). Leading axes align from the right as in broadcasting, so for
            ``[B, G, H, J, N]`` logits a ``[G, J]`` mask applies per group to every batch
            element; use ``[B, 1, J]`` for a per-sample mask.

    Returns:
        ``[..., N]`` scores; ``-inf`` for a column with no finite logit in any used row.

    Raises:
        TypeError: ``logits`` is not a floating-point tensor, ``query_mask`` not a bool tensor.
        ValueError: ``logits`` has fewer than 3 dimensions, ``query_mask`` does not fit it or
            lives on another device.
    """
    logits = check_floating("logits", logits)
    if logits.ndim < 3:
        raise ValueError(f"logits must have shape [..., H, J, N], got {tuple(logits.shape)}")
    rows = _query_row_mask(query_mask, logits)
    if rows is not None:
        logits = logits.masked_fill(~rows, float("-inf"))
    flat = logits.flatten(-3, -2)  # [..., H*J, N]
    masked = flat == float("-inf")
    # Masked entries get the most negative finite value for the softmax (weight exactly 0 next
    # to any real row) and 0 in the weighted sum, which keeps values and gradients NaN-free.
    # A NaN logit is not a mask: it propagates to the score, where top-k selection rejects it.
    weights = torch.softmax(flat.masked_fill(masked, torch.finfo(flat.dtype).min), dim=-2)
    pooled = (weights * flat.masked_fill(masked, 0.0)).sum(dim=-2)
    return pooled.masked_fill(masked.all(dim=-2), float("-inf"))


def mean_score(probs: Tensor, query_mask: Tensor | None = None) -> Tensor:
    """PPT's score: post-softmax attention averaged over heads, summed over scoring queries.

    Args:
        probs: ``[..., H, J, N]`` attention probabilities (normalised over all keys).
        query_mask: optional bool ``[..., J]`` (broadcastable); False rows are ignored.

    Returns:
        ``[..., N]`` scores.

    Raises:
        TypeError: ``probs`` is not a floating-point tensor, ``query_mask`` not a bool tensor.
        ValueError: ``probs`` has fewer than 3 dimensions or no head, ``query_mask`` does not
            fit it or lives on another device.
    """
    probs = check_floating("probs", probs)
    if probs.ndim < 3:
        raise ValueError(f"probs must have shape [..., H, J, N], got {tuple(probs.shape)}")
    _check_heads(probs)
    rows = _query_row_mask(query_mask, probs)
    per_query = probs.mean(dim=-3, keepdim=True)  # [..., 1, J, N]
    if rows is not None:
        per_query = per_query.masked_fill(~rows, 0.0)
    return per_query.sum(dim=-2).squeeze(-2)


def cls_score(probs: Tensor) -> Tensor:
    """EViT's score: the class token's post-softmax attention, averaged over heads.

    Args:
        probs: ``[..., H, 1, N]`` probabilities of the single scoring query.

    Returns:
        ``[..., N]`` scores.

    Raises:
        TypeError: ``probs`` is not a floating-point tensor.
        ValueError: ``probs`` is not ``[..., H, 1, N]`` with ``H >= 1``.
    """
    probs = check_floating("probs", probs)
    if probs.ndim < 3 or probs.shape[-2] != 1:
        raise ValueError(
            f"probs must have shape [..., H, 1, N] (one class-token query), got "
            f"{tuple(probs.shape)}"
        )
    _check_heads(probs)
    return probs.mean(dim=-3).squeeze(-2)


def token_scores(
    attention: AttentionLogits, rule: ScoreRule, query_mask: Tensor | None = None
) -> Tensor:
    """Score every group's private tokens from the logits of its scoring queries.

    Args:
        attention: :class:`AttentionLogits` from
            :meth:`~tokenprune.MultiHeadGroupAttention.forward_scored` (``J`` scoring queries).
        rule: ``"mean"``, ``"softmax_pool"`` or ``"cls"`` (see the module docstring).
        query_mask: optional bool ``[..., J]``; False scoring queries are ignored
            (not accepted by ``"cls"``).

    Returns:
        ``[B, G, N - S]`` (``[B, N - S]`` for ungrouped attention): one score per private
        token, aligned with the private slots of the attention input.
    """
    if not isinstance(attention, AttentionLogits):
        raise TypeError(f"attention must be AttentionLogits, got {type(attention).__name__}")
    if rule == "softmax_pool":
        return softmax_pool_score(attention.private_logits(), query_mask)
    if rule == "mean":
        return mean_score(attention.private_probs(), query_mask)
    if rule == "cls":
        if query_mask is not None:
            raise ValueError("query_mask is not supported by the 'cls' rule (one query)")
        queries = attention.logits.shape[-2]
        if queries != 1:
            raise ValueError(
                f"the 'cls' rule scores with exactly one query (score_queries=1), got {queries}"
            )
        return cls_score(attention.private_probs())
    raise ValueError(f"rule must be one of {_RULES}, got {rule!r}")
