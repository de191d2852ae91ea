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

_STEM = ("conv1.", "bn1.", "conv2.", "bn2.", "layer1.", "transition1.", "stage2.", "transition2.",
         "stage3.")  # fmt: skip
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


def _strip_wrapper(name: str, hrnet_layout: bool) -> str:
    """The name inside the official S (``features.*``) or B (``pre_feature.*`` HRNet stem,
    ``transformer.*`` TokenPose_TB_base) wrapper, with the B stem mapped to our ``stem.*``."""
    if hrnet_layout:
        if name.startswith("pre_feature."):
            return name[len("pre_feature."):]  # HRNet names: conv1, ..., layer1 like S's stem
        return name.removeprefix("transformer.")
    return name.removeprefix("features.")


def convert_official_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Map an official TokenPose / PPT state_dict onto :class:`models.tokenpose.TokenPose`: the
    S layout (``features.*`` entries, either layer layout) or the B layout (``pre_feature.*``
    HRNet stem, ``transformer.*`` the rest).

    The B layout is inferred from the official model definition (HRNet's own submodule names
    under ``pre_feature``); no released B checkpoint or official output was available to check
    it against.

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
    hrnet_layout = any(name.startswith("pre_feature.") for name in state_dict)
    for name, value in state_dict.items():
        inner = _strip_wrapper(name, hrnet_layout)
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
    table = next((state_dict[k] for k in ("features.pos_embedding", "transformer.pos_embedding",
                                          "pos_embedding") if k in state_dict), None)  # fmt: skip
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
