"""Triton kernels for gathered attention: each group attends to buffer rows chosen by index.

The key and value tiles are fetched row by row through the index (``row = index[b, g, j]``),
so the gathered copies that ``gather + attention`` would materialise never exist. In the
backward pass a buffer row may be selected by several groups, or several times by one group;
its ``dk``/``dv`` contributions are summed with float32 atomic adds (the order of those sums, and
so the last bits of the result, may vary between runs on a GPU), or, under
``torch.use_deterministic_algorithms(True)``, written one slot per selected key and added in a
fixed order. As in :mod:`.group_attention`, the dq kernel computes ``delta = rowsum(dO * O)``
for the dk/dv kernel, and the arguments are few: q and dO pass their strides, k and v share
one set, everything else (index, key mask, outputs, gradients) has a layout the kernels derive
from the sizes.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .common import (
    check_launchable,
    dkdv_over_queries,
    dot_precision,
    dq_prologue,
    dq_step,
    finish_softmax,
    head_dim_mask,
    launch,
    mask_argument,
    one_layout,
    online_softmax_step,
    plan_launch,
    program_coords,
    unit_last_stride,
    widen,
)
from .group_attention import empty_like_heads_last, heads_last


@triton.jit
def _gathered_attention_fwd(
    Q, K, V, Index, Mask, Out, Lse,
    sq_b, sq_g, sq_h, sq_n,
    skv_b, skv_h, skv_t,
    G, H, NQ, NK, D,
    scale,
    WORK,
    HAS_MASK: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
    WIDE: tl.constexpr,
    ALIGN: tl.constexpr,
):  # fmt: skip
    # one program per (tile, batch, group, head), or fewer looping over them (a persistent
    # grid, see persistent_grid)
    for work in range(tl.program_id(0), WORK, tl.num_programs(0)):
        pid_m, b, g, h = program_coords(work, tl.cdiv(NQ, BLOCK_M), G, H, WIDE)
        offs_m = widen(pid_m * BLOCK_M + tl.arange(0, BLOCK_M), WIDE)
        offs_d = tl.arange(0, BLOCK_D)
        row_ok = offs_m < NQ
        d_ok = head_dim_mask(offs_d, D, ALIGN)
        q_rows = tl.multiple_of(b * sq_b + g * sq_g + h * sq_h + offs_m * sq_n, ALIGN)
        q = tl.load(Q + q_rows[:, None] + offs_d[None, :], mask=row_ok[:, None] & d_ok[None, :],
                    other=0.0)  # fmt: skip
        kv_head = tl.multiple_of(b * skv_b + h * skv_h, ALIGN)
        selection = (b * G + g) * NK  # index and key mask: contiguous [B, G, Nk]
        qk_scale = scale * 1.4426950408889634
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        for start in range(0, NK, BLOCK_N):
            cols = widen(start + tl.arange(0, BLOCK_N), WIDE)
            key_ok = cols < NK
            rows = tl.load(Index + selection + cols, mask=key_ok, other=0)
            visible = key_ok
            if HAS_MASK:
                visible = visible & (tl.load(Mask + selection + cols, mask=key_ok, other=0) != 0)
            kv_rows = tl.multiple_of(kv_head + rows * skv_t, ALIGN)
            acc, m_i, l_i, _ = online_softmax_step(
                q, acc, m_i, l_i,
                K + kv_rows[None, :] + offs_d[:, None],
                V + kv_rows[:, None] + offs_d[None, :],
                visible, d_ok, qk_scale, PRECISION,
            )  # fmt: skip
        out, lse = finish_softmax(acc, m_i, l_i)
        out_rows = tl.multiple_of(((b * G + g) * NQ + offs_m) * (H * D) + h * D, ALIGN)
        tl.store(
            Out + out_rows[:, None] + offs_d[None, :],
            out.to(Out.dtype.element_ty),
            mask=row_ok[:, None] & d_ok[None, :],
        )
        tl.store(Lse + ((b * G + g) * H + h) * NQ + offs_m, lse, mask=row_ok)


@triton.jit
def _gathered_attention_bwd_dq(
    Q, K, V, Index, Mask, DO, Out, Lse, Delta, DQ,
    sq_b, sq_g, sq_h, sq_n,
    skv_b, skv_h, skv_t,
    sdo_b, sdo_g, sdo_h, sdo_n,
    G, H, NQ, NK, D,
    scale,
    WORK,
    HAS_MASK: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
    WIDE: tl.constexpr,
    ALIGN: tl.constexpr,
):  # fmt: skip
    # one program per (tile, batch, group, head), or fewer looping over them (a persistent
    # grid, see persistent_grid)
    for work in range(tl.program_id(0), WORK, tl.num_programs(0)):
        pid_m, b, g, h = program_coords(work, tl.cdiv(NQ, BLOCK_M), G, H, WIDE)
        offs_m = widen(pid_m * BLOCK_M + tl.arange(0, BLOCK_M), WIDE)
        offs_d = tl.arange(0, BLOCK_D)
        row_ok = offs_m < NQ
        d_ok = head_dim_mask(offs_d, D, ALIGN)
        tile_ok = row_ok[:, None] & d_ok[None, :]
        q_rows = tl.multiple_of(b * sq_b + g * sq_g + h * sq_h + offs_m * sq_n, ALIGN)
        do_rows = tl.multiple_of(b * sdo_b + g * sdo_g + h * sdo_h + offs_m * sdo_n, ALIGN)
        own_rows = tl.multiple_of(((b * G + g) * NQ + offs_m) * (H * D) + h * D, ALIGN)
        row_stats = ((b * G + g) * H + h) * NQ + offs_m
        q, do, lse2, delta = dq_prologue(
            Q, DO, Out, Lse, Lse, Delta, q_rows, do_rows, own_rows, row_stats,
            row_ok, tile_ok, offs_d, False,
        )  # fmt: skip
        kv_head = tl.multiple_of(b * skv_b + h * skv_h, ALIGN)
        selection = (b * G + g) * NK
        qk_scale = scale * 1.4426950408889634
        dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        for start in range(0, NK, BLOCK_N):
            cols = widen(start + tl.arange(0, BLOCK_N), WIDE)
            key_ok = cols < NK
            rows = tl.load(Index + selection + cols, mask=key_ok, other=0)
            visible = key_ok
            if HAS_MASK:
                visible = visible & (tl.load(Mask + selection + cols, mask=key_ok, other=0) != 0)
            kv_rows = tl.multiple_of(kv_head + rows * skv_t, ALIGN)
            dq = dq_step(
                q, do, lse2, delta, dq,
                K + kv_rows[None, :] + offs_d[:, None],
                V + kv_rows[None, :] + offs_d[:, None],
                visible, d_ok, qk_scale, PRECISION,
            )  # fmt: skip
        tl.store(DQ + own_rows[:, None] + offs_d[None, :], (dq * scale).to(DQ.dtype.element_ty),
                 mask=tile_ok)  # fmt: skip


@triton.jit
def _gathered_attention_bwd_dkdv(
    Q, K, V, Index, Mask, DO, Lse, Delta, DK, DV,
    sq_b, sq_g, sq_h, sq_n,
    skv_b, skv_h, skv_t,
    sdo_b, sdo_g, sdo_h, sdo_n,
    G, H, NQ, NK, D, T,
    scale,
    WORK,
    HAS_MASK: tl.constexpr,
    PER_SLOT: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
    WIDE: tl.constexpr,
    ALIGN: tl.constexpr,
):  # fmt: skip
    # one program per (tile, batch, group, head), or fewer looping over them (a persistent
    # grid, see persistent_grid)
    for work in range(tl.program_id(0), WORK, tl.num_programs(0)):
        pid_n, b, g, h = program_coords(work, tl.cdiv(NK, BLOCK_N), G, H, WIDE)
        cols = widen(pid_n * BLOCK_N + tl.arange(0, BLOCK_N), WIDE)
        offs_d = tl.arange(0, BLOCK_D)
        key_ok = cols < NK
        d_ok = head_dim_mask(offs_d, D, ALIGN)
        selection = (b * G + g) * NK
        rows = tl.load(Index + selection + cols, mask=key_ok, other=0)
        visible = key_ok
        if HAS_MASK:
            visible = visible & (tl.load(Mask + selection + cols, mask=key_ok, other=0) != 0)
        # masked entries are not read (nor written below): whatever they hold changes nothing
        update = visible[:, None] & d_ok[None, :]
        kv_rows = tl.multiple_of(b * skv_b + h * skv_h + rows * skv_t, ALIGN)
        k = tl.load(K + kv_rows[:, None] + offs_d[None, :], mask=update, other=0.0)
        v = tl.load(V + kv_rows[:, None] + offs_d[None, :], mask=update, other=0.0)
        qk_scale = scale * 1.4426950408889634
        dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
        dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
        q_group = tl.multiple_of(b * sq_b + g * sq_g + h * sq_h, ALIGN)
        do_group = tl.multiple_of(b * sdo_b + g * sdo_g + h * sdo_h, ALIGN)
        stats_group = ((b * G + g) * H + h) * NQ
        dk, dv = dkdv_over_queries(
            k, v, dk, dv, Q, DO, Lse, Delta,
            q_group, do_group, stats_group, sq_n, sdo_n, NQ,
            visible, offs_d, d_ok, qk_scale, BLOCK_M, PRECISION, WIDE, ALIGN,
        )  # fmt: skip
        if PER_SLOT:
            # DK, DV are contiguous [B, G, H, Nk, D]: one slot per selected key, written by this
            # program alone; the launcher adds the slots into the buffer rows in a fixed order
            slots = ((((b * G + g) * H + h) * NK + cols) * D)[:, None] + offs_d[None, :]
            tl.store(DK + slots, dk * scale, mask=update)
            tl.store(DV + slots, dv, mask=update)
        else:
            # DK, DV are contiguous float32 [B, H, T, D]; several groups (or one group several
            # times) may select the same buffer row: add
            buffer_rows = (((b * H + h) * T + rows) * D)[:, None] + offs_d[None, :]
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
    lse = q.new_empty((batch, groups, heads, num_queries), dtype=torch.float32)
    if out.numel() == 0:
        lse.fill_(float("-inf"))
        return out, lse
    (q,) = unit_last_stride(q)
    k, v = one_layout(k, v)
    # contiguous int64: row * stride is computed in int64 when the launch needs wide offsets
    index = index.to(torch.int64).contiguous()
    flags = mask_argument(key_mask, index)
    plan = plan_launch(
        "fwd", batch * groups * heads, num_queries, num_keys, head_dim,
        offset_tensors=(q, k),  # v has k's layout
        row_tensors=(q, k),
        base_tensors=(v,),
        own_elements=max(out.numel(), index.numel()),
    )  # fmt: skip
    launch(
        _gathered_attention_fwd, plan, q.device,
        q, k, v, index, flags, out, lse,
        *q.stride()[:4], *k.stride()[:3],
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
    batch, groups, heads, num_queries, head_dim = q.shape
    tokens = k.shape[2]
    num_keys = index.shape[-1]
    dq = empty_like_heads_last(q)
    dk = torch.zeros(k.shape, dtype=torch.float32, device=k.device)
    dv = torch.zeros(v.shape, dtype=torch.float32, device=v.device)
    if q.numel() == 0 or num_keys == 0:
        dq.zero_()
        return dq, dk.to(k.dtype), dv.to(v.dtype)
    grad_out = grad_out.to(q.dtype)  # tl.dot needs operands of one dtype
    q, grad_out = unit_last_stride(q, grad_out)
    k, v = one_layout(k, v)
    index = index.to(torch.int64).contiguous()
    out = heads_last(out)
    lse = lse.contiguous()
    delta = torch.empty_like(lse)  # written by the dq kernel, read by the dk/dv kernel
    flags = mask_argument(key_mask, index)
    rows = batch * groups * heads
    # v has k's layout; out, dq, dk and dv are laid out by this launcher
    layout = dict(offset_tensors=(q, k, grad_out), row_tensors=(q, k, grad_out, out),
                  base_tensors=(v,), own_elements=max(q.numel(), k.numel(), index.numel()))
    strides = (*q.stride()[:4], *k.stride()[:3], *grad_out.stride()[:4])
    flags_and_precision = dict(HAS_MASK=key_mask is not None, PRECISION=dot_precision(q.dtype))
    plan = plan_launch("bwd_dq", rows, num_queries, num_keys, head_dim, **layout)
    launch(
        _gathered_attention_bwd_dq, plan, q.device,
        q, k, v, index, flags, grad_out, out, lse, delta, dq,
        *strides,
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
        layout["own_elements"] = max(layout["own_elements"], dk_out.numel())
    else:
        dk_out, dv_out = dk, dv
    plan = plan_launch("bwd_dkdv", rows, num_queries, num_keys, head_dim, **layout)
    launch(
        _gathered_attention_bwd_dkdv, plan, q.device,
        q, k, v, index, flags, grad_out, lse, delta, dk_out, dv_out,
        *strides,
        groups, heads, num_queries, num_keys, head_dim, tokens,
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
