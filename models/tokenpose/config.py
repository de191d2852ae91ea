"""TokenPose's and PPT's configuration: :class:`TokenPoseConfig` and the published models as
named :data:`PRESETS` (``tokenpose_s``, ``tokenpose_b``, ``ppt_s``, ``ppt_b``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..common.codec import check_size
from ..common.heatmap import HeatmapCodec

__all__ = ["PRESETS", "STEM_STRIDE", "TokenPoseConfig"]

#: Both stems give features (and heatmaps) at 1/4 of the input.
STEM_STRIDE = 4


@dataclass(frozen=True)
class TokenPoseConfig:
    """Everything that shapes a TokenPose or PPT network (the defaults: TokenPose-S-v1).

    Attributes:
        stem: ``"stemnet"`` (the S models) or ``"hrnet_w32"`` (HRNet-W32's stages 1-3, the B
            models).
        scale_with_head: scale attention logits by ``head_dim ** -0.5`` (the B models) instead
            of the S models' ``dim ** -0.5``.
        num_keypoints: keypoint tokens, one heatmap each (COCO: 17, COCO-WholeBody: 133).
        image_size: input ``(height, width)``, multiples of 16 and 12 (published: 256x192).
        dim, depth, num_heads, mlp_ratio: transformer width, layers, heads, MLP expansion.
        prune_after: 1-based layers after whose attention visual tokens are pruned (PPT: 4, 7,
            10); empty for TokenPose.
        keep_rate: fraction of the present visual tokens each pruning step keeps (PPT: 0.7).

    Raises:
        TypeError, ValueError: a field of the wrong type or value, named (the remaining checks,
            which need the network, run when
            :class:`~tokenprune_models.tokenpose.model.TokenPose` is built).
    """

    stem: str = "stemnet"
    scale_with_head: bool = False
    num_keypoints: int = 17
    image_size: tuple[int, int] = (256, 192)
    dim: int = 192
    depth: int = 12
    num_heads: int = 8
    mlp_ratio: float = 3.0
    prune_after: tuple[int, ...] = ()
    keep_rate: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", check_size("image_size", self.image_size))
        object.__setattr__(self, "prune_after", tuple(sorted(self.prune_after)))

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """Heatmap ``(height, width)``: 1/4 of the input."""
        return self.image_size[0] // STEM_STRIDE, self.image_size[1] // STEM_STRIDE

    @property
    def codec(self) -> HeatmapCodec:
        """The heatmap codec of the input and heatmap size (TokenPose's sigma 2)."""
        return HeatmapCodec(self.image_size, self.heatmap_size)

    def unpruned(self) -> TokenPoseConfig:
        """The same network without pruning (PPT-S -> TokenPose-S-v1: DPPT's teacher)."""
        return replace(self, prune_after=(), keep_rate=1.0)


_B = TokenPoseConfig(stem="hrnet_w32", scale_with_head=True)
#: PPT prunes after the attention of layers 4, 7 and 10, keeping ``ceil(0.7 N)`` each time.
_PPT = {"prune_after": (4, 7, 10), "keep_rate": 0.7}

#: TokenPose-S-v1 and -B, PPT-S and -B: 12 layers of width 192 with 8 heads, heatmaps at 1/4.
PRESETS: dict[str, TokenPoseConfig] = {
    "tokenpose_s": TokenPoseConfig(),
    "tokenpose_b": _B,
    "ppt_s": TokenPoseConfig(**_PPT),
    "ppt_b": replace(_B, **_PPT),
}
