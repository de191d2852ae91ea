"""Loading HoT / MixSTE weights in the official implementation's state_dict layout."""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

__all__ = ["convert_official_state_dict"]

_RENAMES = {
    "Spatial_patch_to_embedding.weight": "joint_embed.weight",
    "Spatial_patch_to_embedding.bias": "joint_embed.bias",
    "Spatial_pos_embed": "spatial_pos",
    "Temporal_pos_embed": "temporal_pos",
    "pos_embed_token": "slot_pos",
    "x_token": "recovery.queries",
    "head.0.weight": "head_norm.weight",
    "head.0.bias": "head_norm.bias",
    "head.1.weight": "head.weight",
    "head.1.bias": "head.bias",
}
_PREFIXES = {
    "Spatial_norm.": "spatial_norm.",
    "Temporal_norm.": "temporal_norm.",
    "cross_attention.linear_q.": "recovery.q.",
    "cross_attention.linear_k.": "recovery.k.",
    "cross_attention.linear_v.": "recovery.v.",
    "cross_attention.proj.": "recovery.proj.",
}
# the official blocks already use the names of tokenprune.TransformerBlock
_BLOCK = re.compile(
    r"(STE|TTE)blocks\.(\d+)\.((?:norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(?:weight|bias))$"
)


def _rename(name: str) -> str | None:
    if name in _RENAMES:
        return _RENAMES[name]
    for old, new in _PREFIXES.items():
        if name.startswith(old):
            return new + name[len(old):]
    match = _BLOCK.match(name)
    if match:
        kind = "spatial" if match.group(1) == "STE" else "temporal"
        return f"{kind}_blocks.{match.group(2)}.{match.group(3)}"
    return None


def convert_official_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Map an official MixSTE / HoT (seq2seq ``hot_mixste``, seq2frame ``tpc_mixste``)
    state_dict onto :class:`models.hot.MixSTE`.

    Args:
        state_dict: the official state_dict; ``module.`` prefixes (DataParallel) are removed.

    Returns:
        A state_dict for ``MixSTE.load_state_dict(..., strict=True)`` of the matching config.

    Raises:
        TypeError: not a mapping.
        ValueError: an entry outside the official layout (the first ten are listed).
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of names to tensors, got "
                        f"{type(state_dict).__name__}")  # fmt: skip
    converted: dict[str, Tensor] = {}
    unknown: list[str] = []
    for name, value in state_dict.items():
        bare = name.removeprefix("module.")
        ours = _rename(bare)
        if ours is None:
            unknown.append(name)
        else:
            converted[ours] = value
    if unknown:
        raise ValueError(f"entries not in the official MixSTE/HoT layout: {sorted(unknown)[:10]}")
    return converted
