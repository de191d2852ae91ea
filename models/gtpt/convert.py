"""Loading GTPT weights in the official implementation's state_dict layout."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch
from torch import Tensor

from models.common.checkpoint import load_state_dict_file
from models.common.official_blocks import rename_layer_entry

__all__ = ["convert_official_state_dict", "load_official_checkpoint"]

_RENAMES = {
    "human_token": "human_token",
    "keypoint_token": "keypoint_tokens",
    "extra_token": "part_tokens",
    "fine_keypoint_token": "dense_tokens",
    "transformer.group_mask.0.weight": "channel_gate.fc1.weight",
    "transformer.group_mask.0.bias": "channel_gate.fc1.bias",
    "transformer.group_mask.2.weight": "channel_gate.fc2.weight",
    "transformer.group_mask.2.bias": "channel_gate.fc2.bias",
}
_PREFIX_RENAMES = {
    "patch2emb_norm.": "patch_norm.",
    "patch2emb_mlp.": "patch_embed.",
    "stem.": "stem.",
}
_COARSE_LAYERS = 6


def _rename_features(name: str) -> str | None:
    """Our name for an official ``features.*`` entry; None for entries we do not keep."""
    if name == "pos_embedding":
        return None  # the fixed sine table: the model builds it (see official_positional_table)
    if name in _RENAMES:
        return _RENAMES[name]
    for old, new in _PREFIX_RENAMES.items():
        if name.startswith(old):
            return new + name[len(old):]
    match = re.match(r"transformer\.(layers|group_layers)\.(\d+)\.(.*)$", name)
    if match:
        kind, index, rest = match.group(1), int(match.group(2)), match.group(3)
        if rest == "0.fn.fn.mask":
            return None  # the attention mask buffer: our model takes a key mask instead
        block = index + (_COARSE_LAYERS if kind == "group_layers" else 0)
        return f"blocks.{block}." + rename_layer_entry(rest)
    raise KeyError(name)


def convert_official_state_dict(
    state_dict: Mapping[str, Tensor], branch: str = "ema"
) -> dict[str, Tensor]:
    """Map an official GTPT state_dict onto :class:`models.gtpt.GTPT`.

    The official module holds two copies of every weight: the trained one (``features``,
    ``mlp_head_x/y``) and its exponential moving average (``ema_features``, ``ema_mlp_head_x/y``).
    The official evaluation runs only the EMA copy, which is the default here.

    Args:
        state_dict: the official state_dict (``module.`` prefixes already stripped).
        branch: ``"ema"`` (evaluation weights) or ``"raw"`` (the trained copy).

    Returns:
        A state_dict for ``GTPT.load_state_dict(..., strict=True)``. The official fixed sine
        table (``pos_embedding``) and the attention-mask buffers are dropped: the model builds
        both itself.

    Raises:
        ValueError: unknown branch, no entry of that branch, or an entry this converter does
            not know (listed).
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"state_dict must be a mapping of names to tensors, got {type(state_dict).__name__} "
            "(load a file with load_official_checkpoint)"
        )
    if branch not in ("ema", "raw"):
        raise ValueError(f"branch must be 'ema' or 'raw', got {branch!r}")
    if branch == "ema":
        features, head = "ema_features.", "ema_mlp_head_"
    else:
        features, head = "features.", "mlp_head_"
    converted: dict[str, Tensor] = {}
    unknown: list[str] = []
    for name, value in state_dict.items():
        if name.startswith(features):
            try:
                ours = _rename_features(name[len(features):])
            except KeyError:
                unknown.append(name)
                continue
            if ours is not None:
                converted[ours] = value
        elif name.startswith(head):
            axis, rest = name[len(head)], name[len(head) + 2:]  # "x.0.weight" -> ("x", "0.weight")
            converted[f"head.{axis}.{rest}"] = value
        elif name.startswith(("features.", "mlp_head_", "ema_features.", "ema_mlp_head_")):
            continue  # the other branch
        else:
            unknown.append(name)
    if unknown:
        raise ValueError(f"entries not in the official GTPT layout: {sorted(unknown)[:10]}")
    if not converted:
        raise ValueError(f"no entries of the {branch!r} branch (expected names like {features}...)")
    return converted


def official_positional_table(
    state_dict: Mapping[str, Tensor], branch: str = "ema"
) -> Tensor | None:
    """The official checkpoint's fixed sine table, if it holds one (to check a model against)."""
    key = ("ema_features." if branch == "ema" else "features.") + "pos_embedding"
    return state_dict.get(key)


def load_official_checkpoint(
    path: str | os.PathLike, variant: str, dataset: str = "coco", branch: str = "ema"
):
    """Build GTPT and load a released checkpoint file into it (eval mode).

    The file is read with ``torch.load(weights_only=True)``; a dict wrapping the state_dict
    (``state_dict``/``model`` keys, ``module.`` prefixes) is unwrapped.
    """
    from .build import build_gtpt

    state_dict = load_state_dict_file(path)
    model = build_gtpt(variant, dataset)
    converted = convert_official_state_dict(state_dict, branch)
    table = official_positional_table(state_dict, branch)
    if table is not None and not (
        table.shape == model.pos_embedding.shape
        and torch.allclose(table, model.pos_embedding, atol=1e-5)
    ):
        raise ValueError(
            f"the checkpoint's positional table (shape {tuple(table.shape)}) differs from "
            f"GTPT-{variant.upper()}'s sine table: is it a checkpoint of this variant?"
        )
    model.load_state_dict(converted, strict=True)
    return model.eval()
