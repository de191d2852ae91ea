"""A pre-norm transformer block built on :class:`MultiHeadGroupAttention`.

Pose transformers that prune (PPT, GTPT) do so *between* the attention residual and the
feed-forward residual of a block, so the two halves are exposed separately:
:meth:`TransformerBlock.attend` and :meth:`TransformerBlock.feed_forward`.
"""

from __future__ import annotations

from torch import Tensor, nn

from .attention.mhga import MultiHeadGroupAttention
from .checks import (
    check_bool,
    check_float,
    check_floating,
    check_int,
    check_matches_parameters,
    check_number,
)
from .layout import AttentionLogits

__all__ = ["DropPath", "Mlp", "TransformerBlock"]


def _check_tokens(x: object, dim: int, parameter: Tensor) -> Tensor:
    """Require floating-point tokens ``[..., dim]`` with the dtype and device of ``parameter``."""
    x = check_floating("x", x)
    if x.ndim == 0 or x.shape[-1] != dim:
        raise ValueError(f"x must have last dimension {dim}, got shape {tuple(x.shape)}")
    check_matches_parameters("x", x, parameter)
    return x


class Mlp(nn.Module):
    """``Linear -> GELU -> Dropout -> Linear -> Dropout`` on the last axis.

    Args:
        dim: input and output width, at least 1.
        hidden_dim: hidden width, at least 1.
        drop: dropout probability in ``[0, 1]``.

    Raises:
        TypeError: ``dim`` or ``hidden_dim`` is not an int, ``drop`` not a number.
        ValueError: ``dim`` or ``hidden_dim`` is below 1, ``drop`` outside ``[0, 1]``.
    """

    def __init__(self, dim: int, hidden_dim: int, drop: float = 0.0) -> None:
        super().__init__()
        dim = check_int("dim", dim, low=1)
        hidden_dim = check_int("hidden_dim", hidden_dim, low=1)
        drop = check_float("drop", drop, low=0, high=1)
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        """``x [..., dim]`` (the dtype and device of the parameters) -> ``[..., dim]``.

        Raises:
            TypeError: ``x`` is not a floating-point tensor.
            ValueError: ``x`` has another last dimension, dtype or device.
        """
        x = _check_tokens(x, self.fc1.in_features, self.fc1.weight)
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample during training.

    Args:
        drop_prob: probability of dropping a sample's branch, in ``[0, 1)``.

    Raises:
        TypeError: ``drop_prob`` is not a number.
        ValueError: ``drop_prob`` is outside ``[0, 1)``.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = check_float("drop_prob", drop_prob, low=0, high=1, high_open=True)

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, ...]`` with every sample's branch dropped with probability ``drop_prob``
        (training only); floating-point, at least one dimension."""
        x = check_floating("x", x)
        if x.ndim == 0:
            raise ValueError("x must have a batch dimension [B, ...], got a scalar")
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
        norm_eps: LayerNorm epsilon, finite and non-negative.

    Raises:
        TypeError: an argument has the wrong type (``qkv_bias`` not a bool, ...).
        ValueError: ``dim`` or ``num_heads`` is below 1 or ``dim`` not divisible by
            ``num_heads``, ``mlp_ratio`` gives an MLP narrower than 1, a dropout rate is
            outside ``[0, 1)``, ``norm_eps`` is negative or not finite.
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
        dim = check_int("dim", dim, low=1)
        mlp_ratio = check_number("mlp_ratio", mlp_ratio, low=0.0)
        hidden_dim = int(dim * mlp_ratio)
        if hidden_dim < 1:
            raise ValueError(
                f"mlp_ratio must give an MLP at least 1 wide, got int({dim} * {mlp_ratio}) = "
                f"{hidden_dim}"
            )
        check_bool("qkv_bias", qkv_bias)
        check_float("drop", drop, low=0, high=1, high_open=True)
        check_float("drop_path", drop_path, low=0, high=1, high_open=True)
        norm_eps = check_number("norm_eps", norm_eps, low=0.0)
        self.dim = dim
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
        self.mlp = Mlp(dim, hidden_dim, drop=drop)

    def attend(self, x: Tensor, num_shared: int = 0, key_mask: Tensor | None = None) -> Tensor:
        """The attention residual ``x + Attn(LN(x))``; arguments as in
        :meth:`MultiHeadGroupAttention.forward`."""
        x = _check_tokens(x, self.dim, self.norm1.weight)
        return x + self.drop_path(self.attn(self.norm1(x), num_shared, key_mask))

    def attend_scored(
        self, x: Tensor, score_queries: int, num_shared: int = 0, key_mask: Tensor | None = None
    ) -> tuple[Tensor, AttentionLogits]:
        """:meth:`attend`, and the scoring logits of the first ``score_queries`` queries of every
        group (see :meth:`MultiHeadGroupAttention.forward_scored`)."""
        x = _check_tokens(x, self.dim, self.norm1.weight)
        out, logits = self.attn.forward_scored(self.norm1(x), score_queries, num_shared, key_mask)
        return x + self.drop_path(out), logits

    def feed_forward(self, x: Tensor) -> Tensor:
        """The MLP residual ``x + MLP(LN(x))``."""
        x = _check_tokens(x, self.dim, self.norm2.weight)
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def forward(self, x: Tensor, num_shared: int = 0, key_mask: Tensor | None = None) -> Tensor:
        """Both residuals."""
        return self.feed_forward(self.attend(x, num_shared, key_mask))

    def forward_scored(
        self, x: Tensor, score_queries: int, num_shared: int = 0, key_mask: Tensor | None = None
    ) -> tuple[Tensor, AttentionLogits]:
        """Both residuals, and the scoring logits of the attention (:meth:`attend_scored`)."""
        x, logits = self.attend_scored(x, score_queries, num_shared, key_mask)
        return self.feed_forward(x), logits
