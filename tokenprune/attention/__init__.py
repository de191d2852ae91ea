"""Group attention: the functional core, the module, backends and the key layout."""

from .backends import available_backends, register_backend
from .functional import group_attention
from .layout import AttentionLogits, group_key_mask, group_keys, num_group_keys
from .mhga import MultiHeadGroupAttention

__all__ = [
    "AttentionLogits",
    "MultiHeadGroupAttention",
    "available_backends",
    "group_attention",
    "group_key_mask",
    "group_keys",
    "num_group_keys",
    "register_backend",
]
