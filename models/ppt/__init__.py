"""PPT: the token-pruned pose transformer, i.e. TokenPose pruned by keypoint attention.

Built in :mod:`tokenprune_models.tokenpose` (presets ``"ppt_s"`` and ``"ppt_b"``); this package
is its name.
"""

from ..tokenpose import (
    PRESETS,
    TokenPose,
    TokenPoseConfig,
    build_tokenpose,
    convert_official_state_dict,
    load_official_checkpoint,
)

__all__ = [
    "PRESETS", "TokenPose", "TokenPoseConfig", "build_tokenpose", "convert_official_state_dict",
    "load_official_checkpoint",
]  # fmt: skip
