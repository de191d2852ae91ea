"""DPPT: a PPT student distilled from an unpruned TokenPose teacher (this project's definition
of the distillation terms; see :mod:`models.dppt.loss`)."""

from .loss import DISTILL_LAYERS, DPPTLoss, DPPTLossTerms

__all__ = ["DISTILL_LAYERS", "DPPTLoss", "DPPTLossTerms"]
