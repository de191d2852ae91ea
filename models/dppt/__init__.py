"""DPPT: a PPT student distilled from an unpruned TokenPose teacher (this project's definition
of the distillation terms; see :mod:`tokenprune_models.dppt.loss`). Its students are the PPT
networks: :data:`PRESETS` names them ``dppt_s`` and ``dppt_b`` (PPT-S and -B, see
:data:`~tokenprune_models.dppt.config.STUDENTS`)."""

from .config import PRESETS, STUDENTS
from .loss import DISTILL_LAYERS, DPPTLoss, DPPTLossTerms

__all__ = ["DISTILL_LAYERS", "PRESETS", "STUDENTS", "DPPTLoss", "DPPTLossTerms"]
