"""Plain-PyTorch attention ops: the references every other backend is tested against.

The attention output goes through :func:`torch.nn.functional.scaled_dot_product_attention`, so
PyTorch picks its fastest applicable kernel (flash attention when no mask is needed). The
scoring logits of the first ``J`` query rows are computed separately with one small matmul.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .layout import group_key_mask, group_keys

__all__ = ["gathered_attention_torch", "group_attention_torch", "scoring_dtype"]


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
        # A group without any real key would give an all-False mask row, which some SDPA
        # kernels turn into NaN (in the backward too); let it attend to everything and zero
        # its output below instead.
        has_key = valid.any(dim=-1, keepdim=True)
        attn_mask = (valid | ~has_key).flatten(0, 1)[:, None, None, :]  # [B*G, 1, 1, Nk]
    out = F.scaled_dot_product_attention(
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

    attn_mask = None
    if key_mask is not None:
        has_key = key_mask.any(dim=-1, keepdim=True)  # see group_attention_torch
        attn_mask = (key_mask | ~has_key).flatten(0, 1)[:, None, None, :]
    out = F.scaled_dot_product_attention(
        q.flatten(0, 1),
        select(k).flatten(0, 1),
        select(v).flatten(0, 1),
        attn_mask=attn_mask,
        scale=scale,
    ).unflatten(0, (batch, groups))
    if key_mask is not None:
        out = torch.where(has_key[:, :, None, None], out, torch.zeros_like(out))
    return out
