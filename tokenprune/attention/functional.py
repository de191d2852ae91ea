"""Functional attention ops: validation and backend dispatch."""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import static_shape
from ..layout import (
    AttentionLogits,
    check_gathered_attention_args,
    check_group_attention_args,
    resolve_scale,
)
from ..selection import check_index_range
from .backends import resolve_backend

__all__ = ["gathered_attention", "group_attention", "group_attention_scored"]


def group_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    num_shared: int = 0,
    key_mask: Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    backend: str = "auto",
) -> Tensor:
    """Attention of ``G`` token groups that share their first ``num_shared`` tokens.

    Every query of group ``g`` attends to the shared tokens (the first ``S = num_shared`` slots)
    of all ``G`` groups plus the private tokens (the remaining ``N - S`` slots) of group ``g``
    only. With ``G = 1`` this is standard scaled-dot-product attention.

    Args:
        q, k, v: ``[B, G, H, N, D]`` queries, keys and values (one dtype, one device).
        num_shared: ``S`` in ``[0, N]``.
        key_mask: optional ``[B, G, N]`` bool, True for real tokens. A False slot is never
            attended to as a key by any group; its own query row is still computed. A group
            with no real key outputs zeros, its scoring rows have lse ``-inf`` and
            probabilities 0, and no gradient flows back through it (on every backend).
        scale: logit scale; defaults to ``D ** -0.5``.
        dropout_p: dropout on the attention probabilities (pass 0 at inference).
        backend: ``"auto"``, ``"torch"`` or another name from
            :func:`tokenprune.attention.available_backends`.

    Returns:
        ``[B, G, H, N, D]``. :func:`group_attention_scored` also returns the logits that
        score tokens for pruning.
    """
    return _group_attention(q, k, v, num_shared, key_mask, scale, dropout_p, 0, backend)[0]


def group_attention_scored(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    score_queries: int,
    num_shared: int = 0,
    key_mask: Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    backend: str = "auto",
) -> tuple[Tensor, AttentionLogits]:
    """:func:`group_attention`, and the pre-softmax logits of each group's first
    ``score_queries`` query rows (with their log-sum-exp), computed in the same pass.

    Args:
        score_queries: ``J`` in ``[0, N]``: the scoring rows (the queries whose attention
            scores tokens, such as keypoint tokens or a class token).
        the others: as in :func:`group_attention`.

    Returns:
        ``(out [B, G, H, N, D], AttentionLogits)`` with logits ``[B, G, H, J, G*S + N - S]``
        and lse ``[B, G, H, J]``.
    """
    out, logits, lse, num_shared_keys = _group_attention(
        q, k, v, num_shared, key_mask, scale, dropout_p, score_queries, backend
    )
    if logits is None:  # no scoring rows (score_queries=0): empty logits
        batch, groups, heads, tokens, _ = static_shape(q)
        num_keys = num_shared_keys + tokens - num_shared
        dtype = torch.promote_types(q.dtype, torch.float32)
        logits = q.new_empty((batch, groups, heads, 0, num_keys), dtype=dtype)
        lse = q.new_empty((batch, groups, heads, 0), dtype=dtype)
    return out, AttentionLogits(logits, lse, num_shared_keys)


def _group_attention(
    q, k, v, num_shared, key_mask, scale, dropout_p, score_queries, backend
) -> tuple[Tensor, Tensor | None, Tensor | None, int]:
    """``(out, logits, lse, G * S)``; logits and lse may be None when ``score_queries == 0``."""
    num_shared, score_queries, shape = check_group_attention_args(
        q, k, v, key_mask, num_shared, score_queries
    )
    _, groups, _, _, head_dim = shape
    scale = resolve_scale(scale, head_dim)
    if type(dropout_p) is not float or not 0.0 <= dropout_p < 1.0:  # else the checks below
        if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)):
            raise TypeError(f"dropout_p must be a float, got {type(dropout_p).__name__}")
        if not 0.0 <= dropout_p < 1.0:
            raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
        dropout_p = float(dropout_p)

    impl = resolve_backend("group_attention", backend, q, dropout_p)
    out, logits, lse = impl(q, k, v, num_shared, key_mask, scale, dropout_p, score_queries)
    return out, logits, lse, groups * num_shared


def gathered_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    index: Tensor,
    *,
    key_mask: Tensor | None = None,
    scale: float | None = None,
    backend: str = "auto",
) -> Tensor:
    """Attention of each group to the keys it selects from a shared token buffer.

    Group ``g`` of batch element ``b`` attends to the buffer rows ``index[b, g]`` (its kept
    tokens, say) without gathered copies of the keys and values being made by the kernel.
    Indices may repeat, within a group (that key then counts twice) and across groups.

    Experimental: no model of the zoo uses it yet (the pruned models gather their kept tokens
    and run :func:`group_attention`), so its signature may still change.

    Args:
        q: ``[B, G, H, Nq, D]`` queries of every group.
        k, v: ``[B, H, T, D]`` keys and values of the buffer (one dtype and device with ``q``).
        index: ``[B, G, Nk]`` integer positions in ``[0, T)``.
        key_mask: optional ``[B, G, Nk]`` bool, False for padding entries of ``index``. A group
            without any real key outputs zeros, and no gradient flows back through it.
        scale: logit scale; defaults to ``D ** -0.5``.
        backend: ``"auto"``, ``"torch"`` or ``"triton"``.

    Returns:
        ``[B, G, H, Nq, D]``.
    """
    check_gathered_attention_args(q, k, v, index, key_mask)
    scale = resolve_scale(scale, static_shape(q)[-1])
    impl = resolve_backend("gathered_attention", backend, q)
    # a value check (a device round trip or an asynchronous assertion): run it once, here
    # unless the backend's op does it itself (the Triton op does, as it must when called
    # directly)
    if not getattr(impl, "checks_index_range", False):
        check_index_range("index", index, k.shape[2])
    return impl(q, k, v, index.to(torch.int64), key_mask, scale)
