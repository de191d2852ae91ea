"""HEViTPose: cascaded group spatial-reduction attention
(:class:`tokenprune_models.hevitpose.cgsr.CGSRAttention`) in a three-stage efficient ViT with a
heatmap head; configurations are this project's."""

from .build import PRESETS, PUBLISHED, build_hevitpose
from .model import HEViTPose, HEViTPoseConfig, OverlapPatchEmbed, SandwichBlock

__all__ = [
    "PRESETS", "PUBLISHED", "HEViTPose", "HEViTPoseConfig", "OverlapPatchEmbed",
    "SandwichBlock", "build_hevitpose",
]  # fmt: skip
