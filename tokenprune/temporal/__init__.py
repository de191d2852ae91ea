"""Pruning along time, as HoT does for video pose transformers.

* :class:`TokenPruningCluster` keeps the representative frames of a clip (density-peak
  clustering of the pooled frame features, :func:`density_peaks`);
* :class:`TokenRecoveringAttention` restores the full frame count at the end by one
  cross-attention from learned per-frame queries to the kept frames.

Example::

    from tokenprune.temporal import TokenPruningCluster, TokenRecoveringAttention

    cluster = TokenPruningCluster(num_kept=81)          # of 243 frames
    kept = cluster(x)                                   # x [B, T, J, C]
    ...                                                 # the remaining blocks on kept.tokens
    full = TokenRecoveringAttention(243, dim=C, num_heads=8)(kept_tokens)   # [B, T, J, C]
"""

from .clustering import DensityPeaks, PrunedFrames, TokenPruningCluster, density_peaks, pool_frames
from .recovery import TokenRecoveringAttention

__all__ = [
    "DensityPeaks",
    "PrunedFrames",
    "TokenPruningCluster",
    "TokenRecoveringAttention",
    "density_peaks",
    "pool_frames",
]
