"""``build_tokenpose``: TokenPose or PPT from a preset name or a config."""

from __future__ import annotations

from typing import Any

from ..common.presets import resolve_config
from .config import PRESETS, TokenPoseConfig
from .model import TokenPose


def build_tokenpose(
    config: str | TokenPoseConfig = "tokenpose_s", backend: str = "auto", **overrides: Any
) -> TokenPose:
    """TokenPose-S-v1 / -B or PPT-S / -B.

    Args:
        config: a key of :data:`~tokenprune_models.tokenpose.config.PRESETS` (``"tokenpose_s"``,
            ``"tokenpose_b"``, ``"ppt_s"``, ``"ppt_b"``) or a
            :class:`~tokenprune_models.tokenpose.config.TokenPoseConfig`. The S models have the
            stem-net, the B models HRNet-W32's stages 1-3; PPT prunes after layers 4, 7 and 10 by
            its keypoint tokens' attention (256 -> 180 -> 126 -> 89 visual tokens at the published
            ratio 0.7).
        backend: attention backend of every :class:`~tokenprune.MultiHeadGroupAttention`.
        overrides: :class:`~tokenprune_models.tokenpose.config.TokenPoseConfig` fields to
            replace, e.g. ``num_keypoints=133``, ``image_size=(128, 96)`` or ``keep_rate=0.5``.

    Raises:
        ValueError: an unknown preset name, an override that is no field (the fields listed) or
            a bad field value.
        TypeError: a field of the wrong type.
    """
    return TokenPose(resolve_config(config, PRESETS, overrides), backend)
