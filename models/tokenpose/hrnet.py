"""HRNet's first three stages, the stem of TokenPose-B and PPT-B.

HRNet keeps a high-resolution branch through the whole network and adds lower-resolution
branches stage by stage, exchanging information between them after every module (each branch
receives the sum of all branches resampled to its resolution). TokenPose-B uses the stages 1-3
of HRNet-W32 and keeps the output of the 1/4-resolution branch: ``[B, 3, H, W] ->
[B, 32, H/4, W/4]``.

Submodule names follow HRNet's reference implementation (``conv1``, ``layer1``,
``transition1``, ``stage2``, ...), so ImageNet-pretrained HRNet weights load by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from .stem import StemNet


class BasicBlock(nn.Module):
    """ResNet basic block ``3x3 -> 3x3`` with a residual (no resampling)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + x)


def _conv_bn(in_channels: int, out_channels: int, stride: int, relu: bool) -> nn.Sequential:
    layers = [nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
              nn.BatchNorm2d(out_channels)]  # fmt: skip
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of basic blocks, then a fusion: every output branch ``i`` is the ReLU of
    the sum of all branches brought to branch ``i``'s resolution and width (strided 3x3
    convolutions downwards, a 1x1 convolution and nearest upsampling upwards).

    Args:
        channels: width of each branch, highest resolution first (each next one at half the
            resolution).
        blocks: basic blocks per branch.
        outputs: branches produced by the fusion (HRNet's ``multi_scale_output=False`` is 1).
    """

    def __init__(self, channels: Sequence[int], blocks: int, outputs: int | None = None) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(c) for _ in range(blocks))) for c in self.channels
        )
        fuse = []
        for i in range(outputs or len(self.channels)):
            row = []
            for j, width in enumerate(self.channels):
                if j > i:  # lower resolution: project, then upsample
                    row.append(nn.Sequential(
                        nn.Conv2d(width, self.channels[i], 1, bias=False),
                        nn.BatchNorm2d(self.channels[i]),
                        nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
                    ))  # fmt: skip
                elif j == i:
                    row.append(None)
                else:  # higher resolution: i - j strided convolutions, the last one projects
                    steps = [_conv_bn(width, width, 2, relu=True) for _ in range(i - j - 1)]
                    row.append(nn.Sequential(*steps, _conv_bn(width, self.channels[i], 2, False)))
            fuse.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        outs = []
        for row in self.fuse_layers:
            total = None
            for layer, x in zip(row, xs, strict=True):
                y = x if layer is None else layer(x)
                total = y if total is None else total + y
            outs.append(F.relu(total))
        return outs


def _transition(previous: Sequence[int], current: Sequence[int]) -> nn.ModuleList:
    """Width changes of existing branches and new, half-resolution branches from the last one."""
    layers: list[nn.Module | None] = []
    for i, width in enumerate(current):
        if i < len(previous):
            same = width == previous[i]
            layers.append(None if same else _conv_bn(previous[i], width, 1, relu=True))
        else:
            source = previous[-1]
            steps = [_conv_bn(source, source, 2, relu=True) for _ in range(i - len(previous))]
            layers.append(nn.Sequential(*steps, _conv_bn(source, width, 2, relu=True)))
    return nn.ModuleList(layers)


@dataclass(frozen=True)
class HRNetStages:
    """Widths of HRNet's stages 2 and 3 (the stage-1 stem is fixed) and their module counts."""

    stage2: tuple[int, ...] = (32, 64)
    stage3: tuple[int, ...] = (32, 64, 128)
    stage2_modules: int = 1
    stage3_modules: int = 4
    blocks: int = 4


class HRNetStem(nn.Module):
    """HRNet stages 1-3, ``[B, 3, H, W] -> [B, C, H/4, W/4]`` (the 1/4-resolution branch).

    Args:
        stages: branch widths and module counts; the default is HRNet-W32.
    """

    def __init__(self, stages: HRNetStages = HRNetStages()) -> None:
        super().__init__()
        stem = StemNet()
        self.conv1, self.bn1, self.conv2, self.bn2 = stem.conv1, stem.bn1, stem.conv2, stem.bn2
        self.layer1 = stem.layer1
        self.out_channels = stages.stage3[0]
        self.transition1 = _transition([StemNet.out_channels], stages.stage2)
        self.stage2 = nn.Sequential(*(HighResolutionModule(stages.stage2, stages.blocks)
                                      for _ in range(stages.stage2_modules)))  # fmt: skip
        self.transition2 = _transition(stages.stage2, stages.stage3)
        # only the 1/4 branch is used: the last module fuses into that branch alone (HRNet's
        # multi_scale_output=False), which the published 13.5 M of TokenPose-B counts
        last = stages.stage3_modules - 1
        self.stage3 = nn.Sequential(*(
            HighResolutionModule(stages.stage3, stages.blocks, outputs=1 if i == last else None)
            for i in range(stages.stage3_modules)
        ))  # fmt: skip

    def forward(self, images: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(images)))
        x = self.layer1(F.relu(self.bn2(self.conv2(x))))
        xs = [x if t is None else t(x) for t in self.transition1]
        xs = self.stage2(xs)
        xs = [xs[i] if t is None else t(xs[-1]) if i >= len(xs) else t(xs[i])
              for i, t in enumerate(self.transition2)]  # fmt: skip
        return self.stage3(xs)[0]
