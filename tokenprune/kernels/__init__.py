"""Triton kernels for group attention and gathered attention (forward and backward).

Importing this package imports Triton and registers the ``tokenprune::*`` custom ops. Callers
normally reach the kernels through ``backend="triton"`` (or ``"auto"`` on CUDA tensors) of
:class:`tokenprune.MultiHeadGroupAttention`, :func:`tokenprune.group_attention` and
:func:`tokenprune.attention.gathered_attention`, which import this package lazily.

Without a GPU the kernels run in Triton's interpreter, which must be enabled with
``TRITON_INTERPRET=1`` before this package is first imported.
"""

from .common import INTERPRETED, persistent_grid
from .gathered_attention_op import gathered_attention_triton
from .group_attention_op import group_attention_triton

__all__ = ["INTERPRETED", "gathered_attention_triton", "group_attention_triton", "persistent_grid"]
