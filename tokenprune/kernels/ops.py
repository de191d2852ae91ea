"""The Triton kernels as ``torch.library`` custom ops.

Each op has a fake (meta) implementation, so ``torch.compile(fullgraph=True)`` traces through it,
an autograd formula, and a FLOP formula for both :class:`~torch.utils.flop_counter.FlopCounterMode`
and :func:`tokenprune.count_flops`. FLOPs count useful work only: the forward is two matrix
products per (query, key) pair, the backward five (the usual 2.5x convention).

Ops (namespace ``tokenprune``):

* ``group_attention(q, k, v, key_mask, num_shared, scale, score_queries)
  -> (out, lse, logits)``
* ``group_attention_backward(grad_out, q, k, v, out, lse, key_mask, num_shared, scale,
  grad_lse) -> (dq, dk, dv)``
* ``gathered_attention(q, k, v, index, key_mask, scale) -> (out, lse)``
* ``gathered_attention_backward(grad_out, q, k, v, index, key_mask, out, lse, scale)
  -> (dq, dk, dv)``
"""

# No ``from __future__ import annotations``: torch.library reads the annotations at runtime.

import math

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from ..attention.layout import group_keys, ungroup_key_grads
from ..flops.formulas import register_mac_formula
from .gathered_attention import gathered_attention_backward, gathered_attention_forward
from .group_attention import (
    empty_like_heads_last,
    group_attention_backward,
    group_attention_forward,
)

__all__ = ["gathered_attention_triton", "group_attention_triton"]

_DEVICES = ("cpu", "cuda")


# ---------------------------------------------------------------------------------------------
# group attention


@torch.library.custom_op("tokenprune::group_attention", mutates_args=(), device_types=_DEVICES)
def _group_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_mask: Tensor | None,
    num_shared: int,
    scale: float,
    score_queries: int,
) -> tuple[Tensor, Tensor, Tensor]:
    return group_attention_forward(q, k, v, key_mask, num_shared, scale, score_queries)


@_group_attention.register_fake
def _(q, k, v, key_mask, num_shared, scale, score_queries):
    batch, groups, heads, tokens, _ = q.shape
    num_keys = groups * num_shared + tokens - num_shared
    lse = q.new_empty((batch, groups, heads, tokens), dtype=torch.float32)
    logits = q.new_empty((batch, groups, heads, score_queries, num_keys), dtype=torch.float32)
    return empty_like_heads_last(q), lse, logits


@torch.library.custom_op(
    "tokenprune::group_attention_backward", mutates_args=(), device_types=_DEVICES
)
def _group_attention_backward(
    grad_out: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    lse: Tensor,
    key_mask: Tensor | None,
    num_shared: int,
    scale: float,
    grad_lse: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    return group_attention_backward(
        grad_out, q, k, v, out, lse, key_mask, num_shared, scale, grad_lse
    )


@_group_attention_backward.register_fake
def _(grad_out, q, k, v, out, lse, key_mask, num_shared, scale, grad_lse):
    return tuple(empty_like_heads_last(t) for t in (q, k, v))


def _group_setup_context(ctx, inputs, output):
    q, k, v, key_mask, num_shared, scale, _ = inputs
    out, lse, logits = output
    ctx.save_for_backward(q, k, v, key_mask, out, lse, logits)
    ctx.num_shared = num_shared
    ctx.scale = scale


def _group_backward(ctx, grad_out, grad_lse, grad_logits):
    q, k, v, key_mask, out, lse, logits = ctx.saved_tensors
    if grad_out is None:
        grad_out = torch.zeros_like(out)
    dq, dk, dv = torch.ops.tokenprune.group_attention_backward(
        grad_out, q, k, v, out, lse, key_mask, ctx.num_shared, ctx.scale, grad_lse
    )
    if grad_logits is not None and logits.shape[3] > 0:
        dq, dk = _add_scoring_logit_grads(dq, dk, grad_logits, logits, q, k, ctx)
    return dq, dk, dv, None, None, None, None


def _add_scoring_logit_grads(dq, dk, grad_logits, logits, q, k, ctx):
    """Gradients through the returned scoring logits ``L = scale * q_J k^T`` (``J`` rows).

    Only the ``J x Nk`` scoring rows are involved, so this is done in PyTorch; it runs only when
    a loss actually uses the logits.
    """
    scoring = logits.shape[3]
    grad = torch.where(torch.isfinite(logits), grad_logits, 0.0) * ctx.scale
    keys = group_keys(k, ctx.num_shared).float()
    dq = dq.clone()
    dq[:, :, :, :scoring] += (grad @ keys).to(dq.dtype)
    key_grads = grad.transpose(-1, -2) @ q[:, :, :, :scoring].float()
    dk = dk + ungroup_key_grads(key_grads, ctx.num_shared).to(dk.dtype)
    return dq, dk


torch.library.register_autograd(
    "tokenprune::group_attention", _group_backward, setup_context=_group_setup_context
)


def _group_pairs(q_shape, num_shared) -> int:
    """(query, key) pairs of group attention: ``B * G * H * N * (G * S + N - S)``."""
    batch, groups, heads, tokens, _ = q_shape
    return batch * groups * heads * tokens * (groups * num_shared + tokens - num_shared)


@register_flop_formula(torch.ops.tokenprune.group_attention)
def _group_attention_flops(q, k, v, key_mask, num_shared, scale, score_queries, out_shape=None,
                           **kwargs) -> int:  # fmt: skip
    return 2 * 2 * _group_pairs(q, num_shared) * q[-1]


@register_flop_formula(torch.ops.tokenprune.group_attention_backward)
def _group_attention_backward_flops(grad_out, q, k, v, out, lse, key_mask, num_shared, scale,
                                    grad_lse, out_shape=None, **kwargs) -> int:  # fmt: skip
    return 2 * 5 * _group_pairs(q, num_shared) * q[-1]


def _group_attention_macs(inputs, outputs) -> int:
    q, logits = inputs[0], outputs[2]  # logits are [B, G, H, J, Nk], also for J = 0
    return 2 * math.prod(q[:-1]) * logits[-1] * q[-1]


register_mac_formula("tokenprune::group_attention", _group_attention_macs)


def group_attention_triton(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    num_shared: int,
    key_mask: Tensor | None,
    scale: float,
    dropout_p: float,
    score_queries: int,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The ``"triton"`` group-attention backend (signature of the PyTorch reference)."""
    if dropout_p:
        raise ValueError("attention dropout is not supported by the Triton kernels")
    out, lse, logits = torch.ops.tokenprune.group_attention(
        q, k, v, key_mask, num_shared, scale, score_queries
    )
    if score_queries == 0:
        return out, None, None
    return out, logits, lse[:, :, :, :score_queries]


# ---------------------------------------------------------------------------------------------
# gathered attention


@torch.library.custom_op("tokenprune::gathered_attention", mutates_args=(), device_types=_DEVICES)
def _gathered_attention(
    q: Tensor, k: Tensor, v: Tensor, index: Tensor, key_mask: Tensor | None, scale: float
) -> tuple[Tensor, Tensor]:
    return gathered_attention_forward(q, k, v, index, key_mask, scale)


@_gathered_attention.register_fake
def _(q, k, v, index, key_mask, scale):
    return empty_like_heads_last(q), q.new_empty(q.shape[:-1], dtype=torch.float32)


@torch.library.custom_op(
    "tokenprune::gathered_attention_backward", mutates_args=(), device_types=_DEVICES
)
def _gathered_attention_backward(
    grad_out: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    index: Tensor,
    key_mask: Tensor | None,
    out: Tensor,
    lse: Tensor,
    scale: float,
) -> tuple[Tensor, Tensor, Tensor]:
    return gathered_attention_backward(grad_out, q, k, v, index, key_mask, out, lse, scale)


@_gathered_attention_backward.register_fake
def _(grad_out, q, k, v, index, key_mask, out, lse, scale):
    return empty_like_heads_last(q), torch.empty_like(k), torch.empty_like(v)


def _gathered_setup_context(ctx, inputs, output):
    q, k, v, index, key_mask, scale = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, index, key_mask, out, lse)
    ctx.scale = scale
    ctx.mark_non_differentiable(lse)


def _gathered_backward(ctx, grad_out, grad_lse):
    q, k, v, index, key_mask, out, lse = ctx.saved_tensors
    dq, dk, dv = torch.ops.tokenprune.gathered_attention_backward(
        grad_out, q, k, v, index, key_mask, out, lse, ctx.scale
    )
    return dq, dk, dv, None, None, None


torch.library.register_autograd(
    "tokenprune::gathered_attention", _gathered_backward, setup_context=_gathered_setup_context
)


def _gathered_pairs(q_shape, index_shape) -> int:
    return math.prod(q_shape[:-1]) * index_shape[-1]


@register_flop_formula(torch.ops.tokenprune.gathered_attention)
def _gathered_attention_flops(q, k, v, index, key_mask, scale, out_shape=None, **kwargs) -> int:
    return 2 * 2 * _gathered_pairs(q, index) * q[-1]


@register_flop_formula(torch.ops.tokenprune.gathered_attention_backward)
def _gathered_attention_backward_flops(grad_out, q, k, v, index, key_mask, out, lse, scale,
                                       out_shape=None, **kwargs) -> int:  # fmt: skip
    return 2 * 5 * _gathered_pairs(q, index) * q[-1]


register_mac_formula(
    "tokenprune::gathered_attention",
    lambda inputs, outputs: 2 * _gathered_pairs(inputs[0], inputs[3]) * inputs[0][-1],
)


def gathered_attention_triton(
    q: Tensor, k: Tensor, v: Tensor, index: Tensor, key_mask: Tensor | None, scale: float
) -> Tensor:
    """The ``"triton"`` gathered-attention backend (signature of the PyTorch reference)."""
    out, _ = torch.ops.tokenprune.gathered_attention(q, k, v, index, key_mask, scale)
    return out
