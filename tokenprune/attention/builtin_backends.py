"""The backends that ship with tokenprune: the PyTorch references and the Triton kernels.

The Triton backend is registered lazily: its support check never imports Triton, and
:mod:`tokenprune.kernels` (which does) is imported on first use. ``"auto"`` picks Triton for
float16 and bfloat16 CUDA tensors only (float32 goes to PyTorch, whose SDPA uses TF32 or flash
kernels; the float32 kernels run without tensor cores, see :func:`triton_auto_support`); on the
CPU, ``backend="triton"`` runs Triton's interpreter, which requires ``TRITON_INTERPRET=1`` in
the environment *before* :mod:`tokenprune.kernels` is first imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys

import torch
from torch import Tensor

from .backends import register_backend
from .reference import gathered_attention_torch, group_attention_torch

__all__ = ["triton_auto_support", "triton_interpreter_enabled", "triton_support"]

TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
#: Looked up once: the support check also runs inside ``torch.compile``, which cannot trace it.
TRITON_INSTALLED = importlib.util.find_spec("triton") is not None
TRITON_HEAD_DIMS = (16, 128)


def triton_interpreter_enabled() -> bool:
    """Whether the Triton kernels run (or will run) in Triton's CPU interpreter."""
    kernels = sys.modules.get("tokenprune.kernels")
    if kernels is not None:
        return kernels.INTERPRETED
    return os.environ.get("TRITON_INTERPRET") == "1"


def triton_support(q: Tensor, dropout_p: float = 0.0) -> str | None:
    """None if the Triton kernels can run attention on ``q``, else the reason they cannot."""
    if not TRITON_INSTALLED:
        return "Triton is not installed (pip install 'tokenprune[kernels]')"
    if dropout_p > 0:
        return "attention dropout is not supported by the Triton kernels"
    if q.dtype not in TRITON_DTYPES:
        return f"dtype {q.dtype} is not supported (float16, bfloat16 or float32)"
    head_dim = q.shape[-1]
    low, high = TRITON_HEAD_DIMS
    if not low <= head_dim <= high:
        return f"head_dim {head_dim} is outside [{low}, {high}]"
    if q.device.type == "cuda":
        if triton_interpreter_enabled():
            return "Triton runs in interpreter mode (TRITON_INTERPRET=1), which is CPU-only"
        return None
    if q.device.type == "cpu":
        if not triton_interpreter_enabled():
            return (
                "CPU tensors need Triton's interpreter: set TRITON_INTERPRET=1 before "
                "tokenprune.kernels is imported"
            )
        if q.dtype == torch.bfloat16:
            return "Triton's interpreter computes bfloat16 incorrectly; use float32 or float16"
        return None
    return f"device type {q.device.type!r} is not supported"


def triton_auto_support(q: Tensor, dropout_p: float = 0.0) -> str | None:
    """None if ``"auto"`` may pick the Triton kernels for a call they support, else the reason.

    ``"auto"`` leaves float32 to PyTorch: compiled for a GPU, the float32 kernels use exact
    IEEE dot products without tensor cores and spill registers (kilobytes per thread at
    head_dim 64 and more), where PyTorch's SDPA uses TF32 or flash kernels. ``backend="triton"``
    still runs them.
    """
    if q.dtype == torch.float32:
        return "float32 runs faster in PyTorch (the float32 kernels use no tensor cores)"
    return None


def _load_kernel(name: str):
    def load():
        return getattr(importlib.import_module("tokenprune.kernels"), name)

    return load


for _op, _reference, _kernel in (
    ("group_attention", group_attention_torch, "group_attention_triton"),
    ("gathered_attention", gathered_attention_torch, "gathered_attention_triton"),
):
    register_backend(
        _op, "torch", lambda impl=_reference: impl, lambda q, dropout_p: None, priority=0
    )
    register_backend(
        _op,
        "triton",
        _load_kernel(_kernel),
        triton_support,
        priority=10,
        auto_devices=("cuda",),
        auto_supports=triton_auto_support,
    )
