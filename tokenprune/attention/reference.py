"""Plain-PyTorch attention ops: the references every other backend is tested against.

The attention output goes through :func:`torch.nn.functional.scaled_dot_product_attention`, so
PyTorch picks its fastest applicable kernel (flash attention when no mask is needed). The
scoring logits of the first ``J`` query rows are computed separately with one small matmul.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..layout import group_key_mask, group_keys

__all__ = ["gathered_attention_torch", "group_attention_torch", "scoring_dtype", "sdpa"]


def sdpa(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> Tensor:
    """:func:`torch.nn.functional.scaled_dot_product_attention` that never hides a NaN.

    PyTorch's CPU flash kernel returns 0, not NaN, for a query row whose logits are all NaN (a
    non-finite query, or keys that are all non-finite), which would turn bad data into a
    plausible output. Here such rows, and every row when any key is non-finite, are NaN, as
    the math kernel computes them. Keys hidden by ``attn_mask`` must be finite (zero them).

    The test is one reduction per tensor: a row holds a NaN or an infinity exactly when
    ``0 * sum(row)`` is NaN (the sum accumulates in float32 at least, so finite half-precision
    rows cannot overflow it).
    """
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale
    )
    acc = scoring_dtype(q.dtype)
    bad = (q.sum(dim=-1, keepdim=True, dtype=acc) * 0).isnan()  # [..., Nq, 1]
    bad = bad | (k.sum(dim=(-2, -1), dtype=acc) * 0).isnan()[..., None, None]
    return out.masked_fill(bad, float("nan"))


def scoring_dtype(dtype: torch.dtype) -> torch.dtype:
    """Dtype of returned logits and log-sum-exp: at least float32 (half inputs are upcast)."""
    return torch.promote_types(dtype, torch.float32)


def group_attention_torch(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    num_shared: int,
    key_mask: Tensor | None,
    scale: float,
    dropout_p: float,
    score_queries: int,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Group attention in plain PyTorch. Arguments are assumed validated.

    Args:
        q, k, v: ``[B, G, H, N, D]``.
        num_shared: ``S``, leading shared slots per group.
        key_mask: ``[B, G, N]`` bool (True = real key) or None.
        scale: logit scale.
        dropout_p: attention-probability dropout (0 outside training).
        score_queries: ``J``; logits and log-sum-exp are returned for the first ``J`` rows.

    Returns:
        ``(out [B, G, H, N, D], logits [B, G, H, J, Nk] | None, lse [B, G, H, J] | None)``.
    """
    batch, groups = q.shape[:2]
    keys = group_keys(k, num_shared)
    values = group_keys(v, num_shared)
    valid = None if key_mask is None else group_key_mask(key_mask, num_shared)

    attn_mask = None
    if valid is not None:
        # A masked key gets weight 0, but 0 * NaN is NaN: zero the masked keys and values so
        # that whatever a padding slot holds (NaN, inf) never reaches a real output.
        hidden = ~valid[:, :, None, :, None]
        keys, values = keys.masked_fill(hidden, 0.0), values.masked_fill(hidden, 0.0)
        # A group without any real key would give an all-False mask row, which some SDPA
        # kernels turn into NaN (in the backward too); let it attend to everything and zero
        # its output below instead.
        has_key = valid.any(dim=-1, keepdim=True)
        attn_mask = (valid | ~has_key).flatten(0, 1)[:, None, None, :]  # [B*G, 1, 1, Nk]
    out = sdpa(
        q.flatten(0, 1),
        keys.flatten(0, 1),
        values.flatten(0, 1),
        attn_mask=attn_mask,
        dropout_p=dropout_p,
        scale=scale,
    ).unflatten(0, (batch, groups))
    if valid is not None:
        # a group with no real key attends to nothing: its output is zero on every backend
        out = torch.where(has_key[:, :, None, None], out, torch.zeros_like(out))

    if score_queries == 0:
        return out, None, None
    acc = scoring_dtype(q.dtype)
    scoring = q[:, :, :, :score_queries].to(acc)
    logits = (scoring @ keys.to(acc).transpose(-1, -2)) * scale
    if valid is not None:
        logits = logits.masked_fill(~valid[:, :, None, None, :], float("-inf"))
    lse = torch.logsumexp(logits, dim=-1)
    return out, logits, lse


def gathered_attention_torch(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    index: Tensor,
    key_mask: Tensor | None,
    scale: float,
) -> Tensor:
    """Gathered attention in plain PyTorch: gather the selected keys, then attend.

    Args:
        q: ``[B, G, H, Nq, D]``.
        k, v: ``[B, H, T, D]`` token buffer shared by the groups.
        index: ``[B, G, Nk]`` int64 positions in ``[0, T)``.
        key_mask: ``[B, G, Nk]`` bool (True = real key) or None.

    Returns:
        ``[B, G, H, Nq, D]``; zero for a group without any real key.
    """
    batch, groups, heads, _, head_dim = q.shape
    num_keys = index.shape[-1]
    gather_index = index[:, :, None, :, None].expand(batch, groups, heads, num_keys, head_dim)

    def select(buffer: Tensor) -> Tensor:
        expanded = buffer.unsqueeze(1).expand(batch, groups, *buffer.shape[1:])
        return torch.gather(expanded, 3, gather_index)

    keys, values = select(k), select(v)
    attn_mask = None
    if key_mask is not None:
        hidden = ~key_mask[:, :, None, :, None]  # see group_attention_torch
        keys, values = keys.masked_fill(hidden, 0.0), values.masked_fill(hidden, 0.0)
        has_key = key_mask.any(dim=-1, keepdim=True)
        attn_mask = (key_mask | ~has_key).flatten(0, 1)[:, None, None, :]
    out = sdpa(
        q.flatten(0, 1),
        keys.flatten(0, 1),
        values.flatten(0, 1),
        attn_mask=attn_mask,
        scale=scale,
    ).unflatten(0, (batch, groups))
    if key_mask is not None:
        out = torch.where(has_key[:, :, None, None], out, torch.zeros_like(out))
    return out
