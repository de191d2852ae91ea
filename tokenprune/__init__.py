"""tokenprune: token-pruning primitives for efficient pose-estimation transformers."""

from .attention import (
    AttentionLogits,
    MultiHeadGroupAttention,
    available_backends,
    gathered_attention,
    group_attention,
    group_attention_scored,
)
from .blocks import DropPath, Mlp, TransformerBlock
from .cgsr import CGSRAttention, cgsr_attention_reference
from .clustering import (
    DensityPeaks,
    PrunedFrames,
    TokenPruningCluster,
    density_peaks,
    pool_frames,
)
from .flops import FlopReport, count_flops
from .losses import (
    bin_kl_divergence,
    global_perceived_loss,
    kept_attention_distillation_loss,
    keypoint_kl_loss,
    token_feature_distillation_loss,
)
from .pruner import GroupTokenPruner, PrunedTokens, keep_count
from .recovery import TokenRecoveringAttention
from .schedules import (
    ConstantKeepRate,
    CosineWarmupKeepRate,
    KeepRateSchedule,
    LinearWarmupKeepRate,
)
from .scores import cls_score, mean_score, softmax_pool_score, token_scores
from .selection import fuse_pruned_tokens, gather_tokens, pruned_token_weights, select_topk

__version__ = "0.1.0"

__all__ = [
    "AttentionLogits",
    "CGSRAttention",
    "ConstantKeepRate",
    "CosineWarmupKeepRate",
    "DensityPeaks",
    "DropPath",
    "FlopReport",
    "GroupTokenPruner",
    "KeepRateSchedule",
    "LinearWarmupKeepRate",
    "Mlp",
    "MultiHeadGroupAttention",
    "PrunedFrames",
    "PrunedTokens",
    "TokenPruningCluster",
    "TokenRecoveringAttention",
    "TransformerBlock",
    "available_backends",
    "bin_kl_divergence",
    "cgsr_attention_reference",
    "cls_score",
    "count_flops",
    "density_peaks",
    "fuse_pruned_tokens",
    "gather_tokens",
    "gathered_attention",
    "global_perceived_loss",
    "group_attention",
    "group_attention_scored",
    "keep_count",
    "kept_attention_distillation_loss",
    "keypoint_kl_loss",
    "mean_score",
    "pool_frames",
    "pruned_token_weights",
    "select_topk",
    "softmax_pool_score",
    "token_feature_distillation_loss",
    "token_scores",
]
