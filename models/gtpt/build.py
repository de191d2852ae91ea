"""``build_gtpt``: GTPT from a preset name or a config."""

from __future__ import annotations

from typing import Any

from ..common.presets import resolve_config
from .config import PRESETS, GTPTConfig
from .model import GTPT


def build_gtpt(config: str | GTPTConfig = "gtpt_t_coco", **overrides: Any) -> GTPT:
    """Build GTPT-T, -S or -B for COCO (17 keypoints) or COCO-WholeBody (133).

    Args:
        config: a key of :data:`~tokenprune_models.gtpt.config.PRESETS` (``"gtpt_t_coco"``, ...,
            ``"gtpt_b_wholebody"``) or a :class:`~tokenprune_models.gtpt.config.GTPTConfig`.
        overrides: :class:`~tokenprune_models.gtpt.config.GTPTConfig` fields to replace, e.g.
            ``keep_rates=[1.0] * 4`` (the unpruned model), ``image_size=(128, 96)`` or
            ``keypoint_init_std=1.0``.

    Returns:
        The model, randomly initialised (GTPT's from-scratch initialisation), in train mode.

    Raises:
        ValueError: an unknown preset name, an override that is no field (the fields listed) or
            a bad field value.
        TypeError: a field of the wrong type.
    """
    return GTPT(resolve_config(config, PRESETS, overrides))
