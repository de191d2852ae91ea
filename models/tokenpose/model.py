"""TokenPose and PPT: keypoint tokens attending to visual tokens, heatmaps out.

TokenPose (Li et al., ICCV 2021) prepends 17 learned keypoint tokens to the patch tokens of a
convolutional stem and reads a heatmap out of each keypoint token after a plain transformer.
PPT (Ma et al., ECCV 2022) is the same network with pruning: after the attention of layers 4,
7 and 10 the visual tokens that the keypoint tokens attend to least are dropped, keeping
``ceil(0.7 N)`` of the ``N`` present (180, 126, 89 of 256). Both are assembled from
tokenprune: every layer is a :class:`~tokenprune.TransformerBlock`, the scores are
:func:`~tokenprune.token_scores` with the ``mean`` rule (post-softmax attention, mean over
heads, summed over the keypoint queries) and the prune is a :class:`~tokenprune.GroupTokenPruner`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from einops import rearrange
from torch import Tensor, nn

from models.common.inputs import check_images
from models.common.positional import sine_positional_embedding
from tokenprune import GroupTokenPruner, TransformerBlock, token_scores
from tokenprune.checks import check_keep_rate

from .hrnet import HRNetStem
from .stem import StemNet

PATCH_SIZE = (4, 3)  # rows, columns of stem features per visual token
STEM_STRIDE = 4
#: Convolutional stems, each ``[B, 3, H, W] -> [B, C, H/4, W/4]``: TokenPose-S's stem-net
#: (C = 256) and HRNet-W32's stages 1-3 (C = 32) of TokenPose-B.
STEMS = {"stemnet": StemNet, "hrnet_w32": HRNetStem}


class LayerRecord(NamedTuple):
    """What a recorded layer saw (for distillation): see :meth:`TokenPose.forward_tokens`.

    Attributes:
        attention: ``[B, heads, K, n]`` pre-softmax logits of the keypoint queries against the
            ``n`` visual tokens present at the layer.
        visual_ids: ``[B, n]`` original patch indices of those visual tokens (the columns of
            ``attention``).
        keypoint_tokens: ``[B, K, D]`` keypoint tokens after the layer.
    """

    attention: Tensor
    visual_ids: Tensor
    keypoint_tokens: Tensor


class TokenPoseOutput(NamedTuple):
    """Heatmaps, the visual tokens kept at each pruning step and the recorded layers.

    Attributes:
        heatmaps: ``[B, K, H/4, W/4]``.
        kept: one ``[B, n_i]`` tensor per pruning step that removed tokens: original patch
            indices (row-major over the token grid), in the order the tokens sit in the model.
        records: one :class:`LayerRecord` per layer asked for, in layer order.
    """

    heatmaps: Tensor
    kept: tuple[Tensor, ...]
    records: tuple[LayerRecord, ...] = ()


class TokenPose(nn.Module):
    """TokenPose with optional PPT pruning, for ``image_size`` crops.

    Args:
        num_keypoints: keypoint tokens, one heatmap each.
        image_size: input ``(height, width)``, multiples of 16 and 12.
        dim, depth, num_heads, mlp_ratio: transformer width, layers, heads, MLP expansion.
        scale_with_head: scale attention logits by ``head_dim ** -0.5`` (the B models) instead
            of TokenPose-S's and PPT-S's ``dim ** -0.5``.
        stem: ``"stemnet"`` (TokenPose-S) or ``"hrnet_w32"`` (TokenPose-B), see :data:`STEMS`.
        prune_after: 1-based layers after whose attention visual tokens are pruned (PPT: 4, 7,
            10); empty for TokenPose.
        keep_ratio: fraction of the present visual tokens each step keeps (PPT: 0.7).
        backend: attention backend of every :class:`~tokenprune.MultiHeadGroupAttention`.
    """

    def __init__(
        self,
        num_keypoints: int = 17,
        image_size: tuple[int, int] = (256, 192),
        dim: int = 192,
        depth: int = 12,
        num_heads: int = 8,
        mlp_ratio: float = 3.0,
        scale_with_head: bool = False,
        prune_after: Sequence[int] = (),
        keep_ratio: float = 1.0,
        backend: str = "auto",
        stem: str = "stemnet",
    ) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {sorted(STEMS)}, got {stem!r}")
        height, width = image_size
        if height % (STEM_STRIDE * PATCH_SIZE[0]) or width % (STEM_STRIDE * PATCH_SIZE[1]):
            raise ValueError(f"image_size must be multiples of (16, 12), got {image_size}")
        if any(not 1 <= layer < depth for layer in prune_after):
            raise ValueError(f"prune_after layers must lie in [1, {depth - 1}], got {prune_after}")
        self.num_keypoints = num_keypoints
        self.image_size = (height, width)
        self.heatmap_size = (height // STEM_STRIDE, width // STEM_STRIDE)
        self.grid = (height // 16, width // 12)
        self.num_visual = self.grid[0] * self.grid[1]
        self.prune_after = tuple(sorted(prune_after))
        self.keep_ratio = keep_ratio

        self.stem = STEMS[stem]()
        self.patch_embed = nn.Linear(self.stem.out_channels * math.prod(PATCH_SIZE), dim)
        self.keypoint_tokens = nn.Parameter(torch.zeros(1, num_keypoints, dim))
        pos = sine_positional_embedding(*self.grid, dim)
        self.register_buffer("pos_embedding", pos, persistent=False)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio, qkv_bias=False,
                             scale=(dim // num_heads if scale_with_head else dim) ** -0.5,
                             backend=backend)
            for _ in range(depth)
        )  # fmt: skip
        self.pruner = GroupTokenPruner(1.0, budget="current")
        heatmap_pixels = math.prod(self.heatmap_size)
        self.head = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, heatmap_pixels // 8),
            nn.LayerNorm(heatmap_pixels // 8), nn.Linear(heatmap_pixels // 8, heatmap_pixels),
        )  # fmt: skip
        nn.init.trunc_normal_(self.keypoint_tokens, std=0.02)

    @property
    def keep_ratio(self) -> float:
        """Fraction of the present visual tokens kept at every pruning step (1.0: none)."""
        return self._keep_ratio

    @keep_ratio.setter
    def keep_ratio(self, ratio: float) -> None:
        self._keep_ratio = check_keep_rate("keep_ratio", ratio)

    def forward(self, images: Tensor) -> Tensor:
        """``images [B, 3, H, W] -> heatmaps [B, K, H/4, W/4]``."""
        return self.forward_tokens(images).heatmaps

    def forward_tokens(self, images: Tensor, record: Sequence[int] = ()) -> TokenPoseOutput:
        """Heatmaps, the kept visual tokens of every pruning step and, for each 1-based layer
        in ``record``, the keypoint queries' attention logits (before that layer's pruning)
        and the keypoint tokens after the layer."""
        return self.encode(self.embed(images), record)

    def embed(self, images: Tensor) -> Tensor:
        """Stem and patch embedding: ``[B, 3, H, W] -> [B, H/16 * W/12, D]`` (no positions)."""
        images = check_images(images, self.image_size, self.patch_embed.weight)
        rows, cols = PATCH_SIZE
        patches = rearrange(self.stem(images), "b c (h p1) (w p2) -> b (h w) (p1 p2 c)",
                            p1=rows, p2=cols)  # fmt: skip
        return self.patch_embed(patches)

    def encode(self, visual: Tensor, record: Sequence[int] = ()) -> TokenPoseOutput:
        """The transformer and head from patch embeddings ``[B, N, D]`` (``record``: see
        :meth:`forward_tokens`)."""
        record = set(record)
        if any(not (isinstance(layer, int) and 1 <= layer <= len(self.blocks)) for layer in record):
            raise ValueError(f"record must hold layers in [1, {len(self.blocks)}], got {record}")
        batch, keypoints = visual.shape[0], self.num_keypoints
        pos = self.pos_embedding.to(visual.dtype).expand(batch, -1, -1)
        ids = torch.arange(self.num_visual, device=visual.device).expand(batch, -1)
        x = torch.cat([self.keypoint_tokens.expand(batch, -1, -1), visual + pos], dim=1)
        kept, records = [], []
        for index, block in enumerate(self.blocks):
            if index > 0:  # positions are re-added to the visual tokens before every layer
                x = torch.cat([x[:, :keypoints], x[:, keypoints:] + pos], dim=1)
            num_visual = x.shape[1] - keypoints
            prune = (
                index + 1 in self.prune_after
                and self.pruner.num_kept(num_visual, self.keep_ratio) < num_visual
            )
            recorded = index + 1 in record
            if prune or recorded:
                x, logits = block.attend_scored(x, keypoints, num_shared=keypoints)
                present = ids
                if prune:
                    scores = token_scores(logits, "mean")
                    step = self.pruner(x, scores, num_shared=keypoints, keep_rate=self.keep_ratio)
                    x, pos, ids = step.tokens, step.apply(pos), step.apply(ids)
                    kept.append(ids)
            else:
                x = block.attend(x)
            x = block.feed_forward(x)
            if recorded:
                records.append(LayerRecord(logits.private_logits(), present, x[:, :keypoints]))
        heatmaps = self.head(x[:, :keypoints])
        heatmaps = rearrange(heatmaps, "b k (h w) -> b k h w", h=self.heatmap_size[0])
        return TokenPoseOutput(heatmaps, tuple(kept), tuple(records))
