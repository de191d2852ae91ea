"""Fixed 2-D sine positional embeddings (the "sine" tables of DETR, TokenPose, PPT and GTPT)."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sine_positional_embedding(
    height: int,
    width: int,
    dim: int,
    temperature: float = 10000.0,
    scale: float = 2 * math.pi,
    eps: float = 1e-6,
) -> Tensor:
    """The 2-D sine table of a ``height x width`` token grid, row-major.

    Each axis gets ``dim / 2`` features: positions ``1..n`` normalised to ``(0, scale]``, divided
    by ``temperature ** (2 * (i // 2) / (dim / 2))``, then sine on even and cosine on odd feature
    indices, interleaved pairwise. The y features come first, then the x features.

    Returns:
        ``[1, height * width, dim]`` float32.
    """
    if dim % 4 != 0:
        raise ValueError(f"dim must be divisible by 4 for a 2-D sine table, got {dim}")
    half = dim // 2
    y = torch.arange(1, height + 1, dtype=torch.float32)[:, None].expand(height, width)
    x = torch.arange(1, width + 1, dtype=torch.float32)[None, :].expand(height, width)
    y = y / (height + eps) * scale
    x = x / (width + eps) * scale
    frequencies = temperature ** (2 * (torch.arange(half, dtype=torch.float32) // 2) / half)

    def encode(positions: Tensor) -> Tensor:
        angles = positions[..., None] / frequencies  # [H, W, half]
        return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)

    table = torch.cat((encode(y), encode(x)), dim=-1)  # [H, W, dim]
    return table.reshape(1, height * width, dim)
