"""HEViTPose: a three-stage efficient vision transformer with cascaded group spatial-reduction
attention and a heatmap head.

HEViTPose (Wu, Tan, Li, arXiv 2311.13615) has no public code; this module follows the network
figure of the official repository, and every choice the figure leaves open is this project's
(listed in :mod:`tokenprune_models.hevitpose.build` and the README):

* three stages at 1/4, 1/8 and 1/16 of the input, each an overlapping patch embedding (a
  strided convolution whose kernel exceeds its stride by the overlap width, PEOW) followed by
  blocks;
* a block is the sandwich ``DWConv -> FFN -> CGSR attention -> DWConv -> FFN``, each sub-layer
  residual (the EfficientViT block layout);
* the head upsamples the last stage to 1/4 with transposed convolutions and predicts one
  heatmap per keypoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from einops import rearrange
from torch import Tensor, nn

from tokenprune.checks import check_int, check_number

from ..common.codec import check_size
from ..common.inputs import check_images
from .cgsr import CGSRAttention

__all__ = ["HEViTPose", "HEViTPoseConfig", "OverlapPatchEmbed", "SandwichBlock"]


@dataclass(frozen=True)
class HEViTPoseConfig:
    """A HEViTPose network (the named ones: ``tokenprune_models.hevitpose.PRESETS``).

    Attributes:
        widths: channels of the three stages.
        depths: blocks per stage.
        groups: CGSR groups per stage.
        heads_per_group: attention heads inside each group, per stage.
        reductions: spatial reduction of keys and values per stage.
        overlaps: patch-embedding overlap width (kernel minus stride) per stage; stage 1 has
            stride 4, stages 2 and 3 stride 2.
        key_dim: query/key width per head.
        ffn_ratio: hidden width of the FFNs over the stage width.
        head_channels: channels of the two transposed convolutions of the head.
        num_keypoints: heatmaps out (16 for MPII, 17 for COCO).
        image_size: input ``(height, width)``, multiples of 16.

    Raises:
        TypeError, ValueError: a field of the wrong type or value, named.
    """

    widths: tuple[int, int, int]
    depths: tuple[int, int, int]
    groups: tuple[int, int, int]
    heads_per_group: tuple[int, int, int]
    reductions: tuple[int, int, int] = (4, 2, 1)
    overlaps: tuple[int, int, int] = (3, 1, 1)
    key_dim: int = 16
    ffn_ratio: float = 2.0
    head_channels: int = 128
    num_keypoints: int = 16
    image_size: tuple[int, int] = (256, 256)

    def __post_init__(self) -> None:
        for name in ("widths", "depths", "groups", "heads_per_group", "reductions", "overlaps"):
            values = getattr(self, name)
            if isinstance(values, str | bytes) or not isinstance(values, Sequence):
                raise TypeError(f"{name} must be 3 ints (one per stage), got "
                                f"{type(values).__name__}")  # fmt: skip
            if len(values) != 3:
                raise ValueError(f"{name} must have 3 entries (one per stage), got {len(values)}")
            low = 0 if name == "overlaps" else 1
            object.__setattr__(self, name, tuple(check_int(f"{name}[{i}]", v, low=low)
                                                 for i, v in enumerate(values)))  # fmt: skip
        for stage, (width, groups, heads) in enumerate(
            zip(self.widths, self.groups, self.heads_per_group, strict=True)
        ):
            if width % groups or (width // groups) % heads:
                raise ValueError(f"widths[{stage}]={width} must split into groups[{stage}]="
                                 f"{groups} groups of heads_per_group[{stage}]={heads} "
                                 "heads")  # fmt: skip
        for name in ("key_dim", "head_channels", "num_keypoints"):
            check_int(name, getattr(self, name), low=1)
        ffn_ratio = check_number("ffn_ratio", self.ffn_ratio)
        if not ffn_ratio > 0:
            raise ValueError(f"ffn_ratio must be > 0, got {self.ffn_ratio!r}")
        size = check_size("image_size", self.image_size)
        if size[0] % 16 or size[1] % 16:
            raise ValueError(f"image_size must be multiples of 16, got {size}")
        object.__setattr__(self, "image_size", size)


class OverlapPatchEmbed(nn.Module):
    """A strided convolution whose kernel (``stride + overlap``) reaches ``overlap`` pixels into
    the neighbouring patches, then BatchNorm: ``[B, C_in, H, W] -> [B, C, H / s, W / s]`` for
    sides divisible by the stride."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, overlap: int) -> None:
        super().__init__()
        if overlap < 0:
            raise ValueError(f"overlap must be >= 0, got {overlap}")
        self.conv = nn.Conv2d(in_channels, out_channels, stride + overlap, stride,
                              padding=(overlap + 1) // 2, bias=False)  # fmt: skip
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.conv(x))


class _Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _depthwise(dim: int) -> nn.Module:
    return _Residual(nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False),
                                   nn.BatchNorm2d(dim)))  # fmt: skip


def _ffn(dim: int, ratio: float) -> nn.Module:
    hidden = int(dim * ratio)
    return _Residual(nn.Sequential(
        nn.Conv2d(dim, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=True),
        nn.Conv2d(hidden, dim, 1, bias=False), nn.BatchNorm2d(dim),
    ))  # fmt: skip


class SandwichBlock(nn.Module):
    """``DWConv -> FFN -> CGSR attention -> DWConv -> FFN`` on a ``[B, C, H, W]`` map, every
    sub-layer residual."""

    def __init__(self, dim: int, groups: int, heads_per_group: int, key_dim: int,
                 reduction: int, ffn_ratio: float) -> None:  # fmt: skip
        super().__init__()
        self.dw0, self.ffn0 = _depthwise(dim), _ffn(dim, ffn_ratio)
        self.attn = CGSRAttention(dim, groups, heads_per_group, key_dim, reduction)
        self.dw1, self.ffn1 = _depthwise(dim), _ffn(dim, ffn_ratio)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        x = self.ffn0(self.dw0(x))
        tokens = rearrange(x, "b c h w -> b (h w) c")
        tokens = tokens + self.attn(tokens, (height, width))
        x = rearrange(tokens, "b (h w) c -> b c h w", h=height, w=width)
        return self.ffn1(self.dw1(x))


class HEViTPose(nn.Module):
    """HEViTPose of a :class:`HEViTPoseConfig`: ``config.num_keypoints`` heatmaps at 1/4 of
    the ``config.image_size`` input.

    Raises:
        TypeError: ``config`` is not a :class:`HEViTPoseConfig`.
        ValueError: the input size is not a multiple of 16.
    """

    def __init__(self, config: HEViTPoseConfig) -> None:
        super().__init__()
        if not isinstance(config, HEViTPoseConfig):
            raise TypeError(f"config must be a HEViTPoseConfig, got {type(config).__name__}")
        image_size = tuple(config.image_size)
        if len(image_size) != 2 or image_size[0] % 16 or image_size[1] % 16:
            raise ValueError(f"image_size must be multiples of 16, got {config.image_size}")
        self.config, self.image_size = config, image_size
        num_keypoints = self.num_keypoints = config.num_keypoints
        stages, in_channels = [], 3
        for index, stride in enumerate((4, 2, 2)):
            width = config.widths[index]
            blocks = [
                SandwichBlock(width, config.groups[index], config.heads_per_group[index],
                              config.key_dim, config.reductions[index], config.ffn_ratio)
                for _ in range(config.depths[index])
            ]  # fmt: skip
            embed = OverlapPatchEmbed(in_channels, width, stride, config.overlaps[index])
            stages.append(nn.Sequential(embed, *blocks))
            in_channels = width
        self.stages = nn.ModuleList(stages)
        layers: list[nn.Module] = []
        for _ in range(2):  # 1/16 -> 1/8 -> 1/4
            layers += [
                nn.ConvTranspose2d(in_channels, config.head_channels, 4, stride=2, padding=1,
                                   bias=False),
                nn.BatchNorm2d(config.head_channels), nn.ReLU(inplace=True),
            ]  # fmt: skip
            in_channels = config.head_channels
        layers.append(nn.Conv2d(in_channels, num_keypoints, 1))
        self.head = nn.Sequential(*layers)

    def features(self, images: Tensor) -> Sequence[Tensor]:
        """The three stage outputs ``[B, C_s, H / (4, 8, 16), W / (4, 8, 16)]``."""
        x = check_images(images, self.image_size, self.head[-1].weight)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs

    def forward(self, images: Tensor) -> Tensor:
        """``images [B, 3, H, W] -> heatmaps [B, K, H/4, W/4]``."""
        return self.head(self.features(images)[-1])
