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

from tokenprune import GroupTokenPruner, TokenState, TransformerBlock, token_scores
from tokenprune.checks import check_keep_rate

from ..common.inputs import check_images
from ..common.positional import sine_positional_embedding
from .config import PATCH_SIZE, TokenPoseConfig
from .hrnet import HRNetStem
from .stem import StemNet

#: Convolutional stems, each ``[B, 3, H, W] -> [B, C, H/4, W/4]``: TokenPose-S's stem-net
#: (C = 256) and HRNet-W32's stages 1-3 (C = 32) of TokenPose-B.
STEM_MODULES = {"stemnet": StemNet, "hrnet_w32": HRNetStem}


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
    """TokenPose with optional PPT pruning, of a
    :class:`~tokenprune_models.tokenpose.config.TokenPoseConfig` (see
    ``tokenprune_models.tokenpose.PRESETS``).

    Args:
        config: the network.
        backend: attention backend of every :class:`~tokenprune.MultiHeadGroupAttention`.

    Attributes:
        config: the configuration.
        codec: the heatmap codec of the outputs (``config.codec``): decode ``model(images)``
            with ``model.codec.decode``.
        keep_rate: the pruning steps' keep rate, ``config.keep_rate`` at first (settable).

    Raises:
        TypeError: ``config`` is not a TokenPoseConfig (the config checks its own fields).
    """

    def __init__(self, config: TokenPoseConfig, backend: str = "auto") -> None:
        super().__init__()
        if not isinstance(config, TokenPoseConfig):
            raise TypeError(f"config must be a TokenPoseConfig, got {type(config).__name__}")
        self.config = config
        self.codec = config.codec
        stem, image_size, prune_after = config.stem, config.image_size, config.prune_after
        dim, depth, num_heads = config.dim, config.depth, config.num_heads
        height, width = image_size  # the config checked every field
        self.num_keypoints = config.num_keypoints
        self.image_size = (height, width)
        self.heatmap_size = config.heatmap_size
        self.grid = (height // 16, width // 12)
        self.num_visual = self.grid[0] * self.grid[1]
        self.prune_after = prune_after
        self.keep_rate = config.keep_rate

        self.stem = STEM_MODULES[stem]()
        self.patch_embed = nn.Linear(self.stem.out_channels * math.prod(PATCH_SIZE), dim)
        self.keypoint_tokens = nn.Parameter(torch.zeros(1, config.num_keypoints, dim))
        pos = sine_positional_embedding(*self.grid, dim)
        self.register_buffer("pos_embedding", pos, persistent=False)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, config.mlp_ratio, qkv_bias=False,
                             scale=(dim // num_heads if config.scale_with_head else dim) ** -0.5,
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
    def keep_rate(self) -> float:
        """Fraction of the present visual tokens kept at every pruning step (1.0: none)."""
        return self._keep_rate

    @keep_rate.setter
    def keep_rate(self, ratio: float) -> None:
        self._keep_rate = check_keep_rate("keep_rate", ratio)

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
        state = TokenState(
            torch.cat([self.keypoint_tokens.expand(batch, -1, -1), visual], dim=1),
            num_shared=keypoints,
            pos=self.pos_embedding.to(visual.dtype).expand(batch, -1, -1),
            ids=torch.arange(self.num_visual, device=visual.device).expand(batch, -1),
        )
        kept, records = [], []
        for index, block in enumerate(self.blocks):
            x = state.positioned()  # positions are added to the visual tokens before every layer
            prune = (
                index + 1 in self.prune_after
                and self.pruner.num_kept(state.num_private, self.keep_rate) < state.num_private
            )
            recorded = index + 1 in record
            present = state.ids
            if prune or recorded:
                x, logits = block.attend_scored(x, keypoints, num_shared=keypoints)
                state = state.with_tokens(x)
                if prune:
                    scores = token_scores(logits, "mean")
                    state = self.pruner.prune(state, scores, keep_rate=self.keep_rate)
                    kept.append(state.ids)
            else:
                state = state.with_tokens(block.attend(x))
            state = state.with_tokens(block.feed_forward(state.tokens))
            if recorded:
                records.append(LayerRecord(logits.private_logits(), present,
                                           state.tokens[:, :keypoints]))  # fmt: skip
        x = state.tokens
        heatmaps = self.head(x[:, :keypoints])
        heatmaps = rearrange(heatmaps, "b k (h w) -> b k h w", h=self.heatmap_size[0])
        return TokenPoseOutput(heatmaps, tuple(kept), tuple(records))
