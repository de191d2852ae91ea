"""MixSTE and HoT w. MixSTE weights trained by this project and shipped with it: the MixSTE/HoT
entries of the model registry (:mod:`tokenprune_models.registry`) that have weights.

    from tokenprune_models import create_model

    model = create_model("hot_mixste_synthetic", pretrained=True)  # 27 frames, 9 kept
    poses = model(inputs_2d).poses                     # [B, 27, 17, 2] -> [B, 27, 17, 3]

Each entry names its weights file (a weights-only, half-precision state_dict under
``hot/weights/``), the network (a preset and the overrides of the training configs
``hot/configs/synthetic_*.yaml``) and a model card (``<file>.md``) with the command, seed,
steps, wall time and learning curve that produced it; ``<file>.json`` is the machine-readable
record (:mod:`tokenprune_models.hot.release`).
"""

from __future__ import annotations

from ..registry import MODELS, ModelEntry, create_model
from .model import MixSTE

__all__ = ["PRETRAINED", "load_pretrained"]

#: The shipped MixSTE / HoT weights by registry name.
PRETRAINED: dict[str, ModelEntry] = {
    name: entry for name, entry in MODELS.items() if entry.family == "hot" and entry.pretrained
}


def load_pretrained(name: str) -> MixSTE:
    """``create_model(name, pretrained=True)`` for a key of :data:`PRETRAINED`.

    Returns:
        The model in eval mode, in float32.

    Raises:
        ValueError: an unknown name, or a weights file that does not fit the network (missing,
            unexpected or mis-shaped entries, the file named).
        FileNotFoundError: the weights file is missing (e.g. a checkout without it).
    """
    if name not in PRETRAINED:
        raise ValueError(f"name must be one of {sorted(PRETRAINED)}, got {name!r}")
    return create_model(name, pretrained=True)
