"""TokenPose-S's convolutional stem ("stem-net"): two stride-2 3x3 convolutions and ResNet's
first stage of four bottlenecks, ``[B, 3, H, W] -> [B, 256, H/4, W/4]``.

Submodule names follow the official implementation, so its stem weights load unchanged.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class Bottleneck(nn.Module):
    """ResNet bottleneck ``1x1 -> 3x3 -> 1x1`` with expansion 4 and an optional projection."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + identity)


class StemNet(nn.Module):
    """``[B, 3, H, W] -> [B, 256, H/4, W/4]``."""

    out_channels = 256

    def __init__(self, width: int = 64, blocks: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        expanded = 64 * Bottleneck.expansion
        self.layer1 = nn.Sequential(
            Bottleneck(width, 64), *(Bottleneck(expanded, 64) for _ in range(blocks - 1))
        )

    def forward(self, images: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(images)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.layer1(x)
