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

from .model import HEViTPose, HEViTPoseConfig

__all__ = ["CONFIGS", "PUBLISHED", "build_hevitpose"]

CONFIGS = {
    "t": HEViTPoseConfig(widths=(48, 160, 256), depths=(1, 2, 3), groups=(4, 4, 4),
                         heads_per_group=(1, 1, 1), head_channels=64),
    "s": HEViTPoseConfig(widths=(48, 160, 256), depths=(2, 3, 4), groups=(4, 4, 4),
                         heads_per_group=(1, 1, 1), head_channels=256),
    "b": HEViTPoseConfig(widths=(48, 192, 320), depths=(2, 4, 6), groups=(4, 4, 4),
                         heads_per_group=(1, 1, 1), head_channels=256),
}  # fmt: skip

#: Published (parameters, GFLOPs) at 256x256 on MPII.
PUBLISHED = {"t": (3.21e6, 1.75e9), "s": (5.88e6, 3.64e9), "b": (10.63e6, 5.58e9)}


def build_hevitpose(
    variant: str = "t", num_keypoints: int = 16, image_size: tuple[int, int] = (256, 256)
) -> HEViTPose:
    """HEViTPose-T, -S or -B (16 keypoints for MPII, 17 for COCO)."""
    if not isinstance(variant, str) or variant.lower() not in CONFIGS:
        raise ValueError(f"variant must be one of {sorted(CONFIGS)}, got {variant!r}")
    return HEViTPose(CONFIGS[variant.lower()], num_keypoints, image_size)
