"""The model zoo of tokenprune: GTPT, TokenPose/PPT/DPPT, HEViTPose and MixSTE/HoT assembled
from the library, with their training and evaluation pipelines.

Installed as ``tokenprune_models`` (the folder ``models/`` of the repository); every model by
name through :func:`create_model` and :func:`list_models` (:mod:`.registry`).
"""

from .registry import ModelEntry, create_model, list_models, model_entry

__all__ = ["ModelEntry", "create_model", "list_models", "model_entry"]
