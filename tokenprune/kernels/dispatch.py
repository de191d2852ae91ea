"""What the ``tokenprune::*`` custom ops share: their device types, the checks of backward
tensors and fake calls, and the choice between the ops and a direct launch.

The backends (:func:`~tokenprune.kernels.group_attention_op.group_attention_triton`,
:func:`~tokenprune.kernels.gathered_attention_op.gathered_attention_triton`) call the ops
whenever something observes the dispatcher (:func:`dispatcher_observed`): ``torch.compile``,
``torch.jit.trace`` (fvcore and :func:`tokenprune.count_flops`), a ``TorchDispatchMode`` such as
``FlopCounterMode`` or ``FakeTensorMode``, functorch transforms, tensor subclasses. A plain eager
call skips the dispatcher's Python round trip, which at GTPT's sizes costs more host time than
the kernel takes on the GPU (``python -m benchmarks.host_cost``): it launches the same kernels
through a ``torch.autograd.Function`` with the same backward, and its arguments have already
been checked by the public function.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..checks import check_floating, check_same_device

__all__ = [
    "DEVICES",
    "check_backward_tensors",
    "checking_fake_call",
    "dispatcher_observed",
    "needs_grad",
]

DEVICES = ("cpu", "cuda")


def check_backward_tensors(
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


def checking_fake_call() -> bool:
    """Whether a fake (meta) implementation checks its arguments: yes when called eagerly (a
    meta tensor among the arguments dispatches there, and the real implementation never runs),
    not while compiling, where counts may be symbolic; there the public functions have checked
    their arguments while tracing, and the real implementation checks them at run time."""
    return not torch.compiler.is_compiling()


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


def needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
