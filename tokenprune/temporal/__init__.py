"""Pruning along time, as HoT does for video pose transformers.

* :class:`TokenPruningCluster` keeps the representative frames of a clip (density-peak
  clustering of the pooled frame features, :func:`density_peaks`);
* :class:`TokenRecoveringAttention` restores the full frame count at the end by one
  cross-attention from learned per-frame queries to the kept frames.

Example::

    from tokenprune.temporal import TokenPruningCluster, TokenRecoveringAttention

    cluster = TokenPruningCluster(num_kept=81)            # of 243 frames
    kept = cluster(x)                                     # x [B, 243, J, C] -> kept.tokens
    ...                                                   # [B, 81, J, C] through more blocks
    recover = TokenRecoveringAttention(dim=C, num_tokens=243, num_heads=8)
    full = recover(tokens)                                # [B, 81, J, C] -> [B, 243, J, C]
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
