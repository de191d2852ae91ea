"""Gathered attention as the ``torch.library`` ops ``tokenprune::gathered_attention`` and
``tokenprune::gathered_attention_backward``, beside their kernels (:mod:`.gathered_attention`).

* ``gathered_attention(q, k, v, index, key_mask, scale) -> (out, lse)``
* ``gathered_attention_backward(grad_out, q, k, v, index, key_mask, out, lse, scale)
  -> (dq, dk, dv)``

Fake, autograd and FLOP formulas as for group attention (:mod:`.group_attention_op`). Besides
the static checks, the range of ``index`` is a value check
(:func:`tokenprune.checks.check_values`: immediate on the CPU, an asynchronous device assertion
on a GPU, skipped while tracing).
"""

# No ``from __future__ import annotations``: torch.library reads the annotations at runtime.



import math

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from ..flops.formulas import register_mac_formula
from ..layout import (
    check_gathered_attention_args,
    check_scale,
)
from ..selection import check_index_range
from .dispatch import (
    DEVICES,
    check_backward_tensors,
    checking_fake_call,
    dispatcher_observed,
    needs_grad,
)
from .gathered_attention import gathered_attention_backward, gathered_attention_forward
from .group_attention import (
    empty_like_heads_last,
)

__all__ = ["gathered_attention_triton"]


@torch.library.custom_op("tokenprune::gathered_attention", mutates_args=(), device_types=DEVICES)
def _gathered_attention(
    q: Tensor, k: Tensor, v: Tensor, index: Tensor, key_mask: Tensor | None, scale: float
) -> tuple[Tensor, Tensor]:
    check_gathered_attention_args(q, k, v, index, key_mask)
    check_scale(scale)
    check_index_range("index", index, k.shape[2])
    return gathered_attention_forward(q, k, v, index, key_mask, scale)


@_gathered_attention.register_fake
def _(q, k, v, index, key_mask, scale):
    if checking_fake_call():
        check_gathered_attention_args(q, k, v, index, key_mask)
        check_scale(scale)
    return empty_like_heads_last(q), q.new_empty(q.shape[:-1], dtype=torch.float32)


@torch.library.custom_op(
    "tokenprune::gathered_attention_backward", mutates_args=(), device_types=DEVICES
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
    check_gathered_attention_args(q, k, v, index, key_mask)
    check_scale(scale)
    check_backward_tensors(q, grad_out, out, lse)
    check_index_range("index", index, k.shape[2])
    return gathered_attention_backward(grad_out, q, k, v, index, key_mask, out, lse, scale)


@_gathered_attention_backward.register_fake
def _(grad_out, q, k, v, index, key_mask, out, lse, scale):
    if checking_fake_call():
        check_gathered_attention_args(q, k, v, index, key_mask)
        check_scale(scale)
        check_backward_tensors(q, grad_out, out, lse)
    return empty_like_heads_last(q), torch.empty_like(k), torch.empty_like(v)


def _gathered_setup_context(ctx, inputs, output):
    q, k, v, index, key_mask, scale = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, index, key_mask, out, lse)
    ctx.scale = scale
    ctx.mark_non_differentiable(lse)


def _gathered_input_grads(ctx, grad_out, backward):
    """``(dq, dk, dv)`` with ``backward`` the backward op or launcher."""
    q, k, v, index, key_mask, out, lse = ctx.saved_tensors
    if grad_out is None:
        grad_out = torch.zeros_like(out)
    return backward(grad_out, q, k, v, index, key_mask, out, lse, ctx.scale)


def _gathered_backward(ctx, grad_out, grad_lse):
    backward = torch.ops.tokenprune.gathered_attention_backward
    return *_gathered_input_grads(ctx, grad_out, backward), None, None, None


torch.library.register_autograd(
    "tokenprune::gathered_attention", _gathered_backward, setup_context=_gathered_setup_context
)


class _EagerGatheredAttention(torch.autograd.Function):
    """``tokenprune::gathered_attention`` without the dispatcher (see the module docstring)."""

    @staticmethod
    def forward(ctx, *inputs):  # takes ctx: see _EagerGroupAttention
        output = gathered_attention_forward(*inputs)
        _gathered_setup_context(ctx, inputs, output)
        ctx.set_materialize_grads(False)
        return output

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, grad_lse):
        grads = _gathered_input_grads(ctx, grad_out, gathered_attention_backward)
        return *grads, None, None, None


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
    """The ``"triton"`` gathered-attention backend (signature of the PyTorch reference; the
    arguments have been checked by :func:`tokenprune.attention.gathered_attention`, apart from
    the range of ``index``, which is checked here)."""
    args = (q, k, v, index, key_mask, scale)
    if dispatcher_observed(q, k, v, index, key_mask):
        return torch.ops.tokenprune.gathered_attention(*args)[0]
    check_index_range("index", index, k.shape[2])
    if needs_grad(q, k, v):
        return _EagerGatheredAttention.apply(*args)[0]
    return gathered_attention_forward(*args)[0]


#: The op checks the range of ``index`` itself, so
#: :func:`tokenprune.attention.gathered_attention` need not.
gathered_attention_triton.checks_index_range = True
