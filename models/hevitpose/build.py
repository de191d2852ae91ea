"""HEViTPose-T/S/B: this project's configurations.

HEViTPose publishes parameters and GFLOPs (MPII, 256x256 input: T 3.21 M / 1.75, S 5.88 M /
3.64, B 10.63 M / 5.58) but not its widths, depths or heads. Everything below is a project
choice, picked by a search over EfficientViT-like sizes for the configurations closest to the
published counts whose widths, depths and head grow from T to S to B:

* stages at 1/4, 1/8, 1/16; patch-embedding overlap width (PEOW) 3 at the stride-4 stem (the
  figure's value) and 1 at the stride-2 embeddings;
* CGSR attention with 4 groups of one head each, key width 16 (EfficientViT's defaults),
  spatial reductions 4, 2, 1 (PVTv2-like); FFN ratio 2;
* a head of two 4x4 stride-2 transposed convolutions to 1/4, then a 1x1 convolution.

Counted with :func:`tokenprune.count_flops` (``macs``: fvcore, every convolution and matrix
product including attention) for 16 MPII keypoints, the configurations land within 3% of the
published parameters and GFLOPs; the exact figures are in the README and benchmarks.
"""

from __future__ import annotations

import os
from typing import Any

from torch import Tensor

from ..common.checkpoint import weights_for_model
from ..common.presets import resolve_config
from .model import HEViTPose, HEViTPoseConfig

__all__ = ["PRESETS", "PUBLISHED", "build_hevitpose", "checkpoint_filter"]

#: HEViTPose-T, -S and -B as this project configures them, for MPII (16 keypoints, 256x256).
PRESETS: dict[str, HEViTPoseConfig] = {
    "hevitpose_t": HEViTPoseConfig(widths=(48, 160, 256), depths=(1, 2, 3), groups=(4, 4, 4),
                                   heads_per_group=(1, 1, 1), head_channels=64),
    "hevitpose_s": HEViTPoseConfig(widths=(48, 160, 256), depths=(2, 3, 4), groups=(4, 4, 4),
                                   heads_per_group=(1, 1, 1), head_channels=256),
    "hevitpose_b": HEViTPoseConfig(widths=(48, 192, 320), depths=(2, 4, 6), groups=(4, 4, 4),
                                   heads_per_group=(1, 1, 1), head_channels=256),
}  # fmt: skip

#: Published (parameters, GFLOPs) at 256x256 on MPII, by preset.
PUBLISHED = {
    "hevitpose_t": (3.21e6, 1.75e9),
    "hevitpose_s": (5.88e6, 3.64e9),
    "hevitpose_b": (10.63e6, 5.58e9),
}


def build_hevitpose(config: str | HEViTPoseConfig = "hevitpose_t", **overrides: Any) -> HEViTPose:
    """HEViTPose-T, -S or -B.

    Args:
        config: a key of :data:`PRESETS` (``"hevitpose_t"``, ``"hevitpose_s"``,
            ``"hevitpose_b"``) or a :class:`~tokenprune_models.hevitpose.model.HEViTPoseConfig`.
        overrides: :class:`~tokenprune_models.hevitpose.model.HEViTPoseConfig` fields to replace,
            e.g. ``num_keypoints=17`` (COCO) or ``image_size=(256, 192)``.

    Raises:
        ValueError: an unknown preset name, an override that is no field (the fields listed) or
            a bad field value.
        TypeError: a field of the wrong type.
    """
    return HEViTPose(resolve_config(config, PRESETS, overrides))


def checkpoint_filter(
    checkpoint: object,
    model: HEViTPose,
    *,
    official: bool = False,
    source: str | os.PathLike | None = None,
) -> dict[str, Tensor]:
    """HEViTPose's one way from a checkpoint to the model's state_dict (used by
    :func:`tokenprune_models.create_model`): a checkpoint of this project's training engine (the
    weights its evaluation used) or a state_dict, bare or wrapped, checked against ``model``;
    ``source``, the file it was read from, is named in errors.

    Raises:
        ValueError: ``official``: HEViTPose's configurations are this project's, so there is no
            official checkpoint to convert; or no state_dict, or entries that do not fit the
            model (missing, unexpected, mis-shaped; listed).
    """
    if official:
        raise ValueError("HEViTPose has no official checkpoints to convert (its configurations "
                         "are this project's); give a checkpoint of this project instead")
    return weights_for_model(checkpoint, model, source)
