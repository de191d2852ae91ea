"""HEViTPose: cascaded group spatial-reduction attention (tokenprune.CGSRAttention) in a
three-stage efficient ViT with a heatmap head; configurations are this project's."""

from .build import CONFIGS, PUBLISHED, build_hevitpose
from .model import HEViTPose, HEViTPoseConfig, OverlapPatchEmbed, SandwichBlock

__all__ = [
    "CONFIGS", "PUBLISHED", "HEViTPose", "HEViTPoseConfig", "OverlapPatchEmbed",
    "SandwichBlock", "build_hevitpose",
]  # fmt: skip
