"""Loading weights in the official TokenPose / PPT state_dict layout."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch
from torch import Tensor

from models.common.checkpoint import load_state_dict_file
from models.common.official_blocks import rename_layer_entry

from .model import TokenPose

__all__ = ["convert_official_state_dict", "load_official_checkpoint"]

_STEM = ("conv1.", "bn1.", "conv2.", "bn2.", "layer1.")
_RENAMES = {"keypoint_token": "keypoint_tokens"}
_PREFIX_RENAMES = {"patch_to_embedding.": "patch_embed.", "mlp_head.": "head."}


def _rename(name: str) -> str | None:
    if name == "pos_embedding":
        return None  # the fixed sine table: the model builds it
    if name in _RENAMES:
        return _RENAMES[name]
    if name.startswith(_STEM):
        return "stem." + name
    for old, new in _PREFIX_RENAMES.items():
        if name.startswith(old):
            return new + name[len(old):]
    match = re.match(r"transformer\.layers\.(\d+)\.(.*)$", name)
    if match:
        return f"blocks.{match.group(1)}." + rename_layer_entry(match.group(2))
    raise KeyError(name)


def convert_official_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Map an official TokenPose-S / PPT-S state_dict (``features.*`` entries, either layer
    layout) onto :class:`models.tokenpose.TokenPose`.

    Returns:
        A state_dict for ``load_state_dict(..., strict=True)``; the fixed sine table
        (``pos_embedding``) is dropped since the model builds it.

    Raises:
        TypeError: ``state_dict`` is not a mapping.
        ValueError: entries this converter does not know (listed), or none at all.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"state_dict must be a mapping of names to tensors, got {type(state_dict).__name__} "
            "(load a file with load_official_checkpoint)"
        )
    converted: dict[str, Tensor] = {}
    unknown: list[str] = []
    for name, value in state_dict.items():
        inner = name[len("features."):] if name.startswith("features.") else name
        try:
            ours = _rename(inner)
        except KeyError:
            unknown.append(name)
            continue
        if ours is not None:
            converted[ours] = value
    if unknown:
        layout = "the official TokenPose/PPT layout"
        raise ValueError(f"entries not in {layout}: {sorted(unknown)[:10]}")
    if not converted:
        raise ValueError("state_dict has no entries")
    return converted


def check_positional_table(state_dict: Mapping[str, Tensor], model: TokenPose) -> None:
    """Raise if the checkpoint's positional table is not the model's sine table (a learnable
    table, or another input size)."""
    table = state_dict.get("features.pos_embedding", state_dict.get("pos_embedding"))
    expected = model.pos_embedding
    if table is not None and not (
        table.shape == expected.shape and torch.allclose(table, expected, atol=1e-5)
    ):
        raise ValueError(
            f"the checkpoint's positional table (shape {tuple(table.shape)}) is not the 2D sine "
            f"table of a {model.image_size[0]}x{model.image_size[1]} TokenPose"
        )


def load_official_checkpoint(path: str | os.PathLike, model: TokenPose) -> TokenPose:
    """Load an official TokenPose/PPT checkpoint file into ``model`` (eval mode), reading it
    with ``torch.load(weights_only=True)``."""
    state_dict = load_state_dict_file(path)
    check_positional_table(state_dict, model)
    model.load_state_dict(convert_official_state_dict(state_dict), strict=True)
    return model.eval()
