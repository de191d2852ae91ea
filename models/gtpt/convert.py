"""Loading GTPT weights: :func:`checkpoint_filter` turns any checkpoint (this project's or an
official release, whose state_dict layout :func:`convert_official_state_dict` maps) into the
model's state_dict."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ..common.checkpoint import (
    checkpoint_weights,
    extract_state_dict,
    read_weights_only,
    source_label,
    weights_for_model,
)
from ..common.official_blocks import (
    check_names,
    check_official_layout,
    official_layer_entry,
    rename_layer_entry,
)
from ..common.simcc import resize_simcc_bins
from .build import build_gtpt
from .config import GTPTConfig
from .model import COARSE_LAYERS, GTPT

__all__ = [
    "checkpoint_filter", "convert_official_state_dict", "fit_simcc_bins",
    "load_official_checkpoint", "official_name",
]  # fmt: skip

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
        block = index + (COARSE_LAYERS if kind == "group_layers" else 0)
        return f"blocks.{block}." + rename_layer_entry(rest)
    raise KeyError(name)


_BRANCHES = {"ema": ("ema_features.", "ema_mlp_head_"), "raw": ("features.", "mlp_head_")}
_LAYOUT = "the official GTPT layout"


def _rename(name: str, features: str, head: str) -> str | None:
    """Our name for an entry of one branch; None for entries we do not keep.

    Raises:
        KeyError: not an entry of that branch in the official layout.
    """
    if name.startswith(features):
        return _rename_features(name[len(features):])
    match = re.fullmatch(re.escape(head) + r"([xy])\.(.+)", name)  # the x and y classifiers
    if match is None:
        raise KeyError(name)
    return f"head.{match.group(1)}.{match.group(2)}"


_INVERSE_RENAMES = {ours: official for official, ours in _RENAMES.items()}


def official_name(ours: str, branch: str = "ema") -> str:
    """The official name of one of our :class:`~tokenprune_models.gtpt.GTPT` entries (inverse of
    :func:`convert_official_state_dict`)."""
    features, head = _BRANCHES[branch]
    if ours in _INVERSE_RENAMES:
        return features + _INVERSE_RENAMES[ours]
    match = re.fullmatch(r"head\.([xy])\.(.+)", ours)
    if match:
        return f"{head}{match.group(1)}.{match.group(2)}"
    match = re.fullmatch(r"blocks\.(\d+)\.(.+)", ours)
    if match:
        block = int(match.group(1))
        kind, index = (("layers", block) if block < COARSE_LAYERS
                       else ("group_layers", block - COARSE_LAYERS))  # fmt: skip
        return f"{features}transformer.{kind}.{index}." + official_layer_entry(match.group(2))
    for old, new in _PREFIX_RENAMES.items():
        if ours.startswith(new):
            return features + old + ours[len(new):]
    return features + ours


def convert_official_state_dict(
    state_dict: Mapping[str, Tensor],
    branch: str = "ema",
    *,
    model: nn.Module | None = None,
    source: str | os.PathLike | None = None,
) -> dict[str, Tensor]:
    """Map an official GTPT state_dict onto :class:`tokenprune_models.gtpt.GTPT`.

    The official module holds two copies of every weight: the trained one (``features``,
    ``mlp_head_x/y``) and its exponential moving average (``ema_features``, ``ema_mlp_head_x/y``).
    The official evaluation runs only the EMA copy, which is the default here.

    Args:
        state_dict: the official state_dict (``module.`` prefixes already stripped).
        branch: ``"ema"`` (evaluation weights) or ``"raw"`` (the trained copy).
        model: the model to load the result into: the official entries are first checked
            against it, and every missing, unexpected or mis-shaped one is listed under its
            official name.
        source: the file the state_dict came from, named in errors.

    Returns:
        A state_dict for ``GTPT.load_state_dict(..., strict=True)``. The official fixed sine
        table (``pos_embedding``) and the attention-mask buffers are dropped: the model builds
        both itself.

    Raises:
        TypeError: not a mapping with string keys.
        ValueError: unknown branch, no entry of that branch, an entry outside the official
            layout (of either branch; e.g. a head axis other than ``x`` or ``y``), or, with
            ``model``, entries that do not fit it (listed under the official names).
    """
    where = None if source is None else repr(str(source))
    check_names(state_dict, "the official GTPT layout", where)
    if branch not in _BRANCHES:
        raise ValueError(f"branch must be 'ema' or 'raw', got {branch!r}")
    features, head = _BRANCHES[branch]
    other = _BRANCHES["raw" if branch == "ema" else "ema"]
    converted: dict[str, Tensor] = {}
    origin: dict[str, str] = {}  # our name -> the official one
    unknown: list[str] = []
    for name, value in state_dict.items():
        selected = name.startswith((features, head))
        try:
            ours = _rename(name, features, head) if selected else _rename(name, *other)
        except KeyError:
            unknown.append(name)
            continue
        if selected and ours is not None:
            converted[ours] = value
            origin[ours] = name
    prefix = "" if where is None else f"{where}: "
    if model is not None:
        check_official_layout(origin, sorted(unknown), state_dict, model.state_dict(),
                              lambda ours: official_name(ours, branch), _LAYOUT,
                              where)  # fmt: skip
    if unknown:
        raise ValueError(f"{prefix}entries not in {_LAYOUT}: {sorted(unknown)[:10]}")
    if not converted:
        raise ValueError(f"{prefix}no entries of the {branch!r} branch (expected names like "
                         f"{features}...)")  # fmt: skip
    return converted


def official_positional_table(
    state_dict: Mapping[str, Tensor], branch: str = "ema"
) -> Tensor | None:
    """The official checkpoint's fixed sine table, if it holds one (to check a model against)."""
    key = ("ema_features." if branch == "ema" else "features.") + "pos_embedding"
    return state_dict.get(key)


def load_official_checkpoint(
    path: str | os.PathLike, config: str | GTPTConfig, branch: str = "ema"
) -> GTPT:
    """Build GTPT of ``config`` (a preset name such as ``"gtpt_s_coco"``, or a
    :class:`~tokenprune_models.gtpt.config.GTPTConfig`) and load a released checkpoint file into
    it (eval mode).

    The file is read with ``torch.load(weights_only=True)``; a dict wrapping the state_dict
    (``state_dict``/``model`` keys, ``module.`` prefixes) is unwrapped. Its entries are checked
    against the model before anything is loaded.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file: not a weights-only state_dict, a positional table of
            another configuration, or entries that do not fit the model (the missing,
            unexpected and mis-shaped ones listed under their official names).
    """
    checkpoint = read_weights_only(path)
    model = build_gtpt(config)
    model.load_state_dict(checkpoint_filter(checkpoint, model, official=True, branch=branch,
                                            source=path))  # fmt: skip
    return model.eval()


def fit_simcc_bins(state_dict: Mapping[str, Tensor], model: GTPT) -> dict[str, Tensor]:
    """``state_dict`` with SimCC classifiers trained at another input size (progressive
    resolution) resized to ``model``'s bins (:func:`resize_simcc_bins`); the rest of GTPT does
    not depend on the input size (the position table is a fixed sine)."""
    state = dict(state_dict)
    split_ratio = model.config.codec.split_ratio
    for axis in ("x", "y"):
        bins = getattr(model.head, axis)[1].out_features
        for entry in ("weight", "bias"):
            key = f"head.{axis}.1.{entry}"
            if key in state and state[key].shape[0] != bins:
                state[key] = resize_simcc_bins(state[key], bins, split_ratio)
    return state


def checkpoint_filter(
    checkpoint: object,
    model: GTPT,
    *,
    official: bool = False,
    branch: str = "ema",
    source: str | os.PathLike | None = None,
) -> dict[str, Tensor]:
    """GTPT's one way from a checkpoint to the model's state_dict (used by
    :func:`tokenprune_models.create_model` and :func:`load_official_checkpoint`).

    Args:
        checkpoint: what ``torch.load`` read from the file.
        model: the GTPT to load the result into; the entries are checked against it.
        official: False: a checkpoint of this project's training engine (the weights its
            evaluation used) or a state_dict, bare or wrapped (e.g. the shipped half-precision
            weights), SimCC classifiers of another input size resized (:func:`fit_simcc_bins`).
            True: a checkpoint released with the official implementation, its ``branch``
            (``"ema"`` or ``"raw"``) converted (:func:`convert_official_state_dict`) once its
            positional table is found to be the model's.
        branch: with ``official``, which of the official checkpoint's two models to take.
        source: the file the checkpoint was read from, named in errors.

    Returns:
        A state_dict for ``model.load_state_dict(..., strict=True)``.

    Raises:
        ValueError: naming ``source``: no state_dict, another positional table, or entries
            that do not fit the model (missing, unexpected, mis-shaped; official ones under
            their official names).
    """
    if not official:
        weights = checkpoint_weights(checkpoint, source_label(source))
        return weights_for_model(fit_simcc_bins(weights, model), model, source)
    state_dict = extract_state_dict(checkpoint, source_label(source))
    table = official_positional_table(state_dict, branch)
    if table is not None and not (
        table.shape == model.pos_embedding.shape
        and torch.allclose(table, model.pos_embedding, atol=1e-5)
    ):
        raise ValueError(
            f"{source_label(source)}: the checkpoint's positional table (shape "
            f"{tuple(table.shape)}) differs from the model's sine table (width {model.dim}, "
            f"{model.grid[0]}x{model.grid[1]} tokens): is it a checkpoint of this configuration?"
        )
    return convert_official_state_dict(state_dict, branch, model=model, source=source)
