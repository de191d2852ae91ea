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
:class:`tokenprune.TransformerBlock`), every score :func:`tokenprune.scores.softmax_pool_score`
and every prune a :meth:`tokenprune.GroupTokenPruner.prune` of a :class:`tokenprune.TokenState`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from einops import rearrange
from torch import Tensor, nn

from tokenprune import GroupTokenPruner, TokenState, TransformerBlock, token_scores
from tokenprune.scores import softmax_pool_score

from ..common.inputs import check_images
from ..common.positional import sine_positional_embedding
from ..common.simcc import SimCCHead
from .config import BODY_GROUPS, NUM_BODY, GTPTConfig, check_keep_rates
from .stem import ShuffleStem, UShapedStem

#: GTPT's fixed structure (see the token flow above): layers 1-6 are the coarse stage, layers
#: 7-12 the fine stage, in which each body group holds 6 sparse keypoint tokens (group 0: a
#: dummy copy of the nose and its 5 keypoints).
COARSE_LAYERS = 6
FINE_LAYERS = 6
SPARSE_PER_GROUP = 6
NUM_GROUPS = len(BODY_GROUPS)
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


class GTPT(nn.Module):
    """GTPT of a :class:`~tokenprune_models.gtpt.config.GTPTConfig` (see
    ``tokenprune_models.gtpt.PRESETS``).

    The visual tokens form an ``H / (4 * rows) x W / (4 * cols)`` grid (16x16 at 256x192 with
    4x3 patches). The model's keep rates start at ``config.keep_rates`` and may be set any
    time (:attr:`keep_rates`). ``config.keypoint_init_std`` scales the initial keypoint, part
    and dense token embeddings: GTPT uses 0.02; those embeddings are added to the human-token
    state, so at 0.02 the keypoint tokens start almost identical after LayerNorm (mean cosine
    similarity 0.999) and a short run spends hundreds of steps separating them. The project's
    synthetic recipe uses 1.0 (a departure from GTPT). Only the initialisation changes:
    parameters and state_dict are the same.

    Attributes:
        config: the configuration.
        codec: the SimCC codec of the outputs (``config.codec``): decode ``model(images)``
            with ``model.codec.decode``.

    Raises:
        ValueError: ``config.image_size`` is not a multiple of ``4 * config.patch_size``, or
            the keep rates keep fewer private tokens than a group has dense keypoints.
    """

    def __init__(self, config: GTPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GTPTConfig):
            raise TypeError(f"config must be a GTPTConfig, got {type(config).__name__}")
        self.config = config
        self.codec = config.codec
        height, width = config.image_size
        rows, cols = config.patch_size
        if height % (4 * rows) or width % (4 * cols):
            raise ValueError(
                f"image_size must be (height, width) with height a multiple of {4 * rows} and "
                f"width a multiple of {4 * cols}, got {config.image_size}"
            )
        self.image_size = (height, width)
        self.grid = (height // 4 // rows, width // 4 // cols)
        self.num_visual = self.grid[0] * self.grid[1]
        self.keep_rates = config.keep_rates
        dim = config.dim
        self.dim = dim
        #: Run the stem in channels-last memory format (see ``optimize_for_inference``).
        self.channels_last = False
        if config.stem == "shuffle":
            self.stem = ShuffleStem(config.stem_channels)
        else:
            self.stem = UShapedStem()
        self.patch_norm = nn.BatchNorm2d(config.stem_channels)
        self.patch_embed = nn.Linear(config.stem_channels * rows * cols, dim)
        self.register_buffer(
            "pos_embedding", sine_positional_embedding(*self.grid, dim), persistent=False
        )

        self.human_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.keypoint_tokens = nn.Parameter(torch.zeros(1, NUM_BODY, dim))
        if config.num_parts:
            self.part_tokens = nn.Parameter(torch.zeros(1, config.num_parts, dim))
            self.dense_tokens = nn.Parameter(torch.zeros(1, sum(config.dense_per_part), dim))
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, config.num_heads, config.mlp_ratio, qkv_bias=False,
                             scale=dim**-0.5)
            for _ in range(COARSE_LAYERS + FINE_LAYERS)
        )  # fmt: skip
        self.channel_gate = ChannelGate(dim, NUM_GROUPS)
        budget = {"budget": "original", "num_original": self.num_visual}
        self.prune_coarse = GroupTokenPruner(1.0, **budget)
        self.prune_groups = GroupTokenPruner(1.0, **budget)
        self.prune_fine = GroupTokenPruner(1.0, **budget)
        self.head = SimCCHead(dim, self.codec.bins_x, self.codec.bins_y)

        # Fine-stage scoring queries: each group's sparse tokens and (WholeBody) its dense
        # tokens; the dummy token of group 0 never scores.
        dense = config.dense_per_group
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
        most_dense = max(self.config.dense_per_group, default=0)
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
        std = self.config.keypoint_init_std
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
        rows, cols = self.config.patch_size
        patches = rearrange(features, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=rows, p2=cols)
        return self.patch_embed(patches)

    def encode(self, visual: Tensor, keep_rates: Sequence[float]) -> GTPTOutput:
        """The transformer from patch embeddings ``[B, 256, D]`` to SimCC logits."""
        batch = visual.shape[0]
        ids = torch.arange(self.num_visual, device=visual.device).expand(batch, -1)
        tokens = torch.cat([self.human_token.expand(batch, -1, -1), visual], dim=1)
        # shared slots: the human token, from layer 4 on the part and body keypoint tokens
        state = TokenState(tokens, num_shared=1, pos=self.pos_embedding, ids=ids)

        for index, block in enumerate(self.blocks[:COARSE_LAYERS]):
            # positions are added to the visual tokens before every layer
            x, shared = state.positioned(), state.num_shared
            rate = keep_rates[0] if index < 3 else keep_rates[1]
            prune = index in (0, 3) and self._prunes(self.prune_coarse, state.num_private, rate)
            scoring = prune or index == COARSE_LAYERS - 1  # layer 6 scores the grouping
            if scoring:
                x, logits = block.attend_scored(x, shared, num_shared=shared)
            else:
                x = block.attend(x, num_shared=shared)
            state = state.with_tokens(x)
            if prune:  # by the human token's softmax-pooled logits
                scores = token_scores(logits, "softmax_pool")
                state = self.prune_coarse.prune(state, scores, keep_rate=rate)
            if index == 3:
                state = state.with_tokens(*self._human_to_keypoints(state.tokens))
            state = state.with_tokens(block.feed_forward(state.tokens))
        kept_coarse = state.ids

        state = self._coarse_to_fine(state, logits, keep_rates[2])
        kept_groups = state.ids
        dense = list(self.config.dense_per_group)
        for index, block in enumerate(self.blocks[COARSE_LAYERS:], start=COARSE_LAYERS):
            groups, mask = state.positioned(), state.key_mask
            prune = index == 9 and self._prunes(self.prune_fine, state.num_private, keep_rates[3])
            if prune:
                groups, logits = block.attend_scored(groups, self.fine_queries, SPARSE_PER_GROUP,
                                                     mask)  # fmt: skip
                scores = token_scores(logits, "softmax_pool", query_mask=self.fine_query_mask)
                state = self.prune_fine.prune(
                    state.with_tokens(groups), scores, num_protected=dense, keep_rate=keep_rates[3]
                )
            else:
                state = state.with_tokens(block.attend(groups, SPARSE_PER_GROUP, mask))
            state = state.with_tokens(block.feed_forward(state.tokens))

        x_logits, y_logits = self.head(self._output_tokens(state.tokens))
        return GTPTOutput(x_logits, y_logits, kept_coarse, kept_groups, state.ids)

    # -- stages -------------------------------------------------------------------------------

    @staticmethod
    def _prunes(pruner: GroupTokenPruner, num_private: int, rate: float) -> bool:
        """Whether a pruning step changes the token count (GTPT prunes only then)."""
        return pruner.num_kept(num_private, rate) != num_private

    def _human_to_keypoints(self, x: Tensor) -> tuple[Tensor, int]:
        """``[human | visual] -> [parts | 17 body keypoints | visual]``: each keypoint (and part)
        token is the human token's state plus its own learned embedding. Returns the tokens
        and their number of shared (keypoint) slots."""
        human, visual = x[:, :1], x[:, 1:]
        embeddings = self.keypoint_tokens
        if self.config.num_parts:
            embeddings = torch.cat([self.part_tokens, embeddings], dim=1)
        return torch.cat([human + embeddings, visual], dim=1), embeddings.shape[1]

    def _dense_tokens(self, parts: Tensor, group: int) -> Tensor:
        """WholeBody: the dense keypoint tokens of ``group``, each its part token's state plus
        its own learned embedding. ``[B, n_dense, D]``."""
        offsets = [0]
        for count in self.config.dense_per_part:
            offsets.append(offsets[-1] + count)
        pieces = [
            parts[:, p : p + 1] + self.dense_tokens[:, offsets[p] : offsets[p + 1]]
            for p in self.config.group_parts[group]
        ]
        if not pieces:
            return parts.new_zeros(parts.shape[0], 0, self.dim)
        return torch.cat(pieces, dim=1)

    def _coarse_to_fine(self, state: TokenState, logits, rate: float) -> TokenState:
        """Split ``[parts | body | visual]`` into three groups and prune each group's visual
        tokens by its own keypoints' layer-6 logits.

        Each group: ``[6 sparse (shared) | dense (WholeBody, protected) | gated visual]``; the
        dense tokens have no position and id ``-1``. Returns the grouped state: tokens
        ``[B, 3, N, D]``, positions ``[B, 3, N-6, D]``, ids ``[B, 3, N-6]``, key mask
        ``[B, 3, N]``.
        """
        num_parts, shared = self.config.num_parts, state.num_shared
        x, pos, ids = state.tokens, state.pos, state.ids
        parts, body, visual = x[:, :num_parts], x[:, num_parts:shared], x[:, shared:]
        gates = self.channel_gate(visual)  # [B, G, n, D]
        gated = visual.unsqueeze(1) * gates
        gated_pos = pos.unsqueeze(1) * gates
        sparse = torch.cat([body[:, :1], body], dim=1).unflatten(1, (NUM_GROUPS, SPARSE_PER_GROUP))
        candidate_logits = logits.private_logits()  # [B, H, shared, n]

        groups = []
        for g, members in enumerate(BODY_GROUPS):
            rows = list(self.config.group_parts[g]) + [num_parts + m for m in members]
            scores = softmax_pool_score(candidate_logits[:, :, rows])  # [B, n]
            dense = self._dense_tokens(parts, g)
            num_dense = dense.shape[1]
            group = TokenState(
                torch.cat([sparse[:, g], dense, gated[:, g]], dim=1),
                num_shared=SPARSE_PER_GROUP,
                pos=torch.cat([gated_pos.new_zeros(x.shape[0], num_dense, self.dim),
                               gated_pos[:, g]], dim=1),
                ids=torch.cat([ids.new_full((ids.shape[0], num_dense), -1), ids], dim=1),
            )  # fmt: skip
            scores = torch.cat([scores.new_zeros(scores.shape[0], num_dense), scores], dim=1)
            groups.append(
                self.prune_groups.prune(group, scores, num_protected=num_dense, keep_rate=rate)
            )
        tokens = torch.stack([group.tokens for group in groups], dim=1)
        key_mask = torch.ones(tokens.shape[:3], dtype=torch.bool, device=tokens.device)
        key_mask[:, 0, 0] = False  # the dummy keypoint is never attended to
        return TokenState(
            tokens,
            num_shared=SPARSE_PER_GROUP,
            pos=torch.stack([group.pos for group in groups], dim=1),
            ids=torch.stack([group.ids for group in groups], dim=1),
            key_mask=key_mask,
        )

    def _output_tokens(self, groups: Tensor) -> Tensor:
        """The keypoint tokens in the dataset's order: 17 body keypoints (the dummy dropped),
        then (WholeBody) each group's dense keypoints."""
        body = groups[:, :, :SPARSE_PER_GROUP].flatten(1, 2)[:, 1:]
        dense = [
            groups[:, g, SPARSE_PER_GROUP : SPARSE_PER_GROUP + self.config.dense_per_group[g]]
            for g in self.config.output_groups
        ]
        return torch.cat([body, *dense], dim=1)
