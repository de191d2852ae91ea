"""The key layout of group attention and the container for scoring logits.

Group attention works on ``G`` groups of ``N`` token slots. The first ``S`` slots of every group
are *shared*: their keys and values are visible to the queries of every group. The remaining
``N - S`` slots are *private* to their group. The keys seen by group ``g`` are therefore laid out
as::

    [shared(group 0), shared(group 1), ..., shared(group G-1), private(group g)]

which is ``G * S + (N - S)`` keys. This module builds that layout for tensors and masks,
defines :class:`AttentionLogits`, the pre-softmax logits of the scoring queries in that layout,
and checks the arguments of the attention functions.

It is a leaf of the package (it imports only :mod:`tokenprune.checks`): the attention
functions (:mod:`tokenprune.attention`) and the Triton ops (:mod:`tokenprune.kernels`) both
import it, and neither imports the other at module level.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from einops import rearrange
from torch import Tensor

from .checks import (
    check_bool_mask,
    check_floating,
    check_index,
    check_int,
    check_same_device,
    check_same_dtype,
    static_shape,
)

__all__ = [
    "AttentionLogits",
    "check_gathered_attention_args",
    "check_group_attention_args",
    "check_scale",
    "group_key_mask",
    "group_keys",
    "num_group_keys",
    "resolve_scale",
    "ungroup_key_grads",
]


def num_group_keys(num_groups: int, num_tokens: int, num_shared: int) -> int:
    """Number of keys each group attends to: ``G * S + (N - S)``."""
    return num_groups * num_shared + num_tokens - num_shared


def group_keys(tokens: Tensor, num_shared: int) -> Tensor:
    """Arrange per-group keys (or values) in the group-attention key layout.

    Args:
        tokens: ``[B, G, H, N, D]`` keys or values of every group.
        num_shared: ``S``, the number of leading shared slots in every group.

    Returns:
        ``[B, G, H, G*S + N - S, D]``. With ``G == 1`` or ``S == 0`` the layout equals the
        input and ``tokens`` itself is returned (no copy).
    """
    num_groups = tokens.shape[1]
    if num_groups == 1 or num_shared == 0:
        return tokens
    shared = rearrange(tokens[:, :, :, :num_shared], "b g h s d -> b h (g s) d")
    shared = shared.unsqueeze(1).expand(-1, num_groups, -1, -1, -1)
    return torch.cat([shared, tokens[:, :, :, num_shared:]], dim=3)


def ungroup_key_grads(grads: Tensor, num_shared: int) -> Tensor:
    """The adjoint of :func:`group_keys`: fold gradients in key layout back onto token slots.

    A shared slot appears in the key layout of every group, so its gradient is the sum over
    groups; a private slot appears once.

    Args:
        grads: ``[B, G, H, G*S + N - S, D]`` gradients with respect to the grouped keys.
        num_shared: ``S``.

    Returns:
        ``[B, G, H, N, D]``.
    """
    num_groups = grads.shape[1]
    if num_groups == 1 or num_shared == 0:
        return grads
    shared_keys = num_groups * num_shared
    shared = grads[:, :, :, :shared_keys].sum(dim=1)  # [B, H, G*S, D]
    shared = rearrange(shared, "b h (g s) d -> b g h s d", g=num_groups)
    return torch.cat([shared, grads[:, :, :, shared_keys:]], dim=3)


def group_key_mask(key_mask: Tensor, num_shared: int) -> Tensor:
    """Arrange a per-slot validity mask in the group-attention key layout.

    Args:
        key_mask: ``[B, G, N]`` bool, True for real tokens.
        num_shared: ``S``.

    Returns:
        ``[B, G, G*S + N - S]`` bool: which keys of each group are real.
    """
    num_groups = key_mask.shape[1]
    if num_groups == 1 or num_shared == 0:
        return key_mask
    shared = rearrange(key_mask[:, :, :num_shared], "b g s -> b (g s)")
    shared = shared.unsqueeze(1).expand(-1, num_groups, -1)
    return torch.cat([shared, key_mask[:, :, num_shared:]], dim=2)


class AttentionLogits(NamedTuple):
    """Pre-softmax attention logits of the scoring queries, and their log-sum-exp.

    For each group, the scoring queries are its first ``J`` tokens; their logits are taken
    against all of the group's keys, in the layout described in this module's docstring. Only
    these ``J`` rows are ever materialised, never the full ``N x N`` matrix.

    Attributes:
        logits: ``[B, G, H, J, G*S + N - S]`` scaled logits ``q k^T * scale``; keys masked out
            by ``key_mask`` are ``-inf``. Stored in at least float32 (float64 for float64 input).
            For ``[B, N, D]`` attention input the group axis is absent: ``[B, H, J, N]``.
        lse: ``[B, G, H, J]`` (or ``[B, H, J]``) log-sum-exp of each row over its real keys;
            ``-inf`` for a row with no real key.
        num_shared_keys: ``G * S``, the number of leading shared key columns.
    """

    logits: Tensor
    lse: Tensor
    num_shared_keys: int

    def probs(self) -> Tensor:
        """Post-softmax probabilities of the scoring rows, ``exp(logits - lse)``.

        Rows without any real key (``lse == -inf``) are all zero, as their attention output is,
        and pass no gradient back (``exp(-inf - -inf)`` would be NaN, in the backward too). NaN
        in the logits or the lse stays NaN.
        """
        lse = self.lse.unsqueeze(-1)
        empty = lse == float("-inf")
        probs = torch.exp(self.logits - lse.masked_fill(empty, 0.0))
        return probs.masked_fill(empty, 0.0)

    def private_logits(self) -> Tensor:
        """Logits against each group's private tokens: ``[..., H, J, N - S]``."""
        return self.logits[..., self.num_shared_keys :]

    def private_probs(self) -> Tensor:
        """Probabilities (normalised over *all* keys) of each group's private tokens."""
        return self.probs()[..., self.num_shared_keys :]


# ---------------------------------------------------------------------------------------------
# Argument checks of the layout, shared by the functional API (tokenprune.attention) and the
# ``tokenprune::*`` custom ops (tokenprune.kernels), which run them too when called directly;
# the argument names are the ops' as well.


def check_group_attention_args(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_mask: Tensor | None,
    num_shared: int,
    score_queries: int,
) -> tuple[int, int, tuple[int, ...]]:
    """Check the tensors and counts of group attention; returns ``(num_shared, score_queries,
    q's shape as Python ints)``.

    Static checks only (types, dtypes, ranks, shapes, devices, int ranges): cheap, and valid
    while tracing.
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
    shape = static_shape(q)
    batch, groups, _, tokens, _ = shape
    num_shared = check_int("num_shared", num_shared, low=0, high=tokens)
    score_queries = check_int("score_queries", score_queries, low=0, high=tokens)
    if key_mask is not None:
        check_bool_mask("key_mask", key_mask, (batch, groups, tokens))
    return num_shared, score_queries, shape


def check_gathered_attention_args(
    q: Tensor, k: Tensor, v: Tensor, index: Tensor, key_mask: Tensor | None
) -> None:
    """Check the tensors of gathered attention (static checks only, as
    :func:`check_group_attention_args`; the range of ``index`` is a value check, see
    :func:`tokenprune.selection.check_index_range`)."""
    q = check_floating("q", q, ndim=5)
    k = check_floating("k", k, ndim=4)
    v = check_floating("v", v, ndim=4)
    index = check_index("index", index)
    check_same_dtype(q=q, k=k, v=v)
    check_same_device(q=q, k=k, v=v, index=index, key_mask=key_mask)
    batch, groups, heads, _, head_dim = static_shape(q)
    if k.shape != v.shape or tuple(k.shape[:2]) != (batch, heads) or k.shape[-1] != head_dim:
        raise ValueError(
            f"k and v must have shape [B={batch}, H={heads}, T, D={head_dim}], got "
            f"{tuple(k.shape)} and {tuple(v.shape)}"
        )
    if index.ndim != 3 or tuple(index.shape[:2]) != (batch, groups):
        raise ValueError(
            f"index must have shape [B={batch}, G={groups}, Nk], got {tuple(index.shape)}"
        )
    if key_mask is not None:
        check_bool_mask("key_mask", key_mask, tuple(index.shape))


def check_scale(scale: float) -> float:
    """Require a positive finite logit scale."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a float or None, got {type(scale).__name__}")
    # comparisons rather than math.isfinite: under torch.compile(dynamic=True) the scale of a
    # module may arrive as a symbolic float
    if not 0.0 < scale < math.inf:
        raise ValueError(f"scale must be a positive finite float, got {scale}")
    return scale


def resolve_scale(scale: float | None, head_dim: int) -> float:
    """The logit scale: ``head_dim ** -0.5`` when ``scale`` is None, else the checked scale."""
    return head_dim**-0.5 if scale is None else check_scale(scale)
