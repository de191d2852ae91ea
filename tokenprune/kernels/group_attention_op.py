"""Group attention as the ``torch.library`` ops ``tokenprune::group_attention`` and
``tokenprune::group_attention_backward``, beside their kernels (:mod:`.group_attention`).

* ``group_attention(q, k, v, key_mask, num_shared, scale, score_queries) -> (out, lse, logits)``
* ``group_attention_backward(grad_out, q, k, v, out, lse, key_mask, num_shared, scale,
  grad_lse) -> (dq, dk, dv)``

Each op has a fake (meta) implementation, so ``torch.compile(fullgraph=True)`` traces through
it, an autograd formula, and a FLOP formula for both
:class:`~torch.utils.flop_counter.FlopCounterMode` and :func:`tokenprune.count_flops`. FLOPs
count useful work only: the forward is two matrix products per (query, key) pair, the backward
five (the usual 2.5x convention). Every op checks its arguments before launching a kernel, also
when called directly (the kernels address memory through the shapes and strides they are
given), with the checks of the public functions (:mod:`tokenprune.layout`, same argument
names). When the ops run rather than a direct launch: :mod:`.dispatch`.
"""

# No ``from __future__ import annotations``: torch.library reads the annotations at runtime.



import math

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from ..flops.formulas import register_mac_formula
from ..layout import (
    check_group_attention_args,
    check_scale,
    group_keys,
    ungroup_key_grads,
)
from .dispatch import (
    DEVICES,
    check_backward_tensors,
    checking_fake_call,
    dispatcher_observed,
    needs_grad,
)
from .group_attention import (
    empty_like_heads_last,
    empty_logits,
    group_attention_backward,
    group_attention_forward,
)

__all__ = ["group_attention_triton"]


@torch.library.custom_op("tokenprune::group_attention", mutates_args=(), device_types=DEVICES)
def _group_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_mask: Tensor | None,
    num_shared: int,
    scale: float,
    score_queries: int,
) -> tuple[Tensor, Tensor, Tensor]:
    check_group_attention_args(q, k, v, key_mask, num_shared, score_queries)
    check_scale(scale)
    out, lse, logits = group_attention_forward(q, k, v, key_mask, num_shared, scale, score_queries)
    return out, lse, empty_logits(q, num_shared) if logits is None else logits


@_group_attention.register_fake
def _(q, k, v, key_mask, num_shared, scale, score_queries):
    if checking_fake_call():
        check_group_attention_args(q, k, v, key_mask, num_shared, score_queries)
        check_scale(scale)
    batch, groups, heads, tokens, _ = q.shape
    num_keys = groups * num_shared + tokens - num_shared
    lse = q.new_empty((batch, groups, heads, tokens), dtype=torch.float32)
    logits = q.new_empty((batch, groups, heads, score_queries, num_keys), dtype=torch.float32)
    return empty_like_heads_last(q), lse, logits


@torch.library.custom_op(
    "tokenprune::group_attention_backward", mutates_args=(), device_types=DEVICES
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
    check_group_attention_args(q, k, v, key_mask, num_shared, 0)
    check_scale(scale)
    check_backward_tensors(q, grad_out, out, lse, grad_lse)
    return group_attention_backward(
        grad_out, q, k, v, out, lse, key_mask, num_shared, scale, grad_lse
    )


@_group_attention_backward.register_fake
def _(grad_out, q, k, v, out, lse, key_mask, num_shared, scale, grad_lse):
    if checking_fake_call():
        check_group_attention_args(q, k, v, key_mask, num_shared, 0)
        check_scale(scale)
        check_backward_tensors(q, grad_out, out, lse, grad_lse)
    return tuple(empty_like_heads_last(t) for t in (q, k, v))


def _group_setup_context(ctx, inputs, output):
    q, k, v, key_mask, num_shared, scale, _ = inputs
    out, lse, logits = output
    ctx.save_for_backward(q, k, v, key_mask, out, lse, logits)
    ctx.num_shared = num_shared
    ctx.scale = scale


def _group_input_grads(ctx, grad_out, grad_lse, grad_logits, backward):
    """``(dq, dk, dv)`` from the gradients of ``(out, lse, logits)`` (any may be None), with
    ``backward`` the backward op or launcher (signature of ``group_attention_backward``)."""
    q, k, v, key_mask, out, lse, logits = ctx.saved_tensors
    if grad_out is None:
        grad_out = torch.zeros_like(out)
    dq, dk, dv = backward(
        grad_out, q, k, v, out, lse, key_mask, ctx.num_shared, ctx.scale, grad_lse
    )
    if grad_logits is not None and logits is not None and logits.shape[3] > 0:
        dq, dk = _add_scoring_logit_grads(dq, dk, grad_logits, logits, q, k, ctx)
    return dq, dk, dv


def _group_backward(ctx, grad_out, grad_lse, grad_logits):
    backward = torch.ops.tokenprune.group_attention_backward
    return *_group_input_grads(ctx, grad_out, grad_lse, grad_logits, backward), *(None,) * 4


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


class _EagerGroupAttention(torch.autograd.Function):
    """``tokenprune::group_attention`` without the dispatcher (see the module docstring)."""

    # forward takes ctx: with a separate setup_context, Function.apply binds the arguments
    # through inspect.signature on every call (~20 us, measured by benchmarks.host_cost)
    @staticmethod
    def forward(ctx, *inputs):
        output = group_attention_forward(*inputs)
        _group_setup_context(ctx, inputs, output)
        ctx.set_materialize_grads(False)
        return output

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, grad_lse, grad_logits):
        grads = _group_input_grads(ctx, grad_out, grad_lse, grad_logits, group_attention_backward)
        return *grads, *(None,) * 4


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
    """The ``"triton"`` group-attention backend (signature of the PyTorch reference; the
    arguments have been checked by :func:`tokenprune.group_attention`)."""
    if dropout_p:
        raise ValueError("attention dropout is not supported by the Triton kernels")
    args = (q, k, v, key_mask, num_shared, scale, score_queries)
    if dispatcher_observed(q, k, v, key_mask):
        out, lse, logits = torch.ops.tokenprune.group_attention(*args)
    elif needs_grad(q, k, v):
        out, lse, logits = _EagerGroupAttention.apply(*args)
    else:
        out, lse, logits = group_attention_forward(*args)
    if score_queries == 0:
        return out, None, None
    return out, logits, lse.narrow(3, 0, score_queries)


