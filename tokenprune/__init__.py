"""tokenprune: token-pruning primitives for efficient pose-estimation transformers.

The top level holds what a pruned encoder is built from:

* attention: :class:`MultiHeadGroupAttention` and its functional form
  (:func:`group_attention`, :func:`group_attention_scored`, :class:`AttentionLogits`), in
  :class:`TransformerBlock`;
* pruning: :func:`token_scores` (PPT, GTPT and EViT rules), :func:`select_topk`, the
  :class:`GroupTokenPruner` with its :class:`PrunedTokens` and :class:`TokenState`,
  :func:`keep_count` and the keep-rate schedules;
* :func:`count_flops`.

Everything else lives in named submodules:

* :mod:`tokenprune.attention`: backends (:func:`~tokenprune.attention.available_backends`),
  :func:`~tokenprune.attention.gathered_attention` (experimental), the PyTorch references;
* :mod:`tokenprune.layout`: the key layout of group attention and its argument checks;
* :mod:`tokenprune.scores`, :mod:`tokenprune.selection`, :mod:`tokenprune.blocks`: the
  individual score rules, gathering and fusing tokens, ``Mlp`` and ``DropPath``;
* :mod:`tokenprune.temporal`: HoT's pruning along time (cluster and recovering attention);
* :mod:`tokenprune.losses`: distillation of a pruned student from an unpruned teacher;
* :mod:`tokenprune.flops`: MAC formulas and the paper's counting convention;
* :mod:`tokenprune.checks`: the argument checks, for code built on the library;
* :mod:`tokenprune.kernels`: the Triton kernels (needs Triton).
"""

from .attention import (
    AttentionLogits,
    MultiHeadGroupAttention,
    group_attention,
    group_attention_scored,
)
from .blocks import TransformerBlock
from .flops import FlopReport, count_flops
from .pruner import GroupTokenPruner, PrunedTokens, keep_count
from .schedules import (
    ConstantKeepRate,
    CosineWarmupKeepRate,
    KeepRateSchedule,
    LinearWarmupKeepRate,
)
from .scores import token_scores
from .selection import select_topk
from .state import TokenState

__version__ = "0.1.0"

__all__ = [
    "AttentionLogits",
    "ConstantKeepRate",
    "CosineWarmupKeepRate",
    "FlopReport",
    "GroupTokenPruner",
    "KeepRateSchedule",
    "LinearWarmupKeepRate",
    "MultiHeadGroupAttention",
    "PrunedTokens",
    "TokenState",
    "TransformerBlock",
    "count_flops",
    "group_attention",
    "group_attention_scored",
    "keep_count",
    "select_topk",
    "token_scores",
]
