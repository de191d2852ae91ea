"""Loading MixSTE / HoT weights: :func:`checkpoint_filter` turns any checkpoint (this project's
or an official release, whose state_dict layout :func:`convert_official_state_dict` maps) into
the model's state_dict."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from torch import Tensor, nn

from ..common.checkpoint import extract_state_dict, source_label, weights_for_model
from ..common.official_blocks import check_names, check_official_layout

__all__ = ["checkpoint_filter", "convert_official_state_dict", "official_name"]

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


_LAYOUT = "the official MixSTE/HoT layout"
_INVERSE_RENAMES = {ours: official for official, ours in _RENAMES.items()}


def official_name(ours: str) -> str:
    """The official name of one of our :class:`~tokenprune_models.hot.MixSTE` entries (inverse of
    :func:`convert_official_state_dict`)."""
    if ours in _INVERSE_RENAMES:
        return _INVERSE_RENAMES[ours]
    for old, new in _PREFIXES.items():
        if ours.startswith(new):
            return old + ours[len(new):]
    match = re.fullmatch(r"(spatial|temporal)_blocks\.(\d+)\.(.+)", ours)
    if match:
        kind = "STE" if match.group(1) == "spatial" else "TTE"
        return f"{kind}blocks.{match.group(2)}.{match.group(3)}"
    return ours


def convert_official_state_dict(
    state_dict: Mapping[str, Tensor],
    *,
    model: nn.Module | None = None,
    source: str | os.PathLike | None = None,
) -> dict[str, Tensor]:
    """Map an official MixSTE / HoT (seq2seq ``hot_mixste``, seq2frame ``tpc_mixste``)
    state_dict onto :class:`tokenprune_models.hot.MixSTE`.

    Args:
        state_dict: the official state_dict; ``module.`` prefixes (DataParallel) are removed.
        model: the model to load the result into: the official entries are first checked
            against it, and every missing, unexpected or mis-shaped one is listed under its
            official name.
        source: the file the state_dict came from, named in errors.

    Returns:
        A state_dict for ``MixSTE.load_state_dict(..., strict=True)`` of the matching config.

    Raises:
        TypeError: not a mapping with string keys.
        ValueError: an entry outside the official layout (the first ten are listed), or, with
            ``model``, entries that do not fit it (listed under the official names).
    """
    where = None if source is None else repr(str(source))
    check_names(state_dict, _LAYOUT, where)
    converted: dict[str, Tensor] = {}
    origin: dict[str, str] = {}  # our name -> the official one
    unknown: list[str] = []
    for name, value in state_dict.items():
        bare = name.removeprefix("module.")
        ours = _rename(bare)
        if ours is None:
            unknown.append(name)
        else:
            converted[ours] = value
            origin[ours] = name
    if model is not None:
        check_official_layout(origin, sorted(unknown), state_dict, model.state_dict(),
                              official_name, _LAYOUT, where)  # fmt: skip
    if unknown:
        prefix = "" if where is None else f"{where}: "
        raise ValueError(f"{prefix}entries not in {_LAYOUT}: {sorted(unknown)[:10]}")
    return converted


def checkpoint_filter(
    checkpoint: object,
    model: nn.Module,
    *,
    official: bool = False,
    source: str | os.PathLike | None = None,
) -> dict[str, Tensor]:
    """MixSTE's and HoT's one way from a checkpoint to the model's state_dict (used by
    :func:`tokenprune_models.create_model` and
    :func:`~tokenprune_models.hot.build.load_official_checkpoint`).

    Args:
        checkpoint: what ``torch.load`` read from the file.
        model: the :class:`~tokenprune_models.hot.model.MixSTE` to load the result into; the
            entries are checked against it.
        official: False: a checkpoint of this project's training engine (the weights its
            evaluation used) or a state_dict, bare or wrapped (e.g. the shipped half-precision
            weights). True: a checkpoint released with the official MixSTE or HoT code
            (``{"model": ...}`` or the bare state_dict), converted
            (:func:`convert_official_state_dict`).
        source: the file the checkpoint was read from, named in errors.

    Returns:
        A state_dict for ``model.load_state_dict(..., strict=True)``.

    Raises:
        ValueError: naming ``source``: no state_dict, or entries that do not fit the model
            (missing, unexpected, mis-shaped; official ones under their official names).
    """
    if not official:
        return weights_for_model(checkpoint, model, source)
    state_dict = extract_state_dict(checkpoint, source_label(source))
    return convert_official_state_dict(state_dict, model=model, source=source)
