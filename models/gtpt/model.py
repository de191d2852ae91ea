"""GTPT: Group-based Token Pruning Transformer, assembled from tokenprune.

Token flow (COCO; see the README of this package for WholeBody):

1. stem -> 1/4 feature map -> 4x3 patches -> 256 visual tokens + sine positions;
2. layers 1-6 attend over ``[human | visual]`` (``[keypoints | visual]`` from layer 4 on);
   after the attention of layer 4 the visual tokens are pruned by the human token's
   softmax-pooled logits and the human token expands into 17 keypoint tokens;
3. coarse to fine, after layer 6: three groups (head, upper, lower body) each get 6 keypoint
   tokens (group 0 holds a dummy copy of the nose), shared across groups, and a private copy of
   the visual tokens, channel-gated per group and pruned by the group's own keypoints;
4. layers 7-12 are Multi-Head Group Attention; after the attention of layer 10 each group
   prunes again;
5. the 17 keypoint tokens go through the SimCC head.

Every attention is a :class:`tokenprune.MultiHeadGroupAttention` (inside
:class:`tokenprune.TransformerBlock`), every score :func:`tokenprune.softmax_pool_score` and every
prune a :class:`tokenprune.GroupTokenPruner`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from models.common.inputs import check_images
from models.common.positional import sine_positional_embedding
from models.common.simcc import SimCCHead
from tokenprune import GroupTokenPruner, TransformerBlock, softmax_pool_score, token_scores
from tokenprune.checks import check_keep_rate

from .config import (
    BODY_GROUPS,
    COARSE_LAYERS,
    FINE_LAYERS,
    IMAGE_SIZE,
    MLP_RATIO,
    NUM_HEADS,
    PATCH_SIZE,
    SPARSE_PER_GROUP,
    SPLIT_RATIO,
    Layout,
    Variant,
)
from .stem import ShuffleStem, UShapedStem

NUM_GROUPS = len(BODY_GROUPS)
NUM_BODY = sum(len(g) for g in BODY_GROUPS)
UNPRUNED = (1.0, 1.0, 1.0, 1.0)


class GTPTOutput(NamedTuple):
    """Logits and the visual tokens kept at each pruning step.

    Kept tokens are original patch indices (0-255, row-major over the 16x16 grid), in the order
    the tokens sit in the model; ``-1`` marks a slot holding a dense keypoint token (WholeBody).

    Attributes:
        x_logits: ``[B, K, 384]``; y_logits: ``[B, K, 512]`` (256x192 input).
        kept_coarse: ``[B, n1]`` visual tokens of layers 5-6.
        kept_groups: ``[B, 3, n2]`` private tokens of each group in layers 7-10.
        kept_fine: ``[B, 3, n3]`` private tokens of each group in layers 11-12.
    """

    x_logits: Tensor
    y_logits: Tensor
    kept_coarse: Tensor
    kept_groups: Tensor
    kept_fine: Tensor


class ChannelGate(nn.Module):
    """Per-token channel gates, one per group: ``sigmoid(Linear(ReLU(Linear(x))))``.

    ``[B, N, D] -> [B, G, N, D]``.
    """

    def __init__(self, dim: int, groups: int) -> None:
        super().__init__()
        self.groups = groups
        self.fc1 = nn.Linear(dim, dim // 2)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(dim // 2, groups * dim)
        self.gate = nn.Sigmoid()

    def forward(self, tokens: Tensor) -> Tensor:
        gates = self.gate(self.fc2(self.act(self.fc1(tokens))))
        return rearrange(gates, "b n (g d) -> b g n d", g=self.groups)


def check_keep_rates(keep_rates: Sequence[float]) -> tuple[float, float, float, float]:
    """Four keep rates in (0, 1] (layers 1-3, 4-6, 7-9, 10-12), none above the one before."""
    if isinstance(keep_rates, (str, bytes)) or not isinstance(keep_rates, Sequence):
        raise TypeError(
            f"keep_rates must be a sequence of 4 floats, got {type(keep_rates).__name__}"
        )
    if len(keep_rates) != 4:
        raise ValueError(f"keep_rates must have 4 entries, got {len(keep_rates)}")
    rates = tuple(check_keep_rate(f"keep_rates[{i}]", r) for i, r in enumerate(keep_rates))
    for i in range(1, 4):
        if rates[i] > rates[i - 1]:
            raise ValueError(
                f"keep_rates must not increase (pruned tokens cannot come back), got {rates}"
            )
    return rates  # type: ignore[return-value]


class GTPT(nn.Module):
    """GTPT for 256x192 crops.

    Args:
        variant: model size (:data:`models.gtpt.config.VARIANTS`).
        layout: keypoint layout (:data:`models.gtpt.config.LAYOUTS`).
        keep_rates: default keep rates (fractions of the visual tokens, 256 at 256x192) of
            layers 1-3, 4-6, 7-9 and 10-12; the layout's published rates if None. All 1.0 =
            unpruned.
        image_size: input ``(height, width)``, multiples of 16 and 12 (the published models
            use 256x192; the visual tokens form a ``height/16 x width/12`` grid).
        keypoint_init_std: std of the truncated-normal initialisation of the keypoint, part
            and dense token embeddings. GTPT uses 0.02; those embeddings are added to the
            human-token state, so at 0.02 the keypoint tokens start almost identical after
            LayerNorm (mean cosine similarity 0.999) and a short run spends hundreds of steps
            separating them. The project's synthetic recipe uses 1.0 (a departure from GTPT).
            Only the initialisation changes: parameters and state_dict are the same.
    """

    def __init__(
        self,
        variant: Variant,
        layout: Layout,
        keep_rates: Sequence[float] | None = None,
        image_size: tuple[int, int] = IMAGE_SIZE,
        keypoint_init_std: float = 0.02,
    ) -> None:
        super().__init__()
        if not keypoint_init_std > 0:  # also rejects NaN
            raise ValueError(f"keypoint_init_std must be > 0, got {keypoint_init_std}")
        self.keypoint_init_std = float(keypoint_init_std)
        self.variant = variant
        self.layout = layout
        height, width = image_size
        rows, cols = PATCH_SIZE
        if height % (4 * rows) or width % (4 * cols) or height <= 0 or width <= 0:
            raise ValueError(
                f"image_size must be (height, width) with height a multiple of {4 * rows} and "
                f"width a multiple of {4 * cols}, got {image_size}"
            )
        self.image_size = (height, width)
        self.grid = (height // 4 // rows, width // 4 // cols)
        self.num_visual = self.grid[0] * self.grid[1]
        self.keep_rates = layout.keep_rates if keep_rates is None else keep_rates
        dim = variant.dim
        self.dim = dim
        #: Run the stem in channels-last memory format (see ``optimize_for_inference``).
        self.channels_last = False
        if variant.stem == "shuffle":
            self.stem = ShuffleStem(variant.stem_channels)
        else:
            self.stem = UShapedStem()
        self.patch_norm = nn.BatchNorm2d(variant.stem_channels)
        self.patch_embed = nn.Linear(variant.stem_channels * rows * cols, dim)
        self.register_buffer(
            "pos_embedding", sine_positional_embedding(*self.grid, dim), persistent=False
        )

        self.human_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.keypoint_tokens = nn.Parameter(torch.zeros(1, NUM_BODY, dim))
        if layout.num_parts:
            self.part_tokens = nn.Parameter(torch.zeros(1, layout.num_parts, dim))
            self.dense_tokens = nn.Parameter(torch.zeros(1, sum(layout.dense_per_part), dim))
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, NUM_HEADS, MLP_RATIO, qkv_bias=False, scale=dim**-0.5)
            for _ in range(COARSE_LAYERS + FINE_LAYERS)
        )
        self.channel_gate = ChannelGate(dim, NUM_GROUPS)
        budget = {"budget": "original", "num_original": self.num_visual}
        self.prune_coarse = GroupTokenPruner(1.0, **budget)
        self.prune_groups = GroupTokenPruner(1.0, **budget)
        self.prune_fine = GroupTokenPruner(1.0, **budget)
        self.head = SimCCHead(dim, int(width * SPLIT_RATIO), int(height * SPLIT_RATIO))
        self.split_ratio = SPLIT_RATIO

        # Fine-stage scoring queries: each group's sparse tokens and (WholeBody) its dense
        # tokens; the dummy token of group 0 never scores.
        dense = layout.dense_per_group
        self.fine_queries = SPARSE_PER_GROUP + max(dense)
        query_mask = torch.zeros(NUM_GROUPS, self.fine_queries, dtype=torch.bool)
        for g, count in enumerate(dense):
            query_mask[g, : SPARSE_PER_GROUP + count] = True
        query_mask[0, 0] = False
        self.register_buffer("fine_query_mask", query_mask, persistent=False)
        self.reset_parameters()

    # -- configuration ------------------------------------------------------------------------

    @property
    def keep_rates(self) -> tuple[float, float, float, float]:
        return self._keep_rates

    @keep_rates.setter
    def keep_rates(self, rates: Sequence[float]) -> None:
        self._keep_rates = self._checked_rates(rates)

    def _checked_rates(self, rates: Sequence[float]) -> tuple[float, float, float, float]:
        rates = check_keep_rates(rates)
        most_dense = max(self.layout.dense_per_group, default=0)
        for stage in (2, 3):
            kept = int(self.num_visual * rates[stage])
            if kept < most_dense:
                raise ValueError(
                    f"keep_rates[{stage}] = {rates[stage]} keeps {kept} private tokens per "
                    f"group, fewer than the {most_dense} dense keypoint tokens a group must keep"
                )
        return rates

    def reset_parameters(self) -> None:
        """GTPT's initialisation for training from scratch: convolution weights
        ``N(0, 0.001)`` (biases keep PyTorch's default), BatchNorm ``(1, 0)``, the human token
        truncated normal with std 0.02 and the keypoint, part and dense tokens with std
        ``keypoint_init_std`` (0.02 in GTPT)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.001)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.human_token, std=0.02)
        std = self.keypoint_init_std
        for name in ("keypoint_tokens", "part_tokens", "dense_tokens"):
            if hasattr(self, name):
                nn.init.trunc_normal_(getattr(self, name), std=std)  # bounds [-2, 2], as GTPT

    # -- forward ------------------------------------------------------------------------------

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``images [B, 3, H, W]`` -> ``(x_logits [B, K, 2W], y_logits [B, K, 2H])``; at the
        published 256x192: ``[B, K, 384]`` and ``[B, K, 512]``."""
        out = self.forward_tokens(images)
        return out.x_logits, out.y_logits

    def forward_tokens(
        self, images: Tensor, keep_rates: Sequence[float] | None = None
    ) -> GTPTOutput:
        """Logits and kept-token indices, at ``keep_rates`` (the model's own if None)."""
        rates = self.keep_rates if keep_rates is None else self._checked_rates(keep_rates)
        return self.encode(self.embed(images), rates)

    def forward_train(
        self, images: Tensor, keep_rates: Sequence[float] | None = None
    ) -> tuple[GTPTOutput, GTPTOutput]:
        """The pruned pass and the entire pass (every keep rate 1) of the Global Perceived
        loss; both share one stem and patch-embedding pass."""
        rates = self.keep_rates if keep_rates is None else self._checked_rates(keep_rates)
        visual = self.embed(images)
        return self.encode(visual, rates), self.encode(visual, UNPRUNED)

    def embed(self, images: Tensor) -> Tensor:
        """Stem and patch embedding: ``[B, 3, H, W] -> [B, H/16 * W/12, D]`` (no positions)."""
        images = check_images(images, self.image_size, self.patch_embed.weight)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        features = self.patch_norm(self.stem(images))
        rows, cols = PATCH_SIZE
        patches = rearrange(features, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=rows, p2=cols)
        return self.patch_embed(patches)

    def encode(self, visual: Tensor, keep_rates: Sequence[float]) -> GTPTOutput:
        """The transformer from patch embeddings ``[B, 256, D]`` to SimCC logits."""
        batch = visual.shape[0]
        pos = self.pos_embedding
        ids = torch.arange(self.num_visual, device=visual.device).expand(batch, -1)
        padded_pos = F.pad(pos, (0, 0, 1, 0))  # zero for the human token
        x = torch.cat([self.human_token.expand(batch, -1, -1), visual + pos], dim=1)
        shared = 1  # leading keypoint-like tokens: the human token, then the sparse keypoints

        for index, block in enumerate(self.blocks[:COARSE_LAYERS]):
            if index > 0:  # positions are re-added to the visual tokens before every layer
                if padded_pos.shape[-2] != x.shape[1]:
                    padded_pos = F.pad(pos, (0, 0, shared, 0))
                x = x + padded_pos
            rate = keep_rates[0] if index < 3 else keep_rates[1]
            prune = index in (0, 3) and self._prunes(self.prune_coarse, x.shape[1] - shared, rate)
            scoring = prune or index == COARSE_LAYERS - 1  # layer 6 scores the grouping
            if scoring:
                x, logits = block.attend_scored(x, shared, num_shared=shared)
            else:
                x = block.attend(x, num_shared=shared)
            if prune:  # by the human token's softmax-pooled logits
                scores = token_scores(logits, "softmax_pool")
                kept = self.prune_coarse(x, scores, num_shared=shared, keep_rate=rate)
                x, pos, ids = kept.tokens, kept.apply(pos), kept.apply(ids)
                padded_pos = pos[:, :0]  # stale: rebuilt before the next layer
            if index == 3:
                x = self._human_to_keypoints(x)
                shared = self.layout.num_parts + NUM_BODY
            x = block.feed_forward(x)
        kept_coarse = ids

        groups, pos, ids, key_mask = self._coarse_to_fine(x, logits, pos, ids, keep_rates[2])
        kept_groups = ids
        dense = list(self.layout.dense_per_group)
        padded_pos = F.pad(pos, (0, 0, SPARSE_PER_GROUP, 0))
        for index, block in enumerate(self.blocks[COARSE_LAYERS:], start=COARSE_LAYERS):
            groups = groups + padded_pos
            private = groups.shape[2] - SPARSE_PER_GROUP
            prune = index == 9 and self._prunes(self.prune_fine, private, keep_rates[3])
            if prune:
                groups, logits = block.attend_scored(
                    groups, self.fine_queries, SPARSE_PER_GROUP, key_mask
                )
                scores = token_scores(logits, "softmax_pool", query_mask=self.fine_query_mask)
                kept = self.prune_fine(
                    groups, scores, num_shared=SPARSE_PER_GROUP, num_protected=dense,
                    key_mask=key_mask, keep_rate=keep_rates[3],
                )  # fmt: skip
                groups, key_mask = kept.tokens, kept.key_mask
                pos, ids = kept.apply(pos), kept.apply(ids)
                padded_pos = F.pad(pos, (0, 0, SPARSE_PER_GROUP, 0))
            else:
                groups = block.attend(groups, SPARSE_PER_GROUP, key_mask)
            groups = block.feed_forward(groups)

        x_logits, y_logits = self.head(self._output_tokens(groups))
        return GTPTOutput(x_logits, y_logits, kept_coarse, kept_groups, ids)

    # -- stages -------------------------------------------------------------------------------

    @staticmethod
    def _prunes(pruner: GroupTokenPruner, num_private: int, rate: float) -> bool:
        """Whether a pruning step changes the token count (GTPT prunes only then)."""
        return pruner.num_kept(num_private, rate) != num_private

    def _human_to_keypoints(self, x: Tensor) -> Tensor:
        """``[human | visual] -> [parts | 17 body keypoints | visual]``: each keypoint (and part)
        token is the human token's state plus its own learned embedding."""
        human, visual = x[:, :1], x[:, 1:]
        embeddings = self.keypoint_tokens
        if self.layout.num_parts:
            embeddings = torch.cat([self.part_tokens, embeddings], dim=1)
        return torch.cat([human + embeddings, visual], dim=1)

    def _dense_tokens(self, parts: Tensor, group: int) -> Tensor:
        """WholeBody: the dense keypoint tokens of ``group``, each its part token's state plus
        its own learned embedding. ``[B, n_dense, D]``."""
        offsets = [0]
        for count in self.layout.dense_per_part:
            offsets.append(offsets[-1] + count)
        pieces = [
            parts[:, p : p + 1] + self.dense_tokens[:, offsets[p] : offsets[p + 1]]
            for p in self.layout.group_parts[group]
        ]
        if not pieces:
            return parts.new_zeros(parts.shape[0], 0, self.dim)
        return torch.cat(pieces, dim=1)

    def _coarse_to_fine(
        self, x: Tensor, logits, pos: Tensor, ids: Tensor, rate: float
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Split ``[parts | body | visual]`` into three groups and prune each group's visual
        tokens by its own keypoints' layer-6 logits.

        Each group: ``[6 sparse (shared) | dense (WholeBody, protected) | gated visual]``.
        Returns ``(groups [B, 3, N, D], private positions [B, 3, N-6, D], private ids
        [B, 3, N-6], key_mask [B, 3, N])``.
        """
        num_parts = self.layout.num_parts
        shared = num_parts + NUM_BODY
        parts, body, visual = x[:, :num_parts], x[:, num_parts:shared], x[:, shared:]
        gates = self.channel_gate(visual)  # [B, G, n, D]
        gated = visual.unsqueeze(1) * gates
        gated_pos = pos.unsqueeze(1) * gates
        sparse = torch.cat([body[:, :1], body], dim=1).unflatten(1, (NUM_GROUPS, SPARSE_PER_GROUP))
        candidate_logits = logits.private_logits()  # [B, H, shared, n]

        groups, positions, group_ids = [], [], []
        for g, members in enumerate(BODY_GROUPS):
            rows = list(self.layout.group_parts[g]) + [num_parts + m for m in members]
            scores = softmax_pool_score(candidate_logits[:, :, rows])  # [B, n]
            dense = self._dense_tokens(parts, g)
            num_dense = dense.shape[1]
            tokens = torch.cat([sparse[:, g], dense, gated[:, g]], dim=1)
            scores = torch.cat([scores.new_zeros(scores.shape[0], num_dense), scores], dim=1)
            kept = self.prune_groups(
                tokens, scores, num_shared=SPARSE_PER_GROUP, num_protected=num_dense,
                keep_rate=rate,
            )  # fmt: skip
            groups.append(kept.tokens)
            dense_pos = gated_pos.new_zeros(gated_pos.shape[0], num_dense, self.dim)  # none
            positions.append(kept.apply(torch.cat([dense_pos, gated_pos[:, g]], dim=1)))
            dense_ids = ids.new_full((ids.shape[0], num_dense), -1)
            group_ids.append(kept.apply(torch.cat([dense_ids, ids], dim=1)))
        groups = torch.stack(groups, dim=1)
        key_mask = torch.ones(groups.shape[:3], dtype=torch.bool, device=groups.device)
        key_mask[:, 0, 0] = False  # the dummy keypoint is never attended to
        return groups, torch.stack(positions, dim=1), torch.stack(group_ids, dim=1), key_mask

    def _output_tokens(self, groups: Tensor) -> Tensor:
        """The keypoint tokens in the dataset's order: 17 body keypoints (the dummy dropped),
        then (WholeBody) each group's dense keypoints."""
        body = groups[:, :, :SPARSE_PER_GROUP].flatten(1, 2)[:, 1:]
        dense = [
            groups[:, g, SPARSE_PER_GROUP : SPARSE_PER_GROUP + self.layout.dense_per_group[g]]
            for g in self.layout.output_groups
        ]
        return torch.cat([body, *dense], dim=1)
