"""Group attention: the functional core, the module and the backends (the key layout is
:mod:`tokenprune.layout`)."""

from ..layout import AttentionLogits
from . import builtin_backends  # noqa: F401  (registers the torch and triton backends)
from .backends import available_backends, register_backend
from .functional import gathered_attention, group_attention, group_attention_scored
from .mhga import MultiHeadGroupAttention

__all__ = [
    "AttentionLogits",
    "MultiHeadGroupAttention",
    "available_backends",
    "gathered_attention",
    "group_attention",
    "group_attention_scored",
    "register_backend",
]
