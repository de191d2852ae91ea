"""Triton kernels for gathered attention: each group attends to buffer rows chosen by index.

The key and value tiles are fetched row by row through the index (``row = index[b, g, j]``),
so the gathered copies that ``gather + attention`` would materialise never exist. In the
backward pass a buffer row may be selected by several groups, or several times by one group;
its ``dk``/``dv`` contributions are summed with float32 atomic adds (the order of those sums, and
so the last bits of the result, may vary between runs on a GPU).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._common import (
    block_config,
    check_launchable,
    dkdv_step,
    dot_precision,
    dq_step,
    finish_softmax,
    mask_argument,
    online_softmax_step,
)
from .group_attention import empty_like_heads_last


@triton.jit
def _gathered_attention_fwd(
    Q, K, V, Index, Mask, Out, Lse,
    sq_b, sq_g, sq_h, sq_n, sq_d,
    sk_b, sk_h, sk_t, sk_d,
    sv_b, sv_h, sv_t, sv_d,
    si_b, si_g, si_j,
    sm_b, sm_g, sm_j,
    so_b, so_g, so_h, so_n, so_d,
    G, H, NQ, NK, D,
    scale,
    HAS_MASK: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid = tl.program_id(1)
    h = pid % H
    g = (pid // H) % G
    b = (pid // (H * G)).to(tl.int64)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < NQ
    d_ok = offs_d < D
    q = tl.load(
        Q + b * sq_b + g * sq_g + h * sq_h + offs_m[:, None] * sq_n + offs_d[None, :] * sq_d,
        mask=row_ok[:, None] & d_ok[None, :],
        other=0.0,
    )
    k_head = K + b * sk_b + h * sk_h
    v_head = V + b * sv_b + h * sv_h
    index_group = Index + b * si_b + g * si_g
    mask_group = Mask + b * sm_b + g * sm_g
    qk_scale = scale * 1.4426950408889634
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start in range(0, NK, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        key_ok = cols < NK
        rows = tl.load(index_group + cols * si_j, mask=key_ok, other=0)
        visible = key_ok
        if HAS_MASK:
            visible = visible & (tl.load(mask_group + cols * sm_j, mask=key_ok, other=0) != 0)
        acc, m_i, l_i, _ = online_softmax_step(
            q, acc, m_i, l_i,
            k_head + rows[None, :] * sk_t + offs_d[:, None] * sk_d,
            v_head + rows[:, None] * sv_t + offs_d[None, :] * sv_d,
            visible, d_ok, qk_scale, PRECISION,
        )  # fmt: skip
    out, lse = finish_softmax(acc, m_i, l_i)
    tl.store(
        Out + b * so_b + g * so_g + h * so_h + offs_m[:, None] * so_n + offs_d[None, :] * so_d,
        out.to(Out.dtype.element_ty),
        mask=row_ok[:, None] & d_ok[None, :],
    )
    tl.store(Lse + ((b * G + g) * H + h) * NQ + offs_m, lse, mask=row_ok)


@triton.jit
def _gathered_attention_bwd_dq(
    Q, K, V, Index, Mask, DO, Lse, Delta, DQ,
    sq_b, sq_g, sq_h, sq_n, sq_d,
    sk_b, sk_h, sk_t, sk_d,
    sv_b, sv_h, sv_t, sv_d,
    si_b, si_g, si_j,
    sm_b, sm_g, sm_j,
    sdo_b, sdo_g, sdo_h, sdo_n, sdo_d,
    sdq_b, sdq_g, sdq_h, sdq_n, sdq_d,
    G, H, NQ, NK, D,
    scale,
    HAS_MASK: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid = tl.program_id(1)
    h = pid % H
    g = (pid // H) % G
    b = (pid // (H * G)).to(tl.int64)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < NQ
    d_ok = offs_d < D
    tile_ok = row_ok[:, None] & d_ok[None, :]
    q = tl.load(
        Q + b * sq_b + g * sq_g + h * sq_h + offs_m[:, None] * sq_n + offs_d[None, :] * sq_d,
        mask=tile_ok,
        other=0.0,
    )
    do = tl.load(
        DO + b * sdo_b + g * sdo_g + h * sdo_h + offs_m[:, None] * sdo_n + offs_d[None, :] * sdo_d,
        mask=tile_ok,
        other=0.0,
    )
    row_stats = ((b * G + g) * H + h) * NQ + offs_m
    lse = tl.load(Lse + row_stats, mask=row_ok, other=float("-inf"))
    lse2 = tl.where(lse == float("-inf"), float("inf"), lse * 1.4426950408889634)
    delta = tl.load(Delta + row_stats, mask=row_ok, other=0.0)
    k_head = K + b * sk_b + h * sk_h
    v_head = V + b * sv_b + h * sv_h
    index_group = Index + b * si_b + g * si_g
    mask_group = Mask + b * sm_b + g * sm_g
    qk_scale = scale * 1.4426950408889634
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start in range(0, NK, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        key_ok = cols < NK
        rows = tl.load(index_group + cols * si_j, mask=key_ok, other=0)
        visible = key_ok
        if HAS_MASK:
            visible = visible & (tl.load(mask_group + cols * sm_j, mask=key_ok, other=0) != 0)
        dq = dq_step(
            q, do, lse2, delta, dq,
            k_head + rows[None, :] * sk_t + offs_d[:, None] * sk_d,
            v_head + rows[None, :] * sv_t + offs_d[:, None] * sv_d,
            visible, d_ok, qk_scale, PRECISION,
        )  # fmt: skip
    tl.store(
        DQ + b * sdq_b + g * sdq_g + h * sdq_h + offs_m[:, None] * sdq_n + offs_d[None, :] * sdq_d,
        (dq * scale).to(DQ.dtype.element_ty),
        mask=tile_ok,
    )


@triton.jit
def _gathered_attention_bwd_dkdv(
    Q, K, V, Index, Mask, DO, Lse, Delta, DK, DV,
    sq_b, sq_g, sq_h, sq_n, sq_d,
    sk_b, sk_h, sk_t, sk_d,
    sv_b, sv_h, sv_t, sv_d,
    si_b, si_g, si_j,
    sm_b, sm_g, sm_j,
    sdo_b, sdo_g, sdo_h, sdo_n, sdo_d,
    sdk_b, sdk_h, sdk_t, sdk_d,
    G, H, NQ, NK, D,
    scale,
    HAS_MASK: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    pid_n = tl.program_id(0)
    pid = tl.program_id(1)
    h = pid % H
    g = (pid // H) % G
    b = (pid // (H * G)).to(tl.int64)

    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    key_ok = cols < NK
    d_ok = offs_d < D
    rows = tl.load(Index + b * si_b + g * si_g + cols * si_j, mask=key_ok, other=0)
    visible = key_ok
    if HAS_MASK:
        flag = tl.load(Mask + b * sm_b + g * sm_g + cols * sm_j, mask=key_ok, other=0)
        visible = visible & (flag != 0)
    # masked entries are not read (nor written below): whatever they hold changes nothing
    update = visible[:, None] & d_ok[None, :]
    k = tl.load(
        K + b * sk_b + h * sk_h + rows[:, None] * sk_t + offs_d[None, :] * sk_d,
        mask=update,
        other=0.0,
    )
    v = tl.load(
        V + b * sv_b + h * sv_h + rows[:, None] * sv_t + offs_d[None, :] * sv_d,
        mask=update,
        other=0.0,
    )
    qk_scale = scale * 1.4426950408889634
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    q_group = Q + b * sq_b + g * sq_g + h * sq_h
    do_group = DO + b * sdo_b + g * sdo_g + h * sdo_h
    stats_group = ((b * G + g) * H + h) * NQ
    for start_m in range(0, NQ, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        dk, dv = dkdv_step(
            k, v, dk, dv,
            q_group + offs_m[:, None] * sq_n + offs_d[None, :] * sq_d,
            do_group + offs_m[:, None] * sdo_n + offs_d[None, :] * sdo_d,
            Lse + stats_group + offs_m,
            Delta + stats_group + offs_m,
            offs_m < NQ, visible, d_ok, qk_scale, PRECISION,
        )  # fmt: skip
    # Several groups (or one group several times) may select the same buffer row: add.
    buffer_rows = b * sdk_b + h * sdk_h + rows[:, None] * sdk_t + offs_d[None, :] * sdk_d
    tl.atomic_add(DK + buffer_rows, dk * scale, mask=update)
    tl.atomic_add(DV + buffer_rows, dv, mask=update)


def gathered_attention_forward(
    q: Tensor, k: Tensor, v: Tensor, index: Tensor, key_mask: Tensor | None, scale: float
) -> tuple[Tensor, Tensor]:
    """Launch the forward kernel; returns ``(out [B, G, H, Nq, D], lse [B, G, H, Nq])``."""
    check_launchable(q, k, v)
    batch, groups, heads, num_queries, head_dim = q.shape
    num_keys = index.shape[-1]
    out = empty_like_heads_last(q)
    lse = torch.empty((batch, groups, heads, num_queries), dtype=torch.float32, device=q.device)
    if out.numel() == 0:
        lse.fill_(float("-inf"))
        return out, lse
    flags, mask_strides = mask_argument(key_mask, index)
    config = block_config(num_queries, num_keys, head_dim)
    grid = (triton.cdiv(num_queries, config.block_m), batch * groups * heads)
    _gathered_attention_fwd[grid](
        q, k, v, index, flags, out, lse,
        *q.stride(), *k.stride(), *v.stride(), *index.stride(), *mask_strides, *out.stride(),
        groups, heads, num_queries, num_keys, head_dim,
        scale,
        HAS_MASK=key_mask is not None,
        BLOCK_M=config.block_m,
        BLOCK_N=config.block_n,
        BLOCK_D=config.block_d,
        PRECISION=dot_precision(q.dtype),
        num_warps=config.num_warps,
        num_stages=config.num_stages,
    )  # fmt: skip
    return out, lse


def gathered_attention_backward(
    grad_out: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    index: Tensor,
    key_mask: Tensor | None,
    out: Tensor,
    lse: Tensor,
    scale: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Launch the backward kernels; returns ``(dq, dk, dv)`` shaped like ``q, k, v``. Rows
    without a visible key pass no gradient back."""
    check_launchable(q, k, v, grad_out)
    # see group_attention_backward: a row without keys passes no gradient back, NaN included
    grad_out = grad_out.masked_fill((lse == float("-inf"))[..., None], 0.0)
    grad_out = grad_out.to(q.dtype)  # tl.dot needs operands of one dtype
    batch, groups, heads, num_queries, head_dim = q.shape
    num_keys = index.shape[-1]
    dq = empty_like_heads_last(q)
    dk = torch.zeros(k.shape, dtype=torch.float32, device=k.device)
    dv = torch.zeros(v.shape, dtype=torch.float32, device=v.device)
    if q.numel() == 0 or num_keys == 0:
        dq.zero_()
        return dq, dk.to(k.dtype), dv.to(v.dtype)
    delta = (grad_out.float() * out.float()).sum(dim=-1).contiguous()
    lse = lse.contiguous()
    flags, mask_strides = mask_argument(key_mask, index)
    config = block_config(num_queries, num_keys, head_dim)
    common = dict(
        HAS_MASK=key_mask is not None,
        BLOCK_M=config.block_m,
        BLOCK_N=config.block_n,
        BLOCK_D=config.block_d,
        PRECISION=dot_precision(q.dtype),
        num_warps=config.num_warps,
        num_stages=config.num_stages,
    )
    rows = batch * groups * heads
    _gathered_attention_bwd_dq[(triton.cdiv(num_queries, config.block_m), rows)](
        q, k, v, index, flags, grad_out, lse, delta, dq,
        *q.stride(), *k.stride(), *v.stride(), *index.stride(), *mask_strides,
        *grad_out.stride(), *dq.stride(),
        groups, heads, num_queries, num_keys, head_dim,
        scale,
        **common,
    )  # fmt: skip
    _gathered_attention_bwd_dkdv[(triton.cdiv(num_keys, config.block_n), rows)](
        q, k, v, index, flags, grad_out, lse, delta, dk, dv,
        *q.stride(), *k.stride(), *v.stride(), *index.stride(), *mask_strides,
        *grad_out.stride(), *dk.stride(),
        groups, heads, num_queries, num_keys, head_dim,
        scale,
        **common,
    )  # fmt: skip
    return dq, dk.to(k.dtype), dv.to(v.dtype)
