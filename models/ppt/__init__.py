"""PPT: the token-pruned pose transformer, i.e. TokenPose pruned by keypoint attention.

Built in :mod:`models.tokenpose`; this package is its name.
"""

from models.tokenpose import (
    PPT_KEEP_RATIO,
    PPT_PRUNE_AFTER,
    TokenPose,
    build_ppt,
    convert_official_state_dict,
    load_official_checkpoint,
)

__all__ = [
    "PPT_KEEP_RATIO", "PPT_PRUNE_AFTER", "TokenPose", "build_ppt", "convert_official_state_dict",
    "load_official_checkpoint",
]  # fmt: skip
