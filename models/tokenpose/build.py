"""Named TokenPose and PPT configurations."""

from __future__ import annotations

from .model import TokenPose

#: PPT's pruning steps: after the attention of layers 4, 7 and 10.
PPT_PRUNE_AFTER = (4, 7, 10)
#: PPT's compounding keep ratio.
PPT_KEEP_RATIO = 0.7
#: What distinguishes the variants: S-v1 has the stem-net and scales attention logits by
#: ``dim ** -0.5``; B has HRNet-W32's stages 1-3 and the usual ``head_dim ** -0.5``. Both have
#: 12 layers of width 192 with 8 heads and heatmaps at 1/4.
VARIANTS = {
    "s": {"stem": "stemnet", "scale_with_head": False},
    "b": {"stem": "hrnet_w32", "scale_with_head": True},
}


def _variant(variant: str, kwargs: dict) -> dict:
    """The :class:`TokenPose` arguments of a variant, ``kwargs`` taking precedence."""
    if not isinstance(variant, str) or variant.lower() not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)} (S-v1 or B), got {variant!r}")
    return VARIANTS[variant.lower()] | kwargs


def build_tokenpose(variant: str = "s", num_keypoints: int = 17, **kwargs) -> TokenPose:
    """TokenPose-S-v1 (stem-net) or TokenPose-B (HRNet-W32 stages 1-3): 12 layers of width 192
    with 8 heads, heatmaps at 1/4.

    ``kwargs`` go to :class:`TokenPose` (``image_size``, ``backend``, ...).
    """
    return TokenPose(num_keypoints=num_keypoints, **_variant(variant, kwargs))


def build_ppt(
    variant: str = "s", num_keypoints: int = 17, keep_ratio: float = PPT_KEEP_RATIO, **kwargs
) -> TokenPose:
    """PPT-S / PPT-B: TokenPose-S-v1 / TokenPose-B pruned after layers 4, 7 and 10 by its
    keypoint tokens' attention (256 -> 180 -> 126 -> 89 visual tokens at the published ratio
    0.7)."""
    return TokenPose(num_keypoints=num_keypoints, prune_after=PPT_PRUNE_AFTER,
                     keep_ratio=keep_ratio, **_variant(variant, kwargs))  # fmt: skip
