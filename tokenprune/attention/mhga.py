"""Multi-Head Group Attention (GTPT's MHGA) as a drop-in ViT attention module."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from ..checks import (
    check_bool,
    check_bool_mask,
    check_float,
    check_floating,
    check_int,
    check_matches_parameters,
    check_number,
    check_same_device,
)
from ..layout import AttentionLogits, resolve_scale
from .backends import check_backend_name, load_backend
from .builtin_backends import TRITON_INSTALLED
from .functional import group_attention, group_attention_scored

__all__ = ["MultiHeadGroupAttention"]


class MultiHeadGroupAttention(nn.Module):
    """Multi-head attention over token groups that share their leading tokens.

    The input holds ``G`` groups of ``N`` token slots. The first ``num_shared`` tokens of every
    group are shared: every query of group ``g`` attends to the shared tokens of all groups plus
    the remaining (private) tokens of group ``g`` only. This is GTPT's Multi-Head Group
    Attention: the keypoint tokens are shared, the visual tokens kept by each group are private.
    All heads run in every group, with one set of weights.

    With one group and ``num_shared = 0`` it is exactly standard multi-head self-attention, and
    the parameter layout (``qkv``: ``Linear(dim, 3 * dim)`` ordered q, k, v then heads;
    ``q_norm``/``k_norm`` over each head's queries and keys and ``norm`` before ``proj`` when
    enabled; ``proj``: ``Linear(dim, dim)``) is that of timm's ViT ``Attention`` module, so such
    a module's ``state_dict`` loads unchanged (:func:`tokenprune.patch.timm` swaps them).

    Args:
        dim: token width ``D``; must be divisible by ``num_heads``.
        num_heads: number of heads ``H``.
        qkv_bias: whether the qkv projection has a bias.
        scale: logit scale; defaults to ``head_dim ** -0.5``. GTPT's released weights were
            trained with ``dim ** -0.5``.
        attn_drop: dropout on the attention probabilities (training only).
        proj_drop: dropout after the output projection.
        backend: group-attention backend, see :func:`tokenprune.attention.available_backends`.
        qk_norm: LayerNorm each head's queries and keys (``q_norm``, ``k_norm``; timm's
            ``qk_norm=True``).
        scale_norm: LayerNorm the attention output before the projection (``norm``).
        proj_bias: whether the output projection has a bias.
        norm_eps: epsilon of those LayerNorms.

    Raises:
        TypeError: an argument has the wrong type (``qkv_bias`` not a bool, ...).
        ValueError: ``dim`` or ``num_heads`` is below 1, ``dim`` not divisible by
            ``num_heads``, ``scale`` not positive and finite, a dropout rate outside
            ``[0, 1)``, or ``backend`` unknown.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        backend: str = "auto",
        *,
        qk_norm: bool = False,
        scale_norm: bool = False,
        proj_bias: bool = True,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        check_int("dim", dim, low=1)
        check_int("num_heads", num_heads, low=1)
        check_bool("qkv_bias", qkv_bias)
        for name, flag in (("qk_norm", qk_norm), ("scale_norm", scale_norm),
                           ("proj_bias", proj_bias)):  # fmt: skip
            check_bool(name, flag)
        check_number("norm_eps", norm_eps, low=0.0)
        if dim % num_heads != 0:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = resolve_scale(scale, self.head_dim)
        self.attn_drop = check_float("attn_drop", attn_drop, low=0.0, high=1.0, high_open=True)
        check_float("proj_drop", proj_drop, low=0.0, high=1.0, high_open=True)
        self.backend = check_backend_name(backend, "group_attention")
        # Import the implementation now rather than inside torch.compile's tracing.
        if backend != "auto":
            load_backend("group_attention", backend)
        elif torch.cuda.is_available() and TRITON_INSTALLED:
            load_backend("group_attention", "triton")
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else nn.Identity()
        self.norm = nn.LayerNorm(dim, eps=norm_eps) if scale_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(
        self,
        x: Tensor,
        num_shared: int = 0,
        key_mask: Tensor | None = None,
        *,
        attn_mask: None = None,
        is_causal: bool = False,
    ) -> Tensor:
        """Attend within and across groups.

        Args:
            x: ``[B, G, N, D]`` (``[B, N, D]`` is accepted and treated as ``G = 1``).
            num_shared: number of leading shared tokens per group, in ``[0, N]``.
            key_mask: optional bool ``[B, G, N]`` (``[B, N]`` for 3-d input); False marks a
                slot that no query may attend to (padding of ragged groups, dummy tokens). Its
                own output row is still computed.
            attn_mask, is_causal: accepted for the call signature of timm's attention (its
                ``Block`` passes them); only their defaults (None, False) are supported.

        Returns:
            Output of the same shape as ``x``. :meth:`forward_scored` also returns the
            logits that score tokens for pruning.

        Raises:
            ValueError: an ``attn_mask`` or ``is_causal=True`` is given (use ``key_mask`` for
                padding; group attention has no causal form).
        """
        if attn_mask is not None or is_causal is not False:
            raise ValueError(
                "MultiHeadGroupAttention supports neither attn_mask nor is_causal=True; mark "
                "padding with key_mask (bool [B, G, N], False = padding)"
            )
        return self._attend(x, num_shared, key_mask, None)[0]

    def forward_scored(
        self, x: Tensor, score_queries: int, num_shared: int = 0, key_mask: Tensor | None = None
    ) -> tuple[Tensor, AttentionLogits]:
        """:meth:`forward`, and the pre-softmax logits and log-sum-exp of the first
        ``score_queries`` (``J``) queries of every group, from the same pass (``J x N`` numbers
        per group and head, never the full ``N x N`` matrix).

        Returns:
            ``(output, AttentionLogits)``; logits ``[B, G, H, J, G*S + N - S]``. For 3-d input
            the logits drop the group axis as well.
        """
        out, logits = self._attend(x, num_shared, key_mask, score_queries)
        return out, logits

    def _attend(
        self, x: Tensor, num_shared: int, key_mask: Tensor | None, score_queries: int | None
    ) -> tuple[Tensor, AttentionLogits | None]:
        """``(output, logits)``; the logits are None when ``score_queries`` is None (plain
        :meth:`forward`)."""
        x = check_floating("x", x, ndim=(3, 4))
        if x.shape[-1] != self.dim:
            raise ValueError(f"x must have last dimension {self.dim}, got {tuple(x.shape)}")
        check_matches_parameters("x", x, self.qkv.weight)
        check_same_device(x=x, key_mask=key_mask)
        ungrouped = x.ndim == 3
        if ungrouped:
            x = x.unsqueeze(1)
            if key_mask is not None:
                check_bool_mask("key_mask", key_mask, (x.shape[0], x.shape[2]))
                key_mask = key_mask.unsqueeze(1)

        qkv = self.qkv(x)
        q, k, v = rearrange(qkv, "b g n (three h d) -> three b g h n d", three=3, h=self.num_heads)
        q, k = self.q_norm(q), self.k_norm(k)
        options = dict(
            num_shared=num_shared,
            key_mask=key_mask,
            scale=self.scale,
            dropout_p=self.attn_drop if self.training else 0.0,
            backend=self.backend,
        )
        if score_queries is not None:
            out, logits = group_attention_scored(q, k, v, score_queries=score_queries, **options)
        else:
            out, logits = group_attention(q, k, v, **options), None
        out = self.proj_drop(self.proj(self.norm(rearrange(out, "b g h n d -> b g n (h d)"))))
        if ungrouped:
            out = out.squeeze(1)
            if logits is not None:
                logits = AttentionLogits(
                    logits.logits.squeeze(1), logits.lse.squeeze(1), logits.num_shared_keys
                )
        return out, logits

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, num_heads={self.num_heads}, scale={self.scale:.4g}, "
            f"backend={self.backend!r}"
        )

