"""GTPT (Group-based Token Pruning Transformer, ECCV 2024) assembled from tokenprune."""

from .build import build_gtpt
from .config import PRESETS, GTPTConfig
from .convert import convert_official_state_dict, load_official_checkpoint
from .deploy import export_onnx, fuse_batchnorm, optimize_for_inference
from .model import GTPT, GTPTOutput

__all__ = [
    "GTPT",
    "PRESETS",
    "GTPTConfig",
    "GTPTOutput",
    "build_gtpt",
    "convert_official_state_dict",
    "export_onnx",
    "fuse_batchnorm",
    "load_official_checkpoint",
    "optimize_for_inference",
]
