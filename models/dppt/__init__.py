"""DPPT: a PPT student distilled from an unpruned TokenPose teacher (this project's definition
of the distillation terms; see :mod:`tokenprune_models.dppt.loss`). Its :data:`PRESETS` name the
student's network (``dppt_s``, ``dppt_b``)."""

from .config import PRESETS
from .loss import DISTILL_LAYERS, DPPTLoss, DPPTLossTerms

__all__ = ["DISTILL_LAYERS", "PRESETS", "DPPTLoss", "DPPTLossTerms"]
