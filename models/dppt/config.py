"""DPPT's networks: DPPT-S and -B are distilled PPT-S and PPT-B, so their networks are the PPT
presets of :data:`tokenprune_models.tokenpose.PRESETS` (a
:class:`~tokenprune_models.tokenpose.config.TokenPoseConfig`), named here once, in
:data:`STUDENTS`; the teacher is the same network unpruned (``config.unpruned()``:
TokenPose-S-v1 and -B) and the distillation is :class:`~tokenprune_models.dppt.loss.DPPTLoss`.
The model registry maps ``dppt_s`` and ``dppt_b`` to ``ppt_s`` and ``ppt_b`` the same way."""

from __future__ import annotations

from types import MappingProxyType

from ..tokenpose.config import PRESETS as TOKENPOSE_PRESETS
from ..tokenpose.config import TokenPoseConfig

__all__ = ["PRESETS", "STUDENTS"]

#: DPPT's name of each student network -> its PPT preset.
STUDENTS: MappingProxyType[str, str] = MappingProxyType({"dppt_s": "ppt_s", "dppt_b": "ppt_b"})

#: The student networks by DPPT name (the PPT presets themselves, not copies): what a DPPT
#: training config's ``preset`` names.
PRESETS: dict[str, TokenPoseConfig] = {
    name: TOKENPOSE_PRESETS[ppt] for name, ppt in STUDENTS.items()
}
