"""GTPT weights trained by this project and shipped with it: the GTPT entries of the model
registry (:mod:`tokenprune_models.registry`) that have weights.

    from tokenprune_models import create_model

    model = create_model("gtpt_t_synthetic", pretrained=True)   # GTPT-T, 128x96, eval mode
    x_logits, y_logits = model(images)                          # images [B, 3, 128, 96]

Each entry names its weights file (a weights-only, half-precision state_dict under
``gtpt/weights/``), the training config that produced them (its ``model`` section is the
entry's network) and a model card (``<file>.md``) with the commands, seed, steps, wall time and
learning curve that produced it.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..registry import MODELS, ModelEntry, create_model
from .model import GTPT

__all__ = ["PRETRAINED", "load_pretrained"]

#: The shipped GTPT weights by registry name.
PRETRAINED: dict[str, ModelEntry] = {
    name: entry for name, entry in MODELS.items() if entry.family == "gtpt" and entry.pretrained
}


def load_pretrained(
    name: str = "gtpt_t_synthetic", keep_rates: Sequence[float] | None = None
) -> GTPT:
    """``create_model(name, pretrained=True)`` for a key of :data:`PRETRAINED`.

    Args:
        name: a key of :data:`PRETRAINED`.
        keep_rates: the model's keep rates; the training config's (GTPT's published rates)
            if None. ``[1.0] * 4`` is the unpruned model.

    Returns:
        The model in eval mode, in float32.

    Raises:
        ValueError: an unknown name.
        FileNotFoundError: the weights file is missing (e.g. a checkout without it).
    """
    if name not in PRETRAINED:
        raise ValueError(f"name must be one of {sorted(PRETRAINED)}, got {name!r}")
    overrides = {} if keep_rates is None else {"keep_rates": keep_rates}
    return create_model(name, pretrained=True, **overrides)
