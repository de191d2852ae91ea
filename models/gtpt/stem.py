"""GTPT's convolutional stems, built from ShuffleNetV2 inverted-residual blocks.

Submodule names and their order follow the official GTPT stems (``conv1``, ``layer`` for T/S;
``down_layer*``, ``upsample*``, ``up_layer*`` for B; ``branch1``/``branch2`` inside a unit), so
the official checkpoints' stem entries load unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def channel_shuffle(x: Tensor, groups: int = 2) -> Tensor:
    """Interleave the channels of ``groups`` slices: ``[B, (g c), H, W] -> [B, (c g), H, W]``."""
    batch, channels, height, width = x.shape
    return (
        x.view(batch, groups, channels // groups, height, width)
        .transpose(1, 2)
        .reshape(batch, channels, height, width)
    )


class InvertedResidual(nn.Module):
    """ShuffleNetV2 unit.

    With stride 1 the input channels are split in half; one half passes through, the other goes
    through ``1x1 -> depthwise 3x3 -> 1x1``. With stride 2 both branches see the whole input and
    downsample it. The halves are concatenated and channel-shuffled.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if out_channels % 2:
            raise ValueError(f"out_channels must be even, got {out_channels}")
        branch = out_channels // 2
        if stride == 1 and in_channels != out_channels:
            raise ValueError("a stride-1 unit needs in_channels == out_channels")
        self.stride = stride
        if stride == 2:
            self.branch1 = nn.Sequential(
                nn.Conv2d(in_channels, in_channels, 3, 2, 1, groups=in_channels),
                nn.BatchNorm2d(in_channels),
                nn.Conv2d(in_channels, branch, 1),
                nn.BatchNorm2d(branch),
                nn.ReLU(inplace=True),
            )
        branch_in = in_channels if stride == 2 else branch
        self.branch2 = nn.Sequential(
            nn.Conv2d(branch_in, branch, 1),
            nn.BatchNorm2d(branch),
            nn.ReLU(inplace=True),
            nn.Conv2d(branch, branch, 3, stride, 1, groups=branch),
            nn.BatchNorm2d(branch),
            nn.Conv2d(branch, branch, 1),
            nn.BatchNorm2d(branch),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            kept, processed = x.chunk(2, dim=1)
            out = torch.cat([kept, self.branch2(processed)], dim=1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], dim=1)
        return channel_shuffle(out, 2)


def shuffle_stage(in_channels: int, out_channels: int, blocks: int) -> nn.Sequential:
    """One stride-2 unit followed by ``blocks - 1`` stride-1 units."""
    units = [InvertedResidual(in_channels, out_channels, 2)]
    units += [InvertedResidual(out_channels, out_channels, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*units)


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ShuffleStem(nn.Module):
    """GTPT-T/S stem: ``conv3x3 s2 -> one ShuffleNetV2 stage (stride 2)``, 1/4 resolution.

    Args:
        out_channels: 128 (GTPT-T) or 256 (GTPT-S).
    """

    def __init__(self, out_channels: int, width: int = 64, blocks: int = 4) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.conv1 = _conv_bn_relu(3, width, 3, 2)
        self.layer = shuffle_stage(width, out_channels, blocks)

    def forward(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W] -> [B, C, H/4, W/4]``."""
        return self.layer(self.conv1(images))


def upsample(in_channels: int, out_channels: int) -> nn.Sequential:
    """Double the resolution: ``1x1 conv -> PixelShuffle(2) -> BN -> ReLU``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 4 * out_channels, 1),
        nn.PixelShuffle(2),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def fuse_stage(channels: int, blocks: int) -> nn.Sequential:
    """Fuse a concatenated skip and upsampled map (``2C -> C``, 1x1), then refine with
    ShuffleNetV2 units."""
    return nn.Sequential(
        _conv_bn_relu(2 * channels, channels, 1, 1),
        *(InvertedResidual(channels, channels, 1) for _ in range(blocks)),
    )


class UShapedStem(nn.Module):
    """GTPT-B stem: three ShuffleNetV2 stages down to 1/16, then two top-down steps back to 1/4.

    ``conv3x3 s2 (64) -> 256 @1/4 -> 384 @1/8 -> 512 @1/16``; each top-down step upsamples the
    coarser map, concatenates it *after* the skip connection of its resolution, fuses with a
    1x1 convolution and refines with two units. Module names follow the official GTPT-B, so its
    checkpoints load unchanged.
    """

    def __init__(
        self,
        widths: tuple[int, int, int] = (256, 384, 512),
        stem_width: int = 64,
        blocks: int = 4,
        refine_blocks: int = 2,
    ) -> None:
        super().__init__()
        c4, c8, c16 = widths
        self.out_channels = c4
        self.conv1 = _conv_bn_relu(3, stem_width, 3, 2)
        self.down_layer1 = shuffle_stage(stem_width, c4, blocks)
        self.down_layer2 = shuffle_stage(c4, c8, blocks)
        self.down_layer3 = shuffle_stage(c8, c16, blocks)
        self.upsample1 = upsample(c16, c8)
        self.upsample2 = upsample(c8, c4)
        self.up_layer1 = fuse_stage(c8, refine_blocks)
        self.up_layer2 = fuse_stage(c4, refine_blocks)

    def forward(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W] -> [B, 256, H/4, W/4]``."""
        f4 = self.down_layer1(self.conv1(images))
        f8 = self.down_layer2(f4)
        f16 = self.down_layer3(f8)
        f8 = self.up_layer1(torch.cat([f8, self.upsample1(f16)], dim=1))
        return self.up_layer2(torch.cat([f4, self.upsample2(f8)], dim=1))
