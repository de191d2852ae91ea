"""MixSTE / HoT's published networks as named :data:`PRESETS` and ``build_hot_mixste``."""

from __future__ import annotations

import os
from typing import Any

from ..common.checkpoint import read_weights_only
from ..common.presets import resolve_config
from .convert import checkpoint_filter
from .model import MixSTE, MixSTEConfig

__all__ = ["PRESETS", "build_hot_mixste", "load_official_checkpoint"]

#: Human3.6M, 243-frame clips, CPN 2-D detections: MixSTE as HoT uses it (``mixste``), HoT w.
#: MixSTE (``hot_mixste``, seq2seq: 81 frames kept before loop 3, recovered at the end) and TPC
#: w. MixSTE (``tpc_mixste``, seq2frame: 61 frames kept before loop 7, the centre one among
#: them). The synthetic-data configs and shipped weights are these with a smaller size (see
#: ``hot/configs/synthetic_*.yaml`` and :mod:`tokenprune_models.registry`).
PRESETS: dict[str, MixSTEConfig] = {
    "mixste": MixSTEConfig(),
    "hot_mixste": MixSTEConfig(prune_loop=3, num_kept=81, recover=True),
    "tpc_mixste": MixSTEConfig(prune_loop=7, num_kept=61, recover=False),
}


def build_hot_mixste(config: str | MixSTEConfig = "hot_mixste", **overrides: Any) -> MixSTE:
    """MixSTE, HoT w. MixSTE or TPC w. MixSTE.

    Args:
        config: a key of :data:`PRESETS` (``"hot_mixste"``: seq2seq, pruning and recovery;
            ``"tpc_mixste"``: seq2frame, pruning only; ``"mixste"``: neither) or a
            :class:`~tokenprune_models.hot.model.MixSTEConfig`.
        overrides: :class:`~tokenprune_models.hot.model.MixSTEConfig` fields to replace, e.g.
            ``num_frames=27, dim=64, num_kept=9, prune_loop=1``.

    Returns:
        The model, randomly initialised, in train mode.

    Raises:
        ValueError: an unknown preset name, an override that is no field (the fields listed) or
            a bad field value.
        TypeError: ``config`` is neither a preset name nor a MixSTEConfig, or a field of the
            wrong type.
    """
    return MixSTE(resolve_config(config, PRESETS, overrides))


def load_official_checkpoint(
    path: str | os.PathLike, config: str | MixSTEConfig = "hot_mixste", **overrides: Any
) -> MixSTE:
    """Build a MixSTE / HoT (see :func:`build_hot_mixste`) and load an official checkpoint file
    into it (eval mode).

    The file is read with ``torch.load(weights_only=True)``; a dict wrapping the state_dict
    (HoT saves ``{"model": ...}`` or the bare state_dict) is unwrapped.
    """
    checkpoint = read_weights_only(path)
    model = build_hot_mixste(config, **overrides)
    model.load_state_dict(checkpoint_filter(checkpoint, model, official=True, source=path))
    return model.eval()
