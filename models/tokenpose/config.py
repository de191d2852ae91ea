"""TokenPose's and PPT's configuration: :class:`TokenPoseConfig` and the published models as
named :data:`PRESETS` (``tokenpose_s``, ``tokenpose_b``, ``ppt_s``, ``ppt_b``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from tokenprune.checks import check_bool, check_int, check_keep_rate, check_number

from ..common.codec import check_size
from ..common.heatmap import DEFAULT_SIGMA, HeatmapCodec

__all__ = ["PATCH_SIZE", "PRESETS", "STEMS", "STEM_STRIDE", "TokenPoseConfig"]

#: Both stems give features (and heatmaps) at 1/4 of the input.
STEM_STRIDE = 4
#: Rows and columns of stem features per visual token.
PATCH_SIZE = (4, 3)
#: The stems: TokenPose-S's stem-net and HRNet-W32's stages 1-3 (TokenPose-B).
STEMS = ("stemnet", "hrnet_w32")


@dataclass(frozen=True)
class TokenPoseConfig:
    """Everything that shapes a TokenPose or PPT network (the defaults: TokenPose-S-v1).

    Attributes:
        stem: ``"stemnet"`` (the S models) or ``"hrnet_w32"`` (HRNet-W32's stages 1-3, the B
            models), see :data:`STEMS`.
        scale_with_head: scale attention logits by ``head_dim ** -0.5`` (the B models) instead
            of the S models' ``dim ** -0.5``.
        num_keypoints: keypoint tokens, one heatmap each (COCO: 17, COCO-WholeBody: 133).
        image_size: input ``(height, width)``, multiples of 16 and 12 (published: 256x192).
        dim, depth, num_heads, mlp_ratio: transformer width, layers, heads, MLP expansion.
        prune_after: 1-based layers after whose attention visual tokens are pruned (PPT: 4, 7,
            10), each in ``[1, depth - 1]``; empty for TokenPose.
        keep_rate: fraction of the present visual tokens each pruning step keeps (PPT: 0.7).
        sigma: the Gaussian width in heatmap cells of the training targets (TokenPose's 2, the
            :class:`~tokenprune_models.common.heatmap.HeatmapCodec` default); it shapes the
            targets only, not the network, and is part of :attr:`codec`.

    Raises:
        TypeError, ValueError: a field of the wrong type or value, named.
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
    sigma: float = DEFAULT_SIGMA

    def __post_init__(self) -> None:
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {self.stem!r}")
        check_bool("scale_with_head", self.scale_with_head)
        check_int("num_keypoints", self.num_keypoints, low=1)
        size = check_size("image_size", self.image_size)
        multiple = (STEM_STRIDE * PATCH_SIZE[0], STEM_STRIDE * PATCH_SIZE[1])
        if size[0] % multiple[0] or size[1] % multiple[1]:
            raise ValueError(f"image_size must be multiples of {multiple}, got {size}")
        object.__setattr__(self, "image_size", size)
        for name in ("dim", "depth", "num_heads"):
            check_int(name, getattr(self, name), low=1)
        if self.dim % self.num_heads:
            raise ValueError(f"dim must be a multiple of num_heads, got dim={self.dim} and "
                             f"num_heads={self.num_heads}")  # fmt: skip
        mlp_ratio = check_number("mlp_ratio", self.mlp_ratio)
        if not mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio!r}")
        prune_after = self.prune_after
        if isinstance(prune_after, str | bytes) or not isinstance(prune_after, Sequence):
            raise TypeError(f"prune_after must be a sequence of layer numbers (ints), got "
                            f"{type(prune_after).__name__}")  # fmt: skip
        layers = sorted(check_int(f"prune_after[{i}]", layer, low=1, high=self.depth - 1)
                        for i, layer in enumerate(prune_after))  # fmt: skip
        if len(set(layers)) != len(layers):
            raise ValueError(f"prune_after must not repeat a layer, got {tuple(prune_after)}")
        object.__setattr__(self, "prune_after", tuple(layers))
        object.__setattr__(self, "keep_rate", check_keep_rate("keep_rate", self.keep_rate))
        sigma = check_number("sigma", self.sigma)
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma!r}")
        object.__setattr__(self, "sigma", sigma)

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """Heatmap ``(height, width)``: 1/4 of the input."""
        return self.image_size[0] // STEM_STRIDE, self.image_size[1] // STEM_STRIDE

    @property
    def codec(self) -> HeatmapCodec:
        """The heatmap codec of the input and heatmap size and :attr:`sigma`: the one codec of
        the model, its training data and its predictions."""
        return HeatmapCodec(self.image_size, self.heatmap_size, self.sigma)

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
