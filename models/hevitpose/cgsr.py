"""Cascaded group spatial-reduction multi-head attention (HEViTPose's CGSR-MHA).

The channels of a token map are split into ``G`` groups that attend one after another; each
group's input is its own channels plus the previous group's output (the cascade, as in
EfficientViT's cascaded group attention), its queries come from every token and its keys and
values from a spatially reduced copy of the map (a stride-``R`` convolution, as in PVTv2), so a
map of ``N`` tokens costs ``N * N / R^2`` attention entries per head::

    x'_1 = x_1,   x'_j = x_j + y_{j-1}                                (j = 2..G)
    q = LN(x'_j) W_q,   k, v = LN(SR(x'_j)) W_k, LN(SR(x'_j)) W_v    (h small heads)
    y_j = LN(W_o concat_h softmax(q_h k_h^T / sqrt(d_k)) v_h)
    out = W_proj concat_j y_j

``SR(x) = LN(Conv2d(kernel R, stride R)(x))`` for ``R > 1`` and the identity for ``R = 1``.
With ``norm=False`` every LayerNorm above is left out; with one group and ``R = 1`` the module
is then standard multi-head attention whose output projection is ``W_proj W_o``.

HEViTPose's code is not public; this is the design its figure shows (see the README).
"""

from __future__ import annotations

import math
import operator

import torch
from einops import rearrange
from torch import Tensor, nn

from tokenprune.attention.reference import sdpa
from tokenprune.checks import check_bool, check_floating, check_int, check_matches_parameters

__all__ = ["CGSRAttention", "cgsr_attention_reference"]


class _GroupAttention(nn.Module):
    """One group of :class:`CGSRAttention`: width ``c``, ``heads`` heads."""

    def __init__(self, dim: int, heads: int, key_dim: int, reduction: int, norm: bool) -> None:
        super().__init__()
        self.heads, self.key_dim, self.reduction = heads, key_dim, reduction
        self.value_dim = dim // heads

        def layer_norm() -> nn.Module:
            return nn.LayerNorm(dim) if norm else nn.Identity()

        self.reduce = (
            nn.Conv2d(dim, dim, kernel_size=reduction, stride=reduction)
            if reduction > 1
            else nn.Identity()
        )
        self.reduce_norm = layer_norm() if reduction > 1 else nn.Identity()
        self.q_norm, self.k_norm, self.v_norm = layer_norm(), layer_norm(), layer_norm()
        self.q = nn.Linear(dim, heads * key_dim)
        self.k = nn.Linear(dim, heads * key_dim)
        self.v = nn.Linear(dim, heads * self.value_dim)
        self.out = nn.Linear(heads * self.value_dim, dim)
        self.out_norm = layer_norm()

    def reduced(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        """``[B, N, c] -> [B, N / R^2, c]``: the map the keys and values come from."""
        if self.reduction == 1:
            return x
        height, width = size
        grid = rearrange(x, "b (h w) c -> b c h w", h=height, w=width)
        return self.reduce_norm(rearrange(self.reduce(grid), "b c h w -> b (h w) c"))

    def projections(self, x: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
        """``q [B, h, N, d_k]``, ``k [B, h, M, d_k]``, ``v [B, h, M, d_v]``."""
        source = self.reduced(x, size)
        split = "b n (h d) -> b h n d"
        q = rearrange(self.q(self.q_norm(x)), split, h=self.heads)
        k = rearrange(self.k(self.k_norm(source)), split, h=self.heads)
        v = rearrange(self.v(self.v_norm(source)), split, h=self.heads)
        return q, k, v

    def finish(self, heads_out: Tensor) -> Tensor:
        """``[B, h, N, d_v] -> [B, N, c]``."""
        return self.out_norm(self.out(rearrange(heads_out, "b h n d -> b n (h d)")))

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        q, k, v = self.projections(x, size)
        return self.finish(sdpa(q, k, v))


class CGSRAttention(nn.Module):
    """Cascaded group spatial-reduction multi-head attention over a token map.

    Args:
        dim: token width ``C``; a multiple of ``groups``, and each group's width
            ``C / groups`` a multiple of ``heads_per_group``.
        groups: ``G``, channel groups attending in cascade.
        heads_per_group: small heads inside each group (value width ``C / (G h)``).
        key_dim: query/key width per head (EfficientViT uses 16).
        reduction: ``R``, the spatial reduction of keys and values (1: none). Map sides need
            not be multiples of ``R`` (the convolution drops the remainder).
        norm: the LayerNorms on queries, keys, values, the reduced map and each group's output.

    Shapes: ``forward(x [B, H*W, C], size=(H, W)) -> [B, H*W, C]`` (tokens row-major).

    Raises:
        TypeError: an argument has the wrong type (``norm`` not a bool, ...).
        ValueError: a size is below 1, or ``dim`` does not split into the groups and heads.
    """

    def __init__(
        self,
        dim: int,
        groups: int = 1,
        heads_per_group: int = 1,
        key_dim: int = 16,
        reduction: int = 1,
        norm: bool = True,
    ) -> None:
        super().__init__()
        dim = check_int("dim", dim, low=1)
        groups = check_int("groups", groups, low=1)
        heads_per_group = check_int("heads_per_group", heads_per_group, low=1)
        key_dim = check_int("key_dim", key_dim, low=1)
        reduction = check_int("reduction", reduction, low=1)
        norm = check_bool("norm", norm)
        if dim % groups or (dim // groups) % heads_per_group:
            raise ValueError(
                f"dim ({dim}) must split into groups ({groups}) whose width is a multiple of "
                f"heads_per_group ({heads_per_group})"
            )
        self.dim, self.groups, self.reduction = dim, groups, reduction
        self.group_dim = dim // groups
        self.group_attention = nn.ModuleList(
            _GroupAttention(self.group_dim, heads_per_group, key_dim, reduction, norm)
            for _ in range(groups)
        )
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        """``x [B, H*W, C]`` on an ``H x W`` map ``-> [B, H*W, C]``.

        Raises:
            TypeError: ``x`` is not a floating-point tensor, ``size`` not a pair of ints.
            ValueError: ``size`` has a side below 1 (or below the reduction), ``x`` does not
                match ``size`` and ``dim``, or has another dtype or device than the module's
                parameters.
        """
        x, size = self._check(x, size)
        outputs = []
        for index, (chunk, group) in enumerate(
            zip(x.chunk(self.groups, dim=-1), self.group_attention, strict=True)
        ):
            group_input = chunk if index == 0 else chunk + outputs[-1]
            outputs.append(group(group_input, size))
        return self.proj(torch.cat(outputs, dim=-1))

    def _check(self, x: Tensor, size: tuple[int, int]) -> tuple[Tensor, tuple[int, int]]:
        x = check_floating("x", x, ndim=3)
        try:  # ints, or the 0-d tensors that tracing makes of shapes
            sides = tuple(operator.index(v) for v in size if not isinstance(v, bool))
        except TypeError:
            sides = ()
        if len(sides) != 2:
            raise TypeError(f"size must be an (H, W) pair of positive ints, got {size!r}")
        if min(sides) < 1:
            raise ValueError(f"size must be an (H, W) pair of positive ints, got {size!r}")
        size = sides
        if x.shape[1] != size[0] * size[1] or x.shape[2] != self.dim:
            raise ValueError(
                f"x must be [B, H*W, C] = [B, {size[0] * size[1]}, {self.dim}] for size "
                f"{tuple(size)}, got {tuple(x.shape)}"
            )
        if self.reduction > 1 and min(size) < self.reduction:
            raise ValueError(
                f"size {tuple(size)} is smaller than the reduction {self.reduction} on a side"
            )
        check_matches_parameters("x", x, self.proj.weight)
        return x, size


def cgsr_attention_reference(module: CGSRAttention, x: Tensor, size: tuple[int, int]) -> Tensor:
    """:class:`CGSRAttention` spelled out with an explicit softmax (no fused attention), for
    tests. Same arguments, result and errors as ``module(x, size)``.

    Raises:
        TypeError: ``module`` is not a :class:`CGSRAttention`, or as ``module(x, size)``.
    """
    if not isinstance(module, CGSRAttention):
        raise TypeError(f"module must be a CGSRAttention, got {type(module).__name__}")
    x, size = module._check(x, size)
    outputs = []
    for index, group in enumerate(module.group_attention):
        chunk = x[..., index * module.group_dim : (index + 1) * module.group_dim]
        group_input = chunk if index == 0 else chunk + outputs[-1]
        q, k, v = group.projections(group_input, size)
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(group.key_dim), dim=-1)
        outputs.append(group.finish(weights @ v))
    return module.proj(torch.cat(outputs, dim=-1))
