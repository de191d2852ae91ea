"""GTPT's convolutional stems, built from ShuffleNetV2 inverted-residual blocks.

Submodule names follow the common ShuffleNetV2 layout (``conv1``, ``layer``, ``branch1``,
``branch2`` and their Sequential indices), which is also the official checkpoint's layout.
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


class TopDownStep(nn.Module):
    """Upsample a coarse map 2x (``1x1 conv -> PixelShuffle(2) -> BN -> ReLU``), concatenate
    the skip connection, fuse with a ``1x1`` conv and refine with ShuffleNetV2 units."""

    def __init__(self, coarse: int, skip: int, out_channels: int, refine_blocks: int) -> None:
        super().__init__()
        self.up = nn.Sequential(
            nn.Conv2d(coarse, 4 * out_channels, 1),
            nn.PixelShuffle(2),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.fuse = _conv_bn_relu(out_channels + skip, out_channels, 1, 1)
        self.refine = nn.Sequential(
            *(InvertedResidual(out_channels, out_channels, 1) for _ in range(refine_blocks))
        )

    def forward(self, coarse: Tensor, skip: Tensor) -> Tensor:
        return self.refine(self.fuse(torch.cat([self.up(coarse), skip], dim=1)))


class UShapedStem(nn.Module):
    """GTPT-B stem: three ShuffleNetV2 stages down to 1/16, then two top-down steps back to 1/4.

    ``conv3x3 s2 (64) -> stage 256 @1/4 -> stage 384 @1/8 -> stage 512 @1/16``, then
    ``512 -> 384 @1/8`` and ``384 -> 256 @1/4``, each fusing the skip of its resolution.
    GTPT's notes describe this stem but its exact layers were not available; with the widths
    above, the stem has 3.03 M parameters and GTPT-B 8.32 M and 3.65 / 4.02 GMACs (COCO /
    WholeBody), the counts measured on the official GTPT-B (3.03 M stem, 8.37 M with its 0.05 M
    positional table, 3.65 / 4.02 GMACs).
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
        self.down4 = shuffle_stage(stem_width, c4, blocks)
        self.down8 = shuffle_stage(c4, c8, blocks)
        self.down16 = shuffle_stage(c8, c16, blocks)
        self.up8 = TopDownStep(c16, c8, c8, refine_blocks)
        self.up4 = TopDownStep(c8, c4, c4, refine_blocks)

    def forward(self, images: Tensor) -> Tensor:
        """``[B, 3, H, W] -> [B, 256, H/4, W/4]``."""
        f4 = self.down4(self.conv1(images))
        f8 = self.down8(f4)
        f16 = self.down16(f8)
        return self.up4(self.up8(f16, f8), f4)
