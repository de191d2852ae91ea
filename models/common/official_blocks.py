"""Names of transformer-layer weights in the official TokenPose-family code bases.

TokenPose and GTPT wrap attention as ``Residual(PreNorm(Attention))``; PPT adds the attention
residual by hand and keeps only ``PreNorm(Attention)``. The FFN is ``Residual(PreNorm(FFN))`` in
all three. Both layouts map onto :class:`tokenprune.TransformerBlock`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from torch import Tensor

from .checkpoint import describe_mismatch

# (pattern of the name inside one official layer, our name inside TransformerBlock)
_RULES = [
    (r"0\.fn\.norm\.(weight|bias)$", r"norm1.\1"),  # TokenPose, GTPT
    (r"0\.fn\.fn\.to_qkv\.(weight|bias)$", r"attn.qkv.\1"),
    (r"0\.fn\.fn\.to_out\.0\.(weight|bias)$", r"attn.proj.\1"),
    (r"0\.norm\.(weight|bias)$", r"norm1.\1"),  # PPT
    (r"0\.fn\.to_qkv\.(weight|bias)$", r"attn.qkv.\1"),
    (r"0\.fn\.to_out\.0\.(weight|bias)$", r"attn.proj.\1"),
    (r"1\.fn\.norm\.(weight|bias)$", r"norm2.\1"),
    (r"1\.fn\.fn\.net\.0\.(weight|bias)$", r"mlp.fc1.\1"),
    (r"1\.fn\.fn\.net\.3\.(weight|bias)$", r"mlp.fc2.\1"),
]


def rename_layer_entry(rest: str) -> str:
    """Our ``TransformerBlock`` name for an entry of one official layer, e.g.
    ``"0.fn.fn.to_qkv.weight" -> "attn.qkv.weight"``.

    Raises:
        KeyError: ``rest`` is not a layer entry of either layout.
    """
    for pattern, replacement in _RULES:
        if re.match(pattern, rest):
            return re.sub(pattern, replacement, rest)
    raise KeyError(rest)


# our name inside TransformerBlock -> (TokenPose/GTPT name, PPT name)
_INVERSE = [
    (r"norm1\.(weight|bias)$", r"0.fn.norm.\1", r"0.norm.\1"),
    (r"attn\.qkv\.(weight|bias)$", r"0.fn.fn.to_qkv.\1", r"0.fn.to_qkv.\1"),
    (r"attn\.proj\.(weight|bias)$", r"0.fn.fn.to_out.0.\1", r"0.fn.to_out.0.\1"),
    (r"norm2\.(weight|bias)$", r"1.fn.norm.\1", r"1.fn.norm.\1"),
    (r"mlp\.fc1\.(weight|bias)$", r"1.fn.fn.net.0.\1", r"1.fn.fn.net.0.\1"),
    (r"mlp\.fc2\.(weight|bias)$", r"1.fn.fn.net.3.\1", r"1.fn.fn.net.3.\1"),
]


def official_layer_entry(ours: str, ppt: bool = False) -> str:
    """Inverse of :func:`rename_layer_entry`: the official name of one of our
    ``TransformerBlock`` entries, in the PPT layout or the TokenPose/GTPT one; a name it does
    not know is returned as it is."""
    for pattern, tokenpose, ppt_name in _INVERSE:
        if re.match(pattern, ours):
            return re.sub(pattern, ppt_name if ppt else tokenpose, ours)
    return ours


def is_ppt_layout(names: Sequence[str]) -> bool:
    """Whether official layer names use PPT's attention wrapper (``<layer>.0.norm.*``)."""
    return any(re.search(r"layers\.\d+\.0\.norm\.", name) for name in names)


def check_names(state_dict: Mapping, layout: str, source: str | None) -> None:
    """Raise TypeError unless ``state_dict`` is a mapping with string keys."""
    prefix = "" if source is None else f"{source}: "
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"{prefix}state_dict must be a mapping of names to tensors, got "
            f"{type(state_dict).__name__} (load a file with load_official_checkpoint)"
        )
    for name in state_dict:
        if not isinstance(name, str):
            raise TypeError(f"{prefix}{layout} names tensors with strings; the state_dict has "
                            f"the key {name!r} ({type(name).__name__})")  # fmt: skip


def check_official_layout(
    origin: Mapping[str, str],
    unknown: Sequence[str],
    state_dict: Mapping[str, object],
    expected: Mapping[str, Tensor],
    official_name: Callable[[str], str],
    layout: str,
    source: str | None,
) -> None:
    """Compare an official state_dict with a model before converting it, in the official names.

    Args:
        origin: our name -> the official name it was converted from.
        unknown: official names outside the layout.
        state_dict: the official state_dict.
        expected: the model's ``state_dict()``.
        official_name: our name -> its official name (for the entries the file lacks).
        layout: e.g. ``"the official GTPT layout"``.
        source: the file (quoted), or None.

    Raises:
        ValueError: listing the missing, unexpected and mis-shaped entries under their official
            names, and naming ``source``.
    """
    unexpected = [*unknown, *(name for ours, name in origin.items() if ours not in expected)]
    missing = [official_name(ours) for ours in expected if ours not in origin]
    shapes = []
    for ours, name in origin.items():
        if ours not in expected:
            continue
        value, want = state_dict[name], list(expected[ours].shape)
        if not isinstance(value, Tensor):
            shapes.append(f"{name!r} (a {type(value).__name__}, not a tensor of shape {want})")
        elif list(value.shape) != want:
            shapes.append(f"{name!r} {list(value.shape)} (expected {want})")
    problems = describe_mismatch(missing, unexpected, shapes,
                                 unexpected_label=f"unexpected (not in {layout} of this model)")
    if problems:
        where = "the state_dict" if source is None else source
        raise ValueError(f"{where} does not fit the model in {layout}: {problems}")
