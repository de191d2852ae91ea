"""MixSTE, a spatial-temporal video pose transformer, with HoT's frame pruning and recovery.

MixSTE lifts a clip of 2-D keypoints ``[B, T, J, 2]`` to 3-D poses ``[B, T, J, 3]``. Every
joint of every frame is a token. A *loop* is one spatial block (attention over the ``J`` joints
of a frame, one sequence per frame) followed by one temporal block (attention over the ``T``
frames of a joint, one sequence per joint); a shared LayerNorm follows every spatial block and
another every temporal block.

HoT (Hourglass Tokenizer) prunes and restores the time axis:

* before loop ``prune_loop``, :class:`tokenprune.temporal.TokenPruningCluster` keeps
  ``num_kept`` representative frames (all joints of each), and a learnable embedding of the
  kept slot's rank is added;
* the remaining loops run on the kept frames only;
* seq2seq: :class:`tokenprune.temporal.TokenRecoveringAttention` turns the kept frames back
  into ``T`` frames before the regression head;
* seq2frame: no recovery; the centre frame is always kept and the model returns poses for the
  kept frames only (the centre one is the prediction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from einops import rearrange
from torch import Tensor, nn

from tokenprune import TransformerBlock
from tokenprune.checks import check_bool, check_float, check_int, check_number
from tokenprune.temporal import TokenPruningCluster, TokenRecoveringAttention
from tokenprune.temporal.clustering import TIE_BREAKS

__all__ = ["MixSTE", "MixSTEConfig", "MixSTEOutput"]


@dataclass(frozen=True)
class MixSTEConfig:
    """Sizes of a MixSTE and, optionally, of HoT's pruning.

    Attributes:
        num_frames: clip length ``T``.
        num_joints: joints ``J``.
        in_channels: input coordinates per joint (2).
        out_channels: output coordinates per joint (3).
        dim: token width.
        depth: loops (one spatial and one temporal block each).
        num_heads: attention heads of every block and of the recovery.
        mlp_ratio: hidden width of the blocks' MLPs relative to ``dim``.
        drop_path_rate: stochastic depth of the last loop (linear from 0 over the loops).
        prune_loop: the loop before which frames are pruned (HoT's ``n``); None: no pruning.
        num_kept: frames kept by the pruning (HoT's ``f_n``).
        recover: seq2seq (True: recover all ``T`` frames) or seq2frame (False: keep the centre
            frame and return the kept frames).
        tie_break: the clustering's tie rule (see :func:`tokenprune.temporal.density_peaks`).

    Raises:
        TypeError, ValueError: a field of the wrong type or value, named.
    """

    num_frames: int = 243
    num_joints: int = 17
    in_channels: int = 2
    out_channels: int = 3
    dim: int = 512
    depth: int = 8
    num_heads: int = 8
    mlp_ratio: float = 2.0
    drop_path_rate: float = 0.1
    prune_loop: int | None = None
    num_kept: int | None = None
    recover: bool = True
    tie_break: str = "index"

    def __post_init__(self) -> None:
        for name in ("num_frames", "num_joints", "in_channels", "out_channels", "dim", "depth",
                     "num_heads"):  # fmt: skip
            check_int(name, getattr(self, name), low=1)
        if self.dim % self.num_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by num_heads ({self.num_heads})")
        mlp_ratio = check_number("mlp_ratio", self.mlp_ratio)
        if not mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio!r}")
        check_float("drop_path_rate", self.drop_path_rate, low=0, high=1, high_open=True)
        check_bool("recover", self.recover)
        if self.tie_break not in TIE_BREAKS:
            raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {self.tie_break!r}")
        if (self.prune_loop is None) != (self.num_kept is None):
            raise ValueError(
                "prune_loop and num_kept go together (both None for an unpruned MixSTE), got "
                f"prune_loop={self.prune_loop!r}, num_kept={self.num_kept!r}"
            )
        if self.prune_loop is not None:
            check_int("prune_loop", self.prune_loop)
            check_int("num_kept", self.num_kept)
            if not 1 <= self.prune_loop < self.depth:
                raise ValueError(
                    f"prune_loop must be in [1, {self.depth - 1}] (a loop index after the "
                    f"first), got {self.prune_loop}"
                )
            if not 1 <= self.num_kept <= self.num_frames:
                raise ValueError(
                    f"num_kept must be in [1, num_frames={self.num_frames}], got {self.num_kept}"
                )

    @property
    def prunes(self) -> bool:
        return self.prune_loop is not None


class MixSTEOutput(NamedTuple):
    """Poses and the frames they belong to.

    Attributes:
        poses: ``[B, T, J, 3]`` (unpruned or seq2seq) or ``[B, num_kept, J, 3]`` (seq2frame).
        kept_idx: ``[B, num_kept]`` frames kept by the pruning, ascending; None unpruned.
    """

    poses: Tensor
    kept_idx: Tensor | None


class MixSTE(nn.Module):
    """MixSTE, with HoT's pruning and recovery when the config asks for them.

    State-dict layout: ``joint_embed``, ``spatial_pos [1, J, D]``, ``temporal_pos [1, T, D]``,
    ``spatial_blocks.i`` / ``temporal_blocks.i`` (:class:`tokenprune.TransformerBlock`),
    ``spatial_norm``, ``temporal_norm``, ``slot_pos [1, num_kept, D]`` (seq2seq HoT),
    ``recovery`` (seq2seq HoT), ``head_norm``, ``head``. The official layout converts with
    :func:`tokenprune_models.hot.convert_official_state_dict`.
    """

    def __init__(self, config: MixSTEConfig) -> None:
        super().__init__()
        self.config = c = config
        self.joint_embed = nn.Linear(c.in_channels, c.dim)
        self.spatial_pos = nn.Parameter(torch.zeros(1, c.num_joints, c.dim))
        self.temporal_pos = nn.Parameter(torch.zeros(1, c.num_frames, c.dim))
        rates = torch.linspace(0, c.drop_path_rate, c.depth).tolist()

        def block(rate: float) -> TransformerBlock:
            return TransformerBlock(c.dim, c.num_heads, c.mlp_ratio, qkv_bias=True,
                                    drop_path=rate, norm_eps=1e-6)  # fmt: skip

        self.spatial_blocks = nn.ModuleList(block(r) for r in rates)
        self.temporal_blocks = nn.ModuleList(block(r) for r in rates)
        self.spatial_norm = nn.LayerNorm(c.dim, eps=1e-6)
        self.temporal_norm = nn.LayerNorm(c.dim, eps=1e-6)
        self.cluster = self.slot_pos = self.recovery = None
        if c.prunes:
            self.cluster = TokenPruningCluster(
                c.num_kept, k=2, keep_centre=not c.recover, tie_break=c.tie_break
            )
            if c.recover:
                self.slot_pos = nn.Parameter(torch.zeros(1, c.num_kept, c.dim))
                self.recovery = TokenRecoveringAttention(c.dim, c.num_frames, c.num_heads)
        self.head_norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.out_channels)

    def forward(self, keypoints: Tensor, kept_idx: Tensor | None = None) -> MixSTEOutput:
        """Lift a clip of 2-D keypoints to 3-D.

        Args:
            keypoints: ``[B, T, J, in_channels]``.
            kept_idx: ``[B, num_kept]`` frames to keep instead of the clustering's choice
                (HoT's flip test reuses the unflipped clip's frames); ignored when unpruned.

        Returns:
            :class:`MixSTEOutput`.
        """
        c = self.config
        expected = (c.num_frames, c.num_joints, c.in_channels)
        if not isinstance(keypoints, Tensor):
            raise TypeError(f"keypoints must be a Tensor, got {type(keypoints).__name__}")
        if keypoints.ndim != 4 or tuple(keypoints.shape[1:]) != expected:
            raise ValueError(
                f"keypoints must be [B, T={c.num_frames}, J={c.num_joints}, {c.in_channels}], "
                f"got {tuple(keypoints.shape)}"
            )
        if not keypoints.is_floating_point():
            raise TypeError(f"keypoints must be floating point, got {keypoints.dtype}")
        x = self.joint_embed(keypoints) + self.spatial_pos  # [B, T, J, D]
        index = None
        for loop in range(c.depth):
            if loop == c.prune_loop:
                x, index = self.cluster(x, kept_idx)
                if self.slot_pos is not None:
                    x = x + self.slot_pos[:, :, None]
            x = self._loop(loop, x)
        if self.recovery is not None:
            x = self.recovery(x)
        return MixSTEOutput(self.head(self.head_norm(x)), index)

    def _loop(self, loop: int, x: Tensor) -> Tensor:
        """One spatial and one temporal block: ``[B, t, J, D] -> [B, t, J, D]``."""
        frames = x.shape[1]
        x = self.spatial_norm(self.spatial_blocks[loop](rearrange(x, "b t j d -> (b t) j d")))
        x = rearrange(x, "(b t) j d -> (b j) t d", t=frames)
        if loop == 0:
            x = x + self.temporal_pos
        x = self.temporal_norm(self.temporal_blocks[loop](x))
        return rearrange(x, "(b j) t d -> b t j d", j=self.config.num_joints)

