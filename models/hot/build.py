"""The published MixSTE / HoT configurations."""

from __future__ import annotations

import os
from dataclasses import replace

from ..common.checkpoint import read_weights_only
from .convert import checkpoint_filter
from .model import MixSTE, MixSTEConfig

__all__ = [
    "CONFIGS", "build_hot_mixste", "build_mixste", "load_official_checkpoint", "mixste_config",
]  # fmt: skip

#: Human3.6M, 243-frame clips, CPN 2-D detections: MixSTE as HoT uses it, HoT w. MixSTE
#: (seq2seq: 81 frames kept before loop 3, recovered at the end) and TPC w. MixSTE
#: (seq2frame: 61 frames kept before loop 7, the centre one among them).
CONFIGS = {
    "mixste": MixSTEConfig(),
    "hot": MixSTEConfig(prune_loop=3, num_kept=81, recover=True),
    "tpc": MixSTEConfig(prune_loop=7, num_kept=61, recover=False),
}


def build_mixste(**overrides) -> MixSTE:
    """MixSTE without pruning; keyword arguments override :class:`MixSTEConfig` fields."""
    return MixSTE(replace(CONFIGS["mixste"], **overrides))


def mixste_config(variant: str = "hot", **overrides) -> MixSTEConfig:
    """The :class:`MixSTEConfig` of ``variant`` ``"hot"`` (seq2seq, pruning and recovery),
    ``"tpc"`` (seq2frame, pruning only) or ``"mixste"`` (neither), keyword arguments overriding
    its fields (e.g. ``num_frames=27, dim=64, num_kept=9, prune_loop=1``).

    Raises:
        ValueError: an unknown variant, a field that is not one of :class:`MixSTEConfig`'s, or
            invalid sizes (see :class:`MixSTEConfig`).
    """
    if variant not in CONFIGS:
        raise ValueError(f"variant must be one of {sorted(CONFIGS)}, got {variant!r}")
    unknown = sorted(set(overrides) - set(MixSTEConfig.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown MixSTEConfig fields {unknown}; valid: "
                         f"{', '.join(MixSTEConfig.__dataclass_fields__)}")  # fmt: skip
    return replace(CONFIGS[variant], **overrides)


def build_hot_mixste(variant: str = "hot", **overrides) -> MixSTE:
    """HoT w. MixSTE of ``variant`` ``"hot"``, ``"tpc"`` or ``"mixste"`` with keyword arguments
    overriding :class:`MixSTEConfig` fields (see :func:`mixste_config`)."""
    return MixSTE(mixste_config(variant, **overrides))


def load_official_checkpoint(path: str | os.PathLike, variant: str = "hot", **overrides) -> MixSTE:
    """Build a MixSTE / HoT and load an official checkpoint file into it (eval mode).

    The file is read with ``torch.load(weights_only=True)``; a dict wrapping the state_dict
    (HoT saves ``{"model": ...}`` or the bare state_dict) is unwrapped.
    """
    checkpoint = read_weights_only(path)
    model = build_hot_mixste(variant, **overrides)
    model.load_state_dict(checkpoint_filter(checkpoint, model, official=True, source=path))
    return model.eval()
