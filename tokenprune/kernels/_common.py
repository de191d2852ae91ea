"""Pieces shared by the attention kernels: launch configuration and the inner-loop steps.

Conventions of every kernel here:

* tensors are addressed through explicit strides, so views (such as q, k and v sliced out of a
  fused qkv projection) are read in place;
* ``head_dim`` is padded to a power of two (at least 16) *in registers*, with masked loads;
* accumulation is float32; the online softmax works in base 2 on ``logits * log2(e)``;
* a key that is masked out contributes nothing; a query row without any visible key outputs
  zeros and has log-sum-exp ``-inf``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

#: Read once, when this module is imported: Triton reads ``TRITON_INTERPRET`` when kernels are
#: defined, so later changes of the variable have no effect on them.
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"

LOG2E = 1.4426950408889634


@dataclass(frozen=True)
class BlockConfig:
    """Tile sizes and launch options of one kernel launch."""

    block_m: int
    block_n: int
    block_d: int
    num_warps: int
    num_stages: int


def block_config(num_queries: int, num_keys: int, head_dim: int) -> BlockConfig:
    """Tile sizes for ``num_queries`` query rows against ``num_keys`` keys.

    Under the interpreter the tiles are 16 x 16 (the smallest ``tl.dot`` shape on a GPU), which
    keeps test shapes small while still crossing block boundaries. On a GPU the query tile
    grows with the sequence; pose-transformer groups (25 to 280 tokens) use 32- or 64-row tiles.
    """
    block_d = max(16, triton.next_power_of_2(head_dim))
    if INTERPRETED:
        return BlockConfig(16, 16, block_d, 1, 1)
    if num_queries <= 16:
        block_m = 16
    elif num_queries <= 32:
        block_m = 32
    elif num_queries <= 1024:
        block_m = 64
    else:
        block_m = 128
    block_n = 32 if num_keys <= 32 else 64
    num_warps = 8 if block_m == 128 and block_d >= 128 else 4
    num_stages = 2 if block_d >= 128 else 3
    return BlockConfig(block_m, block_n, block_d, num_warps, num_stages)


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot`` input precision: exact IEEE for float32 inputs (the GPU default, TF32, would
    lose about three decimal digits), the native tensor-core path for half precision."""
    return "ieee" if dtype == torch.float32 else "tf32"


def check_launchable(*tensors: torch.Tensor) -> None:
    """Raise a clear error instead of Triton's when a kernel cannot run on these tensors."""
    device = tensors[0].device
    if device.type == "cpu" and not INTERPRETED:
        raise RuntimeError(
            "the Triton kernels run on CPU tensors only in Triton's interpreter: set "
            "TRITON_INTERPRET=1 before tokenprune.kernels is imported"
        )
    if device.type == "cuda" and INTERPRETED:
        raise RuntimeError(
            "tokenprune.kernels was imported with TRITON_INTERPRET=1 (CPU interpreter); "
            "CUDA tensors need it unset"
        )
    if INTERPRETED and any(t.dtype == torch.bfloat16 for t in tensors):
        raise TypeError(
            "Triton's interpreter computes bfloat16 incorrectly; use float32 or float16 on the CPU"
        )


def mask_argument(key_mask: torch.Tensor | None, fallback: torch.Tensor):
    """A key mask as the kernels read it (one byte per key) with its strides; without a mask,
    any tensor stands in (the kernels never read it) with zero strides."""
    if key_mask is None:
        return fallback, (0,) * 3
    flags = key_mask.view(torch.uint8)
    return flags, flags.stride()


@triton.jit
def online_softmax_step(
    q,
    acc,
    m_i,
    l_i,
    k_ptrs_t,
    v_ptrs,
    visible,
    d_ok,
    qk_scale,
    PRECISION: tl.constexpr,
):
    """Attend one query tile to one key tile and fold the result into the running softmax.

    Args (tiles): ``q [M, Dp]``; ``k_ptrs_t [Dp, N]`` (keys transposed); ``v_ptrs [N, Dp]``;
    ``visible [N]`` keys that exist and may be attended to (the others are not read, so
    whatever a masked slot holds, NaN included, changes nothing); ``d_ok [Dp]`` real head-dim
    columns. Returns ``(acc, m_i, l_i, s)`` where ``s [M, N]``
    are the unscaled logits ``q k^T`` with invisible keys at ``-inf``.
    """
    k_t = tl.load(k_ptrs_t, mask=d_ok[:, None] & visible[None, :], other=0.0)
    s = tl.dot(q, k_t, input_precision=PRECISION)
    s = tl.where(visible[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1) * qk_scale)
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    p = tl.math.exp2(s * qk_scale - m_safe[:, None])
    alpha = tl.math.exp2(m_i - m_safe)
    l_i = l_i * alpha + tl.sum(p, 1)
    v = tl.load(v_ptrs, mask=visible[:, None] & d_ok[None, :], other=0.0)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return acc, m_new, l_i, s


@triton.jit
def finish_softmax(acc, m_i, l_i):
    """Normalise the accumulator; returns ``(out [M, Dp], lse [M])`` with the natural-log
    log-sum-exp, ``-inf`` (and a zero output row) where no key was visible."""
    empty = l_i == 0.0
    l_safe = tl.where(empty, 1.0, l_i)
    out = acc / l_safe[:, None]
    lse = tl.where(empty, float("-inf"), (m_i + tl.math.log2(l_safe)) / 1.4426950408889634)
    return out, lse


@triton.jit
def dq_step(
    q,
    do,
    lse2,
    delta,
    dq,
    k_ptrs_t,
    v_ptrs_t,
    visible,
    d_ok,
    qk_scale,
    PRECISION: tl.constexpr,
):
    """Accumulate ``dq`` of a query tile over one key tile (flash-attention-2 backward).

    ``lse2`` is the row log-sum-exp in base 2 (``+inf`` for rows without keys, so their
    probabilities are zero); ``delta`` is ``rowsum(dO * O)`` minus the gradient of the returned
    log-sum-exp. The caller multiplies the final ``dq`` by the logit scale.
    """
    k_t = tl.load(k_ptrs_t, mask=d_ok[:, None] & visible[None, :], other=0.0)
    v_t = tl.load(v_ptrs_t, mask=d_ok[:, None] & visible[None, :], other=0.0)
    s = tl.dot(q, k_t, input_precision=PRECISION)
    p = tl.math.exp2(s * qk_scale - lse2[:, None])
    p = tl.where(visible[None, :], p, 0.0)
    dp = tl.dot(do, v_t, input_precision=PRECISION)
    ds = p * (dp - delta[:, None])
    return dq + tl.dot(ds.to(k_t.dtype), tl.trans(k_t), input_precision=PRECISION)


@triton.jit
def dkdv_step(
    k,
    v,
    dk,
    dv,
    q_ptrs,
    do_ptrs,
    lse_ptrs,
    delta_ptrs,
    row_ok,
    visible,
    d_ok,
    qk_scale,
    PRECISION: tl.constexpr,
):
    """Accumulate ``dk`` and ``dv`` of a key tile over one query tile.

    ``k``, ``v``: ``[N, Dp]`` tiles; ``q_ptrs``/``do_ptrs`` ``[M, Dp]``; ``lse_ptrs``/
    ``delta_ptrs`` ``[M]``; ``row_ok [M]`` rows that exist; ``visible [N]`` keys these queries
    may attend to. The caller multiplies the final ``dk`` by the logit scale.
    """
    q = tl.load(q_ptrs, mask=row_ok[:, None] & d_ok[None, :], other=0.0)
    do = tl.load(do_ptrs, mask=row_ok[:, None] & d_ok[None, :], other=0.0)
    lse = tl.load(lse_ptrs, mask=row_ok, other=float("-inf"))
    lse2 = tl.where(lse == float("-inf"), float("inf"), lse * 1.4426950408889634)
    delta = tl.load(delta_ptrs, mask=row_ok, other=0.0)
    s_t = tl.dot(k, tl.trans(q), input_precision=PRECISION)  # [N, M]
    p_t = tl.math.exp2(s_t * qk_scale - lse2[None, :])
    p_t = tl.where(visible[:, None] & row_ok[None, :], p_t, 0.0)
    dv += tl.dot(p_t.to(do.dtype), do, input_precision=PRECISION)
    dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
    ds_t = p_t * (dp_t - delta[None, :])
    dk += tl.dot(ds_t.to(q.dtype), q, input_precision=PRECISION)
    return dk, dv
