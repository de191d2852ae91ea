"""Loading TokenPose / PPT weights: :func:`checkpoint_filter` turns any checkpoint (this
project's or an official release, whose state_dict layout :func:`convert_official_state_dict`
maps) into the model's state_dict."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ..common.checkpoint import (
    extract_state_dict,
    read_weights_only,
    source_label,
    weights_for_model,
)
from ..common.official_blocks import (
    check_names,
    check_official_layout,
    is_ppt_layout,
    official_layer_entry,
    rename_layer_entry,
)
from .model import TokenPose

__all__ = [
    "checkpoint_filter", "convert_official_state_dict", "load_official_checkpoint", "official_name",
]  # fmt: skip

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


_LAYOUT = "the official TokenPose/PPT layout"
_INVERSE_RENAMES = {ours: official for official, ours in _RENAMES.items()}


def official_name(ours: str, hrnet_layout: bool = False, ppt: bool = False) -> str:
    """The official name of one of our :class:`TokenPose` entries (inverse of
    :func:`convert_official_state_dict`) in the S layout (``features.*``) or the B layout
    (``hrnet_layout``), with PPT's attention wrapper or TokenPose's (``ppt``)."""
    wrapper = "transformer." if hrnet_layout else "features."
    if ours.startswith("stem."):
        return ("pre_feature." if hrnet_layout else wrapper) + ours[len("stem."):]
    if ours in _INVERSE_RENAMES:
        return wrapper + _INVERSE_RENAMES[ours]
    match = re.fullmatch(r"blocks\.(\d+)\.(.+)", ours)
    if match:
        return (f"{wrapper}transformer.layers.{match.group(1)}."
                + official_layer_entry(match.group(2), ppt))  # fmt: skip
    for old, new in _PREFIX_RENAMES.items():
        if ours.startswith(new):
            return wrapper + old + ours[len(new):]
    return wrapper + ours


def convert_official_state_dict(
    state_dict: Mapping[str, Tensor],
    *,
    model: nn.Module | None = None,
    source: str | os.PathLike | None = None,
) -> dict[str, Tensor]:
    """Map an official TokenPose / PPT state_dict onto
    :class:`tokenprune_models.tokenpose.TokenPose`: the S layout (``features.*`` entries, either
    layer layout) or the B layout (``pre_feature.*`` HRNet stem, ``transformer.*`` the rest).

    The B layout is inferred from the official model definition (HRNet's own submodule names
    under ``pre_feature``); no released B checkpoint or official output was available to check
    it against.

    Args:
        state_dict: the official state_dict (``module.`` prefixes already stripped).
        model: the model to load the result into: the official entries are first checked
            against it, and every missing, unexpected or mis-shaped one is listed under its
            official name.
        source: the file the state_dict came from, named in errors.

    Returns:
        A state_dict for ``load_state_dict(..., strict=True)``; the fixed sine table
        (``pos_embedding``) is dropped since the model builds it.

    Raises:
        TypeError: ``state_dict`` is not a mapping with string keys.
        ValueError: entries this converter does not know (listed), none at all, or, with
            ``model``, entries that do not fit it (listed under the official names).
    """
    where = None if source is None else repr(str(source))
    check_names(state_dict, _LAYOUT, where)
    converted: dict[str, Tensor] = {}
    origin: dict[str, str] = {}  # our name -> the official one
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
            origin[ours] = name
    prefix = "" if where is None else f"{where}: "
    if model is not None:
        ppt = is_ppt_layout(list(state_dict))
        check_official_layout(origin, sorted(unknown), state_dict, model.state_dict(),
                              lambda ours: official_name(ours, hrnet_layout, ppt), _LAYOUT,
                              where)  # fmt: skip
    if unknown:
        raise ValueError(f"{prefix}entries not in {_LAYOUT}: {sorted(unknown)[:10]}")
    if not converted:
        raise ValueError(f"{prefix}state_dict has no entries")
    return converted


def check_positional_table(
    state_dict: Mapping[str, Tensor], model: TokenPose, source: str | os.PathLike | None = None
) -> None:
    """Raise if the checkpoint's positional table is not the model's sine table (a learnable
    table, or another input size); ``source`` (the file) is named in the error."""
    table = next((state_dict[k] for k in ("features.pos_embedding", "transformer.pos_embedding",
                                          "pos_embedding") if k in state_dict), None)  # fmt: skip
    expected = model.pos_embedding
    if table is not None and not (
        table.shape == expected.shape and torch.allclose(table, expected, atol=1e-5)
    ):
        prefix = "" if source is None else f"{str(source)!r}: "
        raise ValueError(
            f"{prefix}the checkpoint's positional table (shape {tuple(table.shape)}) is not the "
            f"2D sine table of a {model.image_size[0]}x{model.image_size[1]} TokenPose"
        )


def load_official_checkpoint(path: str | os.PathLike, model: TokenPose) -> TokenPose:
    """Load an official TokenPose/PPT checkpoint file into ``model`` (eval mode), reading it
    with ``torch.load(weights_only=True)``. Its entries are checked against ``model`` before
    anything is loaded.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file: not a weights-only state_dict, another positional table,
            or entries that do not fit ``model`` (the missing, unexpected and mis-shaped ones
            listed under their official names).
    """
    model.load_state_dict(checkpoint_filter(read_weights_only(path), model, official=True,
                                            source=path))  # fmt: skip
    return model.eval()


def checkpoint_filter(
    checkpoint: object,
    model: TokenPose,
    *,
    official: bool = False,
    source: str | os.PathLike | None = None,
) -> dict[str, Tensor]:
    """TokenPose's and PPT's (and DPPT's) one way from a checkpoint to the model's state_dict
    (used by :func:`tokenprune_models.create_model`, :func:`load_official_checkpoint` and DPPT's
    teacher).

    Args:
        checkpoint: what ``torch.load`` read from the file.
        model: the TokenPose to load the result into; the entries are checked against it.
        official: False: a checkpoint of this project's training engine (the weights its
            evaluation used) or a state_dict, bare or wrapped. True: a checkpoint released with
            the official TokenPose or PPT code, converted (:func:`convert_official_state_dict`)
            once its positional table is found to be the model's sine table.
        source: the file the checkpoint was read from, named in errors.

    Returns:
        A state_dict for ``model.load_state_dict(..., strict=True)``.

    Raises:
        ValueError: naming ``source``: no state_dict, another positional table, or entries
            that do not fit the model (missing, unexpected, mis-shaped; official ones under
            their official names).
    """
    if not official:
        return weights_for_model(checkpoint, model, source)
    state_dict = extract_state_dict(checkpoint, source_label(source))
    check_positional_table(state_dict, model, source)
    return convert_official_state_dict(state_dict, model=model, source=source)
