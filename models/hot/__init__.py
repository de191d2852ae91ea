"""HoT (Hourglass Tokenizer, CVPR 2024) on MixSTE, assembled from tokenprune.

Training and evaluation: ``python -m tokenprune_models.hot.train``
(:mod:`tokenprune_models.hot.train`, the 3-D lifting task of the shared engine
:mod:`tokenprune_models.common.engine`)."""

from .build import PRESETS, build_hot_mixste, load_official_checkpoint
from .convert import convert_official_state_dict
from .model import MixSTE, MixSTEConfig, MixSTEOutput

__all__ = [
    "PRESETS",
    "MixSTE",
    "MixSTEConfig",
    "MixSTEOutput",
    "build_hot_mixste",
    "convert_official_state_dict",
    "load_official_checkpoint",
]
