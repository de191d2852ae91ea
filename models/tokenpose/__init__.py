"""TokenPose and PPT (TokenPose with keypoint-attention token pruning) from tokenprune."""

from .build import PPT_KEEP_RATIO, PPT_PRUNE_AFTER, build_ppt, build_tokenpose
from .convert import convert_official_state_dict, load_official_checkpoint
from .model import LayerRecord, TokenPose, TokenPoseOutput

__all__ = [
    "PPT_KEEP_RATIO",
    "PPT_PRUNE_AFTER",
    "LayerRecord",
    "TokenPose",
    "TokenPoseOutput",
    "build_ppt",
    "build_tokenpose",
    "convert_official_state_dict",
    "load_official_checkpoint",
]  # fmt: skip
