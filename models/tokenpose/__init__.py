"""TokenPose and PPT (TokenPose with keypoint-attention token pruning) from tokenprune."""

from .build import build_tokenpose
from .config import PRESETS, TokenPoseConfig
from .convert import convert_official_state_dict, load_official_checkpoint
from .model import LayerRecord, TokenPose, TokenPoseOutput

__all__ = [
    "PRESETS",
    "LayerRecord",
    "TokenPose",
    "TokenPoseConfig",
    "TokenPoseOutput",
    "build_tokenpose",
    "convert_official_state_dict",
    "load_official_checkpoint",
]  # fmt: skip
