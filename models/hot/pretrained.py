"""MixSTE and HoT w. MixSTE weights trained by this project and shipped with it: the MixSTE/HoT
entries of the model registry (:mod:`tokenprune_models.registry`) that have weights.

    from tokenprune_models import create_model

    model = create_model("hot_mixste_synthetic", pretrained=True)  # 27 frames, 9 kept
    poses = model(inputs_2d).poses                     # [B, 27, 17, 2] -> [B, 27, 17, 3]

Each entry names its weights file (a weights-only, half-precision state_dict under
``hot/weights/``), the network (a preset and the overrides of the training configs
``hot/configs/synthetic_*.yaml``) and a model card (``<file>.md``) with the command, seed,
steps, wall time and learning curve that produced it; ``<file>.json`` is the machine-readable
record (:mod:`tokenprune_models.hot.release`), read by :func:`record_config`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from ..common.presets import resolve_config
from ..registry import MODELS, ModelEntry, create_model
from .build import PRESETS
from .model import MixSTE, MixSTEConfig

__all__ = ["PRETRAINED", "load_pretrained", "read_record", "record_config"]

#: The records written before the shared engine (the shipped ones) name the network by the old
#: ``variant`` and hold the sizes among the training settings, ``frames`` for ``num_frames``.
_OLD_VARIANTS = {"mixste": "mixste", "hot": "hot_mixste", "tpc": "tpc_mixste"}
_OLD_NAMES = {"frames": "num_frames"}

#: The shipped MixSTE / HoT weights by registry name.
PRETRAINED: dict[str, ModelEntry] = {
    name: entry for name, entry in MODELS.items() if entry.family == "hot" and entry.pretrained
}


def load_pretrained(name: str) -> MixSTE:
    """``create_model(name, pretrained=True)`` for a key of :data:`PRETRAINED`.

    Returns:
        The model in eval mode, in float32.

    Raises:
        ValueError: an unknown name, or a weights file that does not fit the network (missing,
            unexpected or mis-shaped entries, the file named).
        FileNotFoundError: the weights file is missing (e.g. a checkout without it).
    """
    if name not in PRETRAINED:
        raise ValueError(f"name must be one of {sorted(PRETRAINED)}, got {name!r}")
    return create_model(name, pretrained=True)


def record_config(record: Mapping) -> MixSTEConfig:
    """The network a shipped weights record (``<file>.json``) describes.

    A record of :mod:`tokenprune_models.hot.release` holds the network's config under
    ``config.model``; an older one (the shipped records, written before the shared engine) a
    ``variant`` (``mixste``, ``hot``, ``tpc``: the presets ``mixste``, ``hot_mixste``,
    ``tpc_mixste``) and its sizes among the flat training settings (``frames``, ``dim``,
    ``num_kept``, ``prune_loop``; for an unpruned MixSTE the last two are ignored).

    Raises:
        ValueError: neither layout, or values that make no config.
    """
    config = record.get("config") if isinstance(record, Mapping) else None
    if not isinstance(config, Mapping):
        raise ValueError("a weights record needs a 'config' mapping")
    if isinstance(config.get("model"), Mapping):
        return MixSTEConfig(**config["model"])
    if config.get("variant") not in _OLD_VARIANTS:
        raise ValueError(f"a weights record needs config.model or config.variant (one of "
                         f"{sorted(_OLD_VARIANTS)}), got {config.get('variant')!r}")  # fmt: skip
    preset = _OLD_VARIANTS[config["variant"]]
    sizes = {_OLD_NAMES.get(key, key): value for key, value in config.items()
             if _OLD_NAMES.get(key, key) in ("num_frames", "dim", "num_kept", "prune_loop")}
    if PRESETS[preset].prune_loop is None:  # the old trainer recorded them unused
        sizes.pop("num_kept", None), sizes.pop("prune_loop", None)
    return resolve_config(preset, PRESETS, sizes)


def read_record(name: str) -> tuple[dict, MixSTEConfig]:
    """The record of the shipped weights ``name`` (a key of :data:`PRETRAINED`) and the network
    it describes (:func:`record_config`)."""
    if name not in PRETRAINED:
        raise ValueError(f"name must be one of {sorted(PRETRAINED)}, got {name!r}")
    record = json.loads(PRETRAINED[name].record_path.read_text())
    return record, record_config(record)
