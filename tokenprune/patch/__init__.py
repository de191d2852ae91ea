"""One-call pruning patches for models of other libraries (ToMe's ``tome.patch`` pattern).

* :func:`timm`: a timm ``VisionTransformer`` with group attention and EViT/PPT/GTPT pruning.
"""

from .timm import timm

__all__ = ["timm"]
