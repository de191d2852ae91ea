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

Every op checks its arguments before launching a kernel, also when called directly (the kernels
address memory through the shapes, strides and indices they are given): the checks of the
public functions (:mod:`tokenprune.attention.functional`, same argument names) for types,
dtypes, ranks, shapes, devices and counts raise ``TypeError``/``ValueError``; the range of a
gather ``index`` is a value check (:func:`tokenprune.checks.check_values`: immediate on the
CPU, an asynchronous device assertion on a GPU, skipped while tracing).

The backends (:func:`group_attention_triton`, :func:`gathered_attention_triton`) call these ops
whenever something observes the dispatcher: ``torch.compile``, ``torch.jit.trace`` (fvcore and
:func:`tokenprune.count_flops`), a ``TorchDispatchMode`` such as ``FlopCounterMode`` or
``FakeTensorMode``, functorch transforms, tensor subclasses. A plain eager call skips the
dispatcher's Python round trip, which at GTPT's sizes costs more host time than the kernel takes
on the GPU (``python -m benchmarks.host_cost``): it launches the same kernels through a
``torch.autograd.Function`` with the same backward, and its arguments have already been
checked by the public function.
"""

# No ``from __future__ import annotations``: torch.library reads the annotations at runtime.

import math

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from ..attention.functional import (
    check_gathered_attention_args,
    check_group_attention_args,
    check_scale,
)
from ..attention.layout import group_keys, ungroup_key_grads
from ..checks import check_floating, check_same_device
from ..flops.formulas import register_mac_formula
from ..selection import check_index_range
from .gathered_attention import gathered_attention_backward, gathered_attention_forward
from .group_attention import (
    empty_like_heads_last,
    empty_logits,
    group_attention_backward,
    group_attention_forward,
)

__all__ = ["gathered_attention_triton", "group_attention_triton"]

_DEVICES = ("cpu", "cuda")


def _check_backward_tensors(
    q: Tensor, grad_out: Tensor, out: Tensor, lse: Tensor, grad_lse: Tensor | None = None
) -> None:
    """``grad_out`` and ``out`` shaped like ``q``; ``lse`` (float32) and ``grad_lse`` shaped like
    ``q`` without its last axis; all on ``q``'s device."""
    check_same_device(q=q, grad_out=grad_out, out=out, lse=lse, grad_lse=grad_lse)
    rows = tuple(q.shape[:-1])
    for name, tensor, shape in (
        ("grad_out", grad_out, tuple(q.shape)),
        ("out", out, tuple(q.shape)),
        ("lse", lse, rows),
        ("grad_lse", grad_lse, rows),
    ):
        if tensor is None:
            continue
        check_floating(name, tensor)
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(tensor.shape)}")
    if lse.dtype != torch.float32:
        raise TypeError(f"lse must be float32 (as the forward op returns it), got {lse.dtype}")


def _checking_fake_call() -> bool:
    """Whether a fake (meta) implementation checks its arguments: yes when called eagerly (a
    meta tensor among the arguments dispatches there, and the real implementation never runs),
    not while compiling, where counts may be symbolic; there the public functions have checked
    their arguments while tracing, and the real implementation checks them at run time."""
    return not torch.compiler.is_compiling()


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
    check_group_attention_args(q, k, v, key_mask, num_shared, score_queries)
    check_scale(scale)
    out, lse, logits = group_attention_forward(q, k, v, key_mask, num_shared, scale, score_queries)
    return out, lse, empty_logits(q, num_shared) if logits is None else logits


@_group_attention.register_fake
def _(q, k, v, key_mask, num_shared, scale, score_queries):
    if _checking_fake_call():
        check_group_attention_args(q, k, v, key_mask, num_shared, score_queries)
        check_scale(scale)
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
    check_group_attention_args(q, k, v, key_mask, num_shared, 0)
    check_scale(scale)
    _check_backward_tensors(q, grad_out, out, lse, grad_lse)
    return group_attention_backward(
        grad_out, q, k, v, out, lse, key_mask, num_shared, scale, grad_lse
    )


@_group_attention_backward.register_fake
def _(grad_out, q, k, v, out, lse, key_mask, num_shared, scale, grad_lse):
    if _checking_fake_call():
        check_group_attention_args(q, k, v, key_mask, num_shared, 0)
        check_scale(scale)
        _check_backward_tensors(q, grad_out, out, lse, grad_lse)
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


def dispatcher_observed(*tensors: Tensor | None) -> bool:
    """Whether anything besides the kernels would see a call of the ``tokenprune::*`` ops:
    ``torch.compile`` or ``torch.jit.trace`` tracing, a ``TorchDispatchMode`` or
    ``TorchFunctionMode`` (``FlopCounterMode``, ``FakeTensorMode``), functorch transforms, or a
    tensor subclass among ``tensors``. Then the backends call the ops; otherwise they launch
    the kernels directly (the module docstring says why)."""
    if torch.compiler.is_compiling():  # first: dynamo cannot trace the checks below
        return True
    if (
        torch._C._len_torch_dispatch_stack() > 0
        or torch._C._is_torch_function_mode_enabled()
        or torch._C._are_functorch_transforms_active()
        or torch._C._is_tracing()  # torch.jit.is_tracing() without its scripting check
    ):
        return True
    for t in tensors:  # noqa: SIM110 (a loop is cheaper than any() over a generator)
        if type(t) is not Tensor and t is not None:
            return True
    return False


def _needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


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
    elif _needs_grad(q, k, v):
        out, lse, logits = _EagerGroupAttention.apply(*args)
    else:
        out, lse, logits = group_attention_forward(*args)
    if score_queries == 0:
        return out, None, None
    return out, logits, lse.narrow(3, 0, score_queries)


# ---------------------------------------------------------------------------------------------
# gathered attention


@torch.library.custom_op("tokenprune::gathered_attention", mutates_args=(), device_types=_DEVICES)
def _gathered_attention(
    q: Tensor, k: Tensor, v: Tensor, index: Tensor, key_mask: Tensor | None, scale: float
) -> tuple[Tensor, Tensor]:
    check_gathered_attention_args(q, k, v, index, key_mask)
    check_scale(scale)
    check_index_range("index", index, k.shape[2])
    return gathered_attention_forward(q, k, v, index, key_mask, scale)


@_gathered_attention.register_fake
def _(q, k, v, index, key_mask, scale):
    if _checking_fake_call():
        check_gathered_attention_args(q, k, v, index, key_mask)
        check_scale(scale)
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
    check_gathered_attention_args(q, k, v, index, key_mask)
    check_scale(scale)
    _check_backward_tensors(q, grad_out, out, lse)
    check_index_range("index", index, k.shape[2])
    return gathered_attention_backward(grad_out, q, k, v, index, key_mask, out, lse, scale)


@_gathered_attention_backward.register_fake
def _(grad_out, q, k, v, index, key_mask, out, lse, scale):
    if _checking_fake_call():
        check_gathered_attention_args(q, k, v, index, key_mask)
        check_scale(scale)
        _check_backward_tensors(q, grad_out, out, lse)
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
    arguments have been checked by :func:`tokenprune.gathered_attention`, apart from the range
    of ``index``, which is checked here)."""
    args = (q, k, v, index, key_mask, scale)
    if dispatcher_observed(q, k, v, index, key_mask):
        return torch.ops.tokenprune.gathered_attention(*args)[0]
    check_index_range("index", index, k.shape[2])
    if _needs_grad(q, k, v):
        return _EagerGatheredAttention.apply(*args)[0]
    return gathered_attention_forward(*args)[0]


#: The op checks the range of ``index`` itself, so :func:`tokenprune.gathered_attention` need not.
gathered_attention_triton.checks_index_range = True
