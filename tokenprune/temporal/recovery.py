"""Restore a full-length token sequence after pruning (HoT's Token Recovering Attention).

A pruned transformer ends with ``n`` tokens per sequence where the task needs ``T`` (one pose
per video frame, one feature per image patch). :class:`TokenRecoveringAttention` holds ``T``
learnable query tokens, one per output position, and lets them read the ``n`` kept tokens by
one multi-head cross-attention with a residual:

    out = queries + Proj(MultiHead(Q(queries), K(kept), V(kept)))

There is no feed-forward layer and no normalisation; the output goes to the task head.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from ..attention.reference import sdpa
from ..checks import (
    check_bool,
    check_float,
    check_floating,
    check_int,
    check_matches_parameters,
)

__all__ = ["TokenRecoveringAttention"]


class TokenRecoveringAttention(nn.Module):
    """Recover ``num_tokens`` tokens from the tokens a pruned model kept.

    Generic over the token layout: ``[B, n, ..., D] -> [B, num_tokens, ..., D]``, with the
    token (time) axis at 1, channels last, and every axis in between (joints, for a video pose
    transformer) treated as an independent sequence that shares the queries.

    Args:
        dim: token width ``D``; divisible by ``num_heads``.
        num_tokens: output length ``T`` (HoT: the clip length).
        num_heads: attention heads (HoT: 8).
        qkv_bias: bias of the query, key and value projections (HoT: True).
        attn_drop: dropout on the attention probabilities (training only).
        proj_drop: dropout after the output projection.

    The queries start at zero as in HoT, so every output position is the same until training
    separates them.

    Raises:
        TypeError: an argument has the wrong type (``qkv_bias`` not a bool, ...).
        ValueError: ``dim``, ``num_tokens`` or ``num_heads`` is below 1, ``dim`` is not
            divisible by ``num_heads``, or a dropout rate is outside ``[0, 1)``.
    """

    def __init__(
        self,
        dim: int,
        num_tokens: int,
        num_heads: int = 8,
        *,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        dim = check_int("dim", dim, low=1)
        num_heads = check_int("num_heads", num_heads, low=1)
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.dim, self.num_heads = dim, num_heads
        self.num_tokens = check_int("num_tokens", num_tokens, low=1)
        self.attn_drop = check_float("attn_drop", attn_drop, low=0.0, high=1.0, high_open=True)
        proj_drop = check_float("proj_drop", proj_drop, low=0.0, high=1.0, high_open=True)
        qkv_bias = check_bool("qkv_bias", qkv_bias)
        self.queries = nn.Parameter(torch.zeros(1, self.num_tokens, dim))
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, kept: Tensor) -> Tensor:
        """``kept [B, n, ..., D]`` (``n >= 1``) -> ``[B, num_tokens, ..., D]``.

        Raises:
            TypeError: ``kept`` is not a floating-point tensor.
            ValueError: ``kept`` has another layout, or another dtype or device than the
                module's parameters.
        """
        kept = check_floating("kept", kept)
        if kept.ndim < 3 or kept.shape[-1] != self.dim or kept.shape[1] == 0:
            raise ValueError(
                f"kept must be [B, n >= 1, ..., D={self.dim}], got shape {tuple(kept.shape)}"
            )
        check_matches_parameters("kept", kept, self.queries)
        batch, middle = kept.shape[0], kept.shape[2:-1]
        sequences = rearrange(kept, "b n ... d -> (b ...) n d")
        queries = self.queries.expand(sequences.shape[0], -1, -1)
        split = "s n (h d) -> s h n d"
        q = rearrange(self.q(queries), split, h=self.num_heads)
        k = rearrange(self.k(sequences), split, h=self.num_heads)
        v = rearrange(self.v(sequences), split, h=self.num_heads)
        drop = self.attn_drop if self.training else 0.0
        attended = sdpa(q, k, v, dropout_p=drop)
        out = queries + self.proj_drop(self.proj(rearrange(attended, "s h n d -> s n (h d)")))
        out = out.reshape(batch, *middle, self.num_tokens, self.dim)
        return out.movedim(-2, 1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_tokens={self.num_tokens}, num_heads={self.num_heads}"
