"""DPPT's presets: DPPT-S and -B by their student's network, PPT-S and PPT-B (a
:class:`~tokenprune_models.tokenpose.config.TokenPoseConfig`); the teacher is the same network
unpruned (``config.unpruned()``: TokenPose-S-v1 and -B) and the distillation is
:class:`~tokenprune_models.dppt.loss.DPPTLoss`."""

from __future__ import annotations

from ..tokenpose.config import PRESETS as TOKENPOSE_PRESETS
from ..tokenpose.config import TokenPoseConfig

__all__ = ["PRESETS"]

PRESETS: dict[str, TokenPoseConfig] = {
    "dppt_s": TOKENPOSE_PRESETS["ppt_s"],
    "dppt_b": TOKENPOSE_PRESETS["ppt_b"],
}
