"""``build_gtpt``: GTPT by variant and dataset."""

from __future__ import annotations

from collections.abc import Sequence

from .config import IMAGE_SIZE, LAYOUTS, VARIANTS
from .model import GTPT


def build_gtpt(
    variant: str,
    dataset: str = "coco",
    keep_rates: Sequence[float] | None = None,
    image_size: tuple[int, int] = IMAGE_SIZE,
    keypoint_init_std: float = 0.02,
) -> GTPT:
    """Build GTPT-T, -S or -B for COCO (17 keypoints) or COCO-WholeBody (133).

    Args:
        variant: ``"t"``, ``"s"`` or ``"b"``.
        dataset: ``"coco"`` or ``"wholebody"``.
        keep_rates: fractions of the 256 visual tokens kept in layers 1-3, 4-6, 7-9 and 10-12;
            defaults to the published ``[1.0, 0.7, 0.3, 0.1]`` (COCO) or ``[1.0, 0.7, 0.5, 0.3]``
            (WholeBody). ``[1.0] * 4`` is the unpruned model.
        image_size: input ``(height, width)``; the published models use 256x192.
        keypoint_init_std: initialisation std of the keypoint token embeddings (GTPT: 0.02;
            see :class:`~models.gtpt.model.GTPT`).

    Returns:
        The model, randomly initialised (GTPT's from-scratch initialisation), in train mode.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    if dataset not in LAYOUTS:
        raise ValueError(f"dataset must be one of {sorted(LAYOUTS)}, got {dataset!r}")
    return GTPT(
        VARIANTS[variant], LAYOUTS[dataset], keep_rates, tuple(image_size), keypoint_init_std
    )
