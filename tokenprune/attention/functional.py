"""Functional group attention: validation and backend dispatch."""

from __future__ import annotations

import math

from torch import Tensor

from .._validation import (
    check_bool_mask,
    check_floating,
    check_int,
    check_same_device,
    check_same_dtype,
    static_shape,
)
from .backends import resolve_backend
from .layout import AttentionLogits

__all__ = ["group_attention"]


def group_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    num_shared: int = 0,
    key_mask: Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    score_queries: int = 0,
    backend: str = "auto",
) -> Tensor | tuple[Tensor, AttentionLogits]:
    """Attention of ``G`` token groups that share their first ``num_shared`` tokens.

    Every query of group ``g`` attends to the shared tokens (the first ``S = num_shared`` slots)
    of all ``G`` groups plus the private tokens (the remaining ``N - S`` slots) of group ``g``
    only. With ``G = 1`` this is standard scaled-dot-product attention.

    Args:
        q, k, v: ``[B, G, H, N, D]`` queries, keys and values (one dtype, one device).
        num_shared: ``S`` in ``[0, N]``.
        key_mask: optional ``[B, G, N]`` bool, True for real tokens. A False slot is never
            attended to as a key by any group; its own query row is still computed. A group
            with no real key outputs zeros.
        scale: logit scale; defaults to ``D ** -0.5``.
        dropout_p: dropout on the attention probabilities (pass 0 at inference).
        score_queries: ``J`` in ``[0, N]``. When positive, also return the pre-softmax logits
            and log-sum-exp of the first ``J`` query rows of every group.
        backend: ``"auto"``, ``"torch"`` or another name from
            :func:`tokenprune.attention.available_backends`.

    Returns:
        ``out`` of shape ``[B, G, H, N, D]``, or ``(out, AttentionLogits)`` when
        ``score_queries > 0``.
    """
    q = check_floating("q", q, ndim=5)
    k = check_floating("k", k, ndim=5)
    v = check_floating("v", v, ndim=5)
    if not (q.shape == k.shape == v.shape):
        raise ValueError(
            "q, k and v must have the same shape [B, G, H, N, D], got "
            f"{tuple(q.shape)}, {tuple(k.shape)} and {tuple(v.shape)}"
        )
    check_same_dtype(q=q, k=k, v=v)
    check_same_device(q=q, k=k, v=v, key_mask=key_mask)
    batch, groups, _, tokens, head_dim = static_shape(q)
    num_shared = check_int("num_shared", num_shared, low=0, high=tokens)
    score_queries = check_int("score_queries", score_queries, low=0, high=tokens)
    if key_mask is not None:
        check_bool_mask("key_mask", key_mask, (batch, groups, tokens))
    scale = _resolve_scale(scale, head_dim)
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)):
        raise TypeError(f"dropout_p must be a float, got {type(dropout_p).__name__}")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")

    impl = resolve_backend(backend, q, key_mask, float(dropout_p), score_queries)
    out, logits, lse = impl(q, k, v, num_shared, key_mask, scale, float(dropout_p), score_queries)
    if score_queries == 0:
        return out
    assert logits is not None and lse is not None
    return out, AttentionLogits(logits, lse, groups * num_shared)


def _resolve_scale(scale: float | None, head_dim: int) -> float:
    if scale is None:
        return head_dim**-0.5
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a float or None, got {type(scale).__name__}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite float, got {scale}")
    return float(scale)
