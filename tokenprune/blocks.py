"""A pre-norm transformer block built on :class:`MultiHeadGroupAttention`.

Pose transformers that prune (PPT, GTPT) do so *between* the attention residual and the
feed-forward residual of a block, so the two halves are exposed separately:
:meth:`TransformerBlock.attend` and :meth:`TransformerBlock.feed_forward`.
"""

from __future__ import annotations

from torch import Tensor, nn

from .attention.layout import AttentionLogits
from .attention.mhga import MultiHeadGroupAttention

__all__ = ["DropPath", "Mlp", "TransformerBlock"]


class Mlp(nn.Module):
    """``Linear -> GELU -> Dropout -> Linear -> Dropout`` on the last axis."""

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample during training."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class TransformerBlock(nn.Module):
    """``x + Attn(LN(x))`` then ``x + MLP(LN(x))``, with group attention.

    Args:
        dim: token width.
        num_heads: attention heads.
        mlp_ratio: hidden width of the MLP relative to ``dim``.
        qkv_bias, scale, attn_drop, backend: passed to :class:`MultiHeadGroupAttention`.
        drop: dropout after the attention projection and inside the MLP.
        drop_path: stochastic-depth rate of both residual branches.
        norm_eps: LayerNorm epsilon.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        *,
        qkv_bias: bool = True,
        scale: float | None = None,
        attn_drop: float = 0.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        norm_eps: float = 1e-5,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = MultiHeadGroupAttention(
            dim,
            num_heads,
            qkv_bias=qkv_bias,
            scale=scale,
            attn_drop=attn_drop,
            proj_drop=drop,
            backend=backend,
        )
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def attend(
        self,
        x: Tensor,
        num_shared: int = 0,
        key_mask: Tensor | None = None,
        score_queries: int = 0,
    ) -> Tensor | tuple[Tensor, AttentionLogits]:
        """The attention residual ``x + Attn(LN(x))``; arguments as in
        :meth:`MultiHeadGroupAttention.forward`. Returns ``(x, logits)`` when
        ``score_queries > 0``."""
        result = self.attn(
            self.norm1(x), num_shared=num_shared, key_mask=key_mask, score_queries=score_queries
        )
        if isinstance(result, tuple):
            out, logits = result
            return x + self.drop_path(out), logits
        return x + self.drop_path(result)

    def feed_forward(self, x: Tensor) -> Tensor:
        """The MLP residual ``x + MLP(LN(x))``."""
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def forward(
        self,
        x: Tensor,
        num_shared: int = 0,
        key_mask: Tensor | None = None,
        score_queries: int = 0,
    ) -> Tensor | tuple[Tensor, AttentionLogits]:
        """Both residuals; returns ``(x, logits)`` when ``score_queries > 0``."""
        result = self.attend(x, num_shared, key_mask, score_queries)
        if isinstance(result, tuple):
            x, logits = result
            return self.feed_forward(x), logits
        return self.feed_forward(result)
