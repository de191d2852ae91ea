"""Group attention: the functional core, the module, backends and the key layout."""

from . import builtin_backends  # noqa: F401  (registers the torch and triton backends)
from .backends import available_backends, register_backend
from .functional import gathered_attention, group_attention, group_attention_scored
from .layout import AttentionLogits, group_key_mask, group_keys, num_group_keys
from .mhga import MultiHeadGroupAttention

__all__ = [
    "AttentionLogits",
    "MultiHeadGroupAttention",
    "available_backends",
    "gathered_attention",
    "group_attention",
    "group_attention_scored",
    "group_key_mask",
    "group_keys",
    "num_group_keys",
    "register_backend",
]
