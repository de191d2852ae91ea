"""Named TokenPose and PPT configurations."""

from __future__ import annotations

from .model import TokenPose

#: PPT's pruning steps: after the attention of layers 4, 7 and 10.
PPT_PRUNE_AFTER = (4, 7, 10)
#: PPT's compounding keep ratio.
PPT_KEEP_RATIO = 0.7
_VARIANTS = ("s",)


def _check_variant(variant: str) -> str:
    if not isinstance(variant, str) or variant.lower() not in _VARIANTS:
        raise ValueError(
            f"variant must be one of {_VARIANTS} (TokenPose-S-v1 / PPT-S; the B models' HRNet "
            f"stem is not available yet), got {variant!r}"
        )
    return variant.lower()


def build_tokenpose(variant: str = "s", num_keypoints: int = 17, **kwargs) -> TokenPose:
    """TokenPose-S-v1: stem-net, 12 layers of width 192 with 8 heads, heatmaps at 1/4.

    ``kwargs`` go to :class:`TokenPose` (``image_size``, ``backend``, ...).
    """
    _check_variant(variant)
    return TokenPose(num_keypoints=num_keypoints, **kwargs)


def build_ppt(
    variant: str = "s", num_keypoints: int = 17, keep_ratio: float = PPT_KEEP_RATIO, **kwargs
) -> TokenPose:
    """PPT-S: TokenPose-S-v1 pruned after layers 4, 7 and 10 by its keypoint tokens' attention
    (256 -> 180 -> 126 -> 89 visual tokens at the published ratio 0.7)."""
    _check_variant(variant)
    return TokenPose(num_keypoints=num_keypoints, prune_after=PPT_PRUNE_AFTER,
                     keep_ratio=keep_ratio, **kwargs)  # fmt: skip
