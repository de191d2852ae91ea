"""DPPT's presets: DPPT-S and -B by their student's network, PPT-S and PPT-B (a
:class:`~models.tokenpose.config.TokenPoseConfig`); the teacher is the same network unpruned
(``config.unpruned()``: TokenPose-S-v1 and -B) and the distillation is
:class:`~models.dppt.loss.DPPTLoss`."""

from __future__ import annotations

from models.tokenpose.config import PRESETS as TOKENPOSE_PRESETS
from models.tokenpose.config import TokenPoseConfig

__all__ = ["PRESETS"]

PRESETS: dict[str, TokenPoseConfig] = {
    "dppt_s": TOKENPOSE_PRESETS["ppt_s"],
    "dppt_b": TOKENPOSE_PRESETS["ppt_b"],
}
