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
    check_launchable,
    dkdv_step,
    dot_precision,
    dq_step,
    finish_softmax,
    head_dim_mask,
    launch,
    mask_argument,
    online_softmax_step,
    plan_launch,
    program_coords,
    widen,
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
    WIDE: tl.constexpr,
    ALIGN: tl.constexpr,
):  # fmt: skip
    pid_m, b, g, h = program_coords(tl.cdiv(NQ, BLOCK_M), G, H, WIDE)
    offs_m = widen(pid_m * BLOCK_M + tl.arange(0, BLOCK_M), WIDE)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < NQ
    d_ok = head_dim_mask(offs_d, D, ALIGN)
    q_rows = tl.multiple_of(b * sq_b + g * sq_g + h * sq_h + offs_m * sq_n, ALIGN)
    q = tl.load(
        Q + q_rows[:, None] + offs_d[None, :] * sq_d,
        mask=row_ok[:, None] & d_ok[None, :],
        other=0.0,
    )
    k_head = K + tl.multiple_of(b * sk_b + h * sk_h, ALIGN)
    v_head = V + tl.multiple_of(b * sv_b + h * sv_h, ALIGN)
    index_group = Index + b * si_b + g * si_g
    mask_group = Mask + b * sm_b + g * sm_g
    qk_scale = scale * 1.4426950408889634
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start in range(0, NK, BLOCK_N):
        cols = widen(start + tl.arange(0, BLOCK_N), WIDE)
        key_ok = cols < NK
        rows = tl.load(index_group + cols * si_j, mask=key_ok, other=0)
        visible = key_ok
        if HAS_MASK:
            visible = visible & (tl.load(mask_group + cols * sm_j, mask=key_ok, other=0) != 0)
        k_rows = tl.multiple_of(rows * sk_t, ALIGN)
        v_rows = tl.multiple_of(rows * sv_t, ALIGN)
        acc, m_i, l_i, _ = online_softmax_step(
            q, acc, m_i, l_i,
            k_head + k_rows[None, :] + offs_d[:, None] * sk_d,
            v_head + v_rows[:, None] + offs_d[None, :] * sv_d,
            visible, d_ok, qk_scale, PRECISION,
        )  # fmt: skip
    out, lse = finish_softmax(acc, m_i, l_i)
    out_rows = tl.multiple_of(b * so_b + g * so_g + h * so_h + offs_m * so_n, ALIGN)
    tl.store(
        Out + out_rows[:, None] + offs_d[None, :] * so_d,
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
    WIDE: tl.constexpr,
    ALIGN: tl.constexpr,
):  # fmt: skip
    pid_m, b, g, h = program_coords(tl.cdiv(NQ, BLOCK_M), G, H, WIDE)
    offs_m = widen(pid_m * BLOCK_M + tl.arange(0, BLOCK_M), WIDE)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < NQ
    d_ok = head_dim_mask(offs_d, D, ALIGN)
    tile_ok = row_ok[:, None] & d_ok[None, :]
    q_rows = tl.multiple_of(b * sq_b + g * sq_g + h * sq_h + offs_m * sq_n, ALIGN)
    do_rows = tl.multiple_of(b * sdo_b + g * sdo_g + h * sdo_h + offs_m * sdo_n, ALIGN)
    q = tl.load(Q + q_rows[:, None] + offs_d[None, :] * sq_d, mask=tile_ok, other=0.0)
    do = tl.load(DO + do_rows[:, None] + offs_d[None, :] * sdo_d, mask=tile_ok, other=0.0)
    row_stats = ((b * G + g) * H + h) * NQ + offs_m
    lse = tl.load(Lse + row_stats, mask=row_ok, other=float("-inf"))
    lse2 = tl.where(lse == float("-inf"), float("inf"), lse * 1.4426950408889634)
    delta = tl.load(Delta + row_stats, mask=row_ok, other=0.0)
    k_head = K + tl.multiple_of(b * sk_b + h * sk_h, ALIGN)
    v_head = V + tl.multiple_of(b * sv_b + h * sv_h, ALIGN)
    index_group = Index + b * si_b + g * si_g
    mask_group = Mask + b * sm_b + g * sm_g
    qk_scale = scale * 1.4426950408889634
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start in range(0, NK, BLOCK_N):
        cols = widen(start + tl.arange(0, BLOCK_N), WIDE)
        key_ok = cols < NK
        rows = tl.load(index_group + cols * si_j, mask=key_ok, other=0)
        visible = key_ok
        if HAS_MASK:
            visible = visible & (tl.load(mask_group + cols * sm_j, mask=key_ok, other=0) != 0)
        k_rows = tl.multiple_of(rows * sk_t, ALIGN)
        v_rows = tl.multiple_of(rows * sv_t, ALIGN)
        dq = dq_step(
            q, do, lse2, delta, dq,
            k_head + k_rows[None, :] + offs_d[:, None] * sk_d,
            v_head + v_rows[None, :] + offs_d[:, None] * sv_d,
            visible, d_ok, qk_scale, PRECISION,
        )  # fmt: skip
    dq_rows = tl.multiple_of(b * sdq_b + g * sdq_g + h * sdq_h + offs_m * sdq_n, ALIGN)
    tl.store(
        DQ + dq_rows[:, None] + offs_d[None, :] * sdq_d,
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
    sdk_b, sdk_g, sdk_h, sdk_t, sdk_d,
    G, H, NQ, NK, D,
    scale,
    HAS_MASK: tl.constexpr,
    PER_SLOT: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
    WIDE: tl.constexpr,
    ALIGN: tl.constexpr,
):  # fmt: skip
    pid_n, b, g, h = program_coords(tl.cdiv(NK, BLOCK_N), G, H, WIDE)
    cols = widen(pid_n * BLOCK_N + tl.arange(0, BLOCK_N), WIDE)
    offs_d = tl.arange(0, BLOCK_D)
    key_ok = cols < NK
    d_ok = head_dim_mask(offs_d, D, ALIGN)
    rows = tl.load(Index + b * si_b + g * si_g + cols * si_j, mask=key_ok, other=0)
    visible = key_ok
    if HAS_MASK:
        flag = tl.load(Mask + b * sm_b + g * sm_g + cols * sm_j, mask=key_ok, other=0)
        visible = visible & (flag != 0)
    # masked entries are not read (nor written below): whatever they hold changes nothing
    update = visible[:, None] & d_ok[None, :]
    k_rows = tl.multiple_of(b * sk_b + h * sk_h + rows * sk_t, ALIGN)
    v_rows = tl.multiple_of(b * sv_b + h * sv_h + rows * sv_t, ALIGN)
    k = tl.load(K + k_rows[:, None] + offs_d[None, :] * sk_d, mask=update, other=0.0)
    v = tl.load(V + v_rows[:, None] + offs_d[None, :] * sv_d, mask=update, other=0.0)
    qk_scale = scale * 1.4426950408889634
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    q_group = tl.multiple_of(b * sq_b + g * sq_g + h * sq_h, ALIGN)
    do_group = tl.multiple_of(b * sdo_b + g * sdo_g + h * sdo_h, ALIGN)
    stats_group = ((b * G + g) * H + h) * NQ
    for start_m in range(0, NQ, BLOCK_M):
        offs_m = widen(start_m + tl.arange(0, BLOCK_M), WIDE)
        q_rows = tl.multiple_of(q_group + offs_m * sq_n, ALIGN)
        do_rows = tl.multiple_of(do_group + offs_m * sdo_n, ALIGN)
        dk, dv = dkdv_step(
            k, v, dk, dv,
            Q + q_rows[:, None] + offs_d[None, :] * sq_d,
            DO + do_rows[:, None] + offs_d[None, :] * sdo_d,
            Lse + stats_group + offs_m,
            Delta + stats_group + offs_m,
            offs_m < NQ, visible, d_ok, qk_scale, PRECISION,
        )  # fmt: skip
    if PER_SLOT:
        # DK, DV are [B, G, H, Nk, D]: one slot per selected key, written by this program
        # alone; the launcher adds the slots into the buffer rows in a fixed order
        slots = b * sdk_b + g * sdk_g + h * sdk_h + cols[:, None] * sdk_t + offs_d[None, :] * sdk_d
        tl.store(DK + slots, dk * scale, mask=update)
        tl.store(DV + slots, dv, mask=update)
    else:
        # several groups (or one group several times) may select the same buffer row: add
        buffer_rows = b * sdk_b + h * sdk_h + rows[:, None] * sdk_t + offs_d[None, :] * sdk_d
        tl.atomic_add(DK + buffer_rows, dk * scale, mask=update)
        tl.atomic_add(DV + buffer_rows, dv, mask=update)


def gathered_attention_forward(
    q: Tensor, k: Tensor, v: Tensor, index: Tensor, key_mask: Tensor | None, scale: float
) -> tuple[Tensor, Tensor]:
    """Launch the forward kernel; returns ``(out [B, G, H, Nq, D], lse [B, G, H, Nq])``."""
    check_launchable(q, k, v)
    index = index.long()  # row * stride in int64 when the launch needs wide offsets
    batch, groups, heads, num_queries, head_dim = q.shape
    num_keys = index.shape[-1]
    out = empty_like_heads_last(q)
    lse = torch.empty((batch, groups, heads, num_queries), dtype=torch.float32, device=q.device)
    if out.numel() == 0:
        lse.fill_(float("-inf"))
        return out, lse
    flags, mask_strides = mask_argument(key_mask, index)
    plan = plan_launch(
        "fwd", batch * groups * heads, num_queries, num_keys, head_dim,
        offset_tensors=(q, k, v, index, flags, out, lse),
        row_tensors=(q, k, v, out),
    )  # fmt: skip
    launch(
        _gathered_attention_fwd, plan, q.device,
        q, k, v, index, flags, out, lse,
        *q.stride(), *k.stride(), *v.stride(), *index.stride(), *mask_strides, *out.stride(),
        groups, heads, num_queries, num_keys, head_dim,
        scale,
        HAS_MASK=key_mask is not None,
        PRECISION=dot_precision(q.dtype),
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
    index = index.long()  # row * stride in int64 when the launch needs wide offsets
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
    rows = batch * groups * heads
    offset_tensors = (q, k, v, index, flags, grad_out, lse, delta, dq, dk, dv)
    row_tensors = (q, k, v, grad_out, dq, dk, dv)
    flags_and_precision = dict(HAS_MASK=key_mask is not None, PRECISION=dot_precision(q.dtype))
    plan = plan_launch("bwd_dq", rows, num_queries, num_keys, head_dim, offset_tensors, row_tensors)
    launch(
        _gathered_attention_bwd_dq, plan, q.device,
        q, k, v, index, flags, grad_out, lse, delta, dq,
        *q.stride(), *k.stride(), *v.stride(), *index.stride(), *mask_strides,
        *grad_out.stride(), *dq.stride(),
        groups, heads, num_queries, num_keys, head_dim,
        scale,
        **flags_and_precision,
    )  # fmt: skip
    # fp32 atomics add in whatever order the programs run; deterministic mode writes one slot
    # per selected key instead and adds them with index_add_ (deterministic in that mode)
    per_slot = torch.are_deterministic_algorithms_enabled()
    if per_slot:
        slots = (batch, groups, heads, num_keys, head_dim)
        dk_out = torch.zeros(slots, dtype=torch.float32, device=k.device)
        dv_out = torch.zeros(slots, dtype=torch.float32, device=v.device)
        out_strides = dk_out.stride()
    else:
        dk_out, dv_out = dk, dv
        out_strides = (dk.stride(0), 0, *dk.stride()[1:])
    plan = plan_launch(
        "bwd_dkdv", rows, num_queries, num_keys, head_dim,
        (*offset_tensors, dk_out, dv_out), (*row_tensors, dk_out, dv_out),
    )  # fmt: skip
    launch(
        _gathered_attention_bwd_dkdv, plan, q.device,
        q, k, v, index, flags, grad_out, lse, delta, dk_out, dv_out,
        *q.stride(), *k.stride(), *v.stride(), *index.stride(), *mask_strides,
        *grad_out.stride(), *out_strides,
        groups, heads, num_queries, num_keys, head_dim,
        scale,
        PER_SLOT=per_slot,
        **flags_and_precision,
    )  # fmt: skip
    if per_slot:
        _add_slots(dk, dk_out, index)
        _add_slots(dv, dv_out, index)
    return dq, dk.to(k.dtype), dv.to(v.dtype)


def _add_slots(buffer: Tensor, slots: Tensor, index: Tensor) -> None:
    """``buffer[b, h, index[b, g, j]] += slots[b, g, h, j]`` for every ``(b, g, h, j)``, with
    ``index_add_`` (deterministic under ``torch.use_deterministic_algorithms``).

    Shapes: ``buffer [B, H, T, D]`` (contiguous), ``slots [B, G, H, Nk, D]``,
    ``index [B, G, Nk]``.
    """
    batch, heads, tokens, head_dim = buffer.shape
    b = torch.arange(batch, device=index.device)[:, None, None, None]
    h = torch.arange(heads, device=index.device)[None, None, :, None]
    flat = (b * heads + h) * tokens + index[:, :, None, :]  # [B, G, H, Nk]
    buffer.view(-1, head_dim).index_add_(0, flat.reshape(-1), slots.reshape(-1, head_dim))
