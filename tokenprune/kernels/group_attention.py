"""Triton kernels for group attention (the core of MultiHeadGroupAttention).

Each program handles one query tile of one (batch, group, head). It streams the group's keys
in two phases, straight from the strided q/k/v views of the qkv projection:

1. the shared segment: the first ``S`` slots of *every* group, ``G * S`` keys whose rows are
   addressed per key (group ``j // S``, slot ``j % S``), so no concatenated copy exists;
2. the group's private slots ``S..N-1``, contiguous rows.

The key order (and the column order of the optional scoring logits) is therefore the key layout
of :mod:`tokenprune.attention.layout`. The backward pass computes ``dq`` per query tile (same two
phases) and ``dk``/``dv`` per key tile of the group that owns the slots: a shared slot collects
gradients from the queries of all groups, a private slot from its own group's queries only, so
no atomics are needed.
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

LOG2E = 1.4426950408889634


@triton.jit
def _group_attention_fwd(
    Q, K, V, Mask, Out, Lse, Logits,
    sq_b, sq_g, sq_h, sq_n, sq_d,
    sk_b, sk_g, sk_h, sk_n, sk_d,
    sv_b, sv_g, sv_h, sv_n, sv_d,
    so_b, so_g, so_h, so_n, so_d,
    sm_b, sm_g, sm_n,
    sl_b, sl_g, sl_h, sl_j, sl_k,
    G, H, N, S, D, J,
    scale,
    HAS_MASK: tl.constexpr,
    STORE_LOGITS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
    WIDE: tl.constexpr,
    ALIGN: tl.constexpr,
):  # fmt: skip
    pid_m, b, g, h = program_coords(tl.cdiv(N, BLOCK_M), G, H, WIDE)
    offs_m = widen(pid_m * BLOCK_M + tl.arange(0, BLOCK_M), WIDE)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < N
    d_ok = head_dim_mask(offs_d, D, ALIGN)
    q_rows = tl.multiple_of(b * sq_b + g * sq_g + h * sq_h + offs_m * sq_n, ALIGN)
    q = tl.load(
        Q + q_rows[:, None] + offs_d[None, :] * sq_d,
        mask=row_ok[:, None] & d_ok[None, :],
        other=0.0,
    )
    k_head = K + tl.multiple_of(b * sk_b + h * sk_h, ALIGN)
    v_head = V + tl.multiple_of(b * sv_b + h * sv_h, ALIGN)
    mask_batch = Mask + b * sm_b
    logits_head = Logits + b * sl_b + g * sl_g + h * sl_h
    qk_scale = scale * 1.4426950408889634

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)

    num_shared_keys = G * S
    slots_per_group = tl.maximum(S, 1)
    for start in range(0, num_shared_keys, BLOCK_N):  # phase 1: shared slots of all groups
        cols = widen(start + tl.arange(0, BLOCK_N), WIDE)
        key_ok = cols < num_shared_keys
        src_g = cols // slots_per_group
        src_n = cols % slots_per_group
        visible = key_ok
        if HAS_MASK:
            flag = tl.load(mask_batch + src_g * sm_g + src_n * sm_n, mask=key_ok, other=0)
            visible = visible & (flag != 0)
        k_rows = tl.multiple_of(src_g * sk_g + src_n * sk_n, ALIGN)
        v_rows = tl.multiple_of(src_g * sv_g + src_n * sv_n, ALIGN)
        acc, m_i, l_i, s = online_softmax_step(
            q, acc, m_i, l_i,
            k_head + k_rows[None, :] + offs_d[:, None] * sk_d,
            v_head + v_rows[:, None] + offs_d[None, :] * sv_d,
            visible, d_ok, qk_scale, PRECISION,
        )  # fmt: skip
        if STORE_LOGITS:
            tl.store(
                logits_head + offs_m[:, None] * sl_j + cols[None, :] * sl_k,
                s * scale,
                mask=(offs_m[:, None] < J) & key_ok[None, :],
            )
    for start in range(S, N, BLOCK_N):  # phase 2: this group's private slots
        slots = widen(start + tl.arange(0, BLOCK_N), WIDE)
        key_ok = slots < N
        visible = key_ok
        if HAS_MASK:
            flag = tl.load(mask_batch + g * sm_g + slots * sm_n, mask=key_ok, other=0)
            visible = visible & (flag != 0)
        k_rows = tl.multiple_of(g * sk_g + slots * sk_n, ALIGN)
        v_rows = tl.multiple_of(g * sv_g + slots * sv_n, ALIGN)
        acc, m_i, l_i, s = online_softmax_step(
            q, acc, m_i, l_i,
            k_head + k_rows[None, :] + offs_d[:, None] * sk_d,
            v_head + v_rows[:, None] + offs_d[None, :] * sv_d,
            visible, d_ok, qk_scale, PRECISION,
        )  # fmt: skip
        if STORE_LOGITS:
            cols = num_shared_keys + slots - S
            tl.store(
                logits_head + offs_m[:, None] * sl_j + cols[None, :] * sl_k,
                s * scale,
                mask=(offs_m[:, None] < J) & key_ok[None, :],
            )

    out, lse = finish_softmax(acc, m_i, l_i)
    out_rows = tl.multiple_of(b * so_b + g * so_g + h * so_h + offs_m * so_n, ALIGN)
    tl.store(
        Out + out_rows[:, None] + offs_d[None, :] * so_d,
        out.to(Out.dtype.element_ty),
        mask=row_ok[:, None] & d_ok[None, :],
    )
    tl.store(Lse + ((b * G + g) * H + h) * N + offs_m, lse, mask=row_ok)


@triton.jit
def _group_attention_bwd_dq(
    Q, K, V, Mask, DO, Lse, Delta, DQ,
    sq_b, sq_g, sq_h, sq_n, sq_d,
    sk_b, sk_g, sk_h, sk_n, sk_d,
    sv_b, sv_g, sv_h, sv_n, sv_d,
    sdo_b, sdo_g, sdo_h, sdo_n, sdo_d,
    sdq_b, sdq_g, sdq_h, sdq_n, sdq_d,
    sm_b, sm_g, sm_n,
    G, H, N, S, D,
    scale,
    HAS_MASK: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
    WIDE: tl.constexpr,
    ALIGN: tl.constexpr,
):  # fmt: skip
    pid_m, b, g, h = program_coords(tl.cdiv(N, BLOCK_M), G, H, WIDE)
    offs_m = widen(pid_m * BLOCK_M + tl.arange(0, BLOCK_M), WIDE)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < N
    d_ok = head_dim_mask(offs_d, D, ALIGN)
    tile_ok = row_ok[:, None] & d_ok[None, :]
    q_rows = tl.multiple_of(b * sq_b + g * sq_g + h * sq_h + offs_m * sq_n, ALIGN)
    do_rows = tl.multiple_of(b * sdo_b + g * sdo_g + h * sdo_h + offs_m * sdo_n, ALIGN)
    q = tl.load(Q + q_rows[:, None] + offs_d[None, :] * sq_d, mask=tile_ok, other=0.0)
    do = tl.load(DO + do_rows[:, None] + offs_d[None, :] * sdo_d, mask=tile_ok, other=0.0)
    row_stats = ((b * G + g) * H + h) * N + offs_m
    lse = tl.load(Lse + row_stats, mask=row_ok, other=float("-inf"))
    lse2 = tl.where(lse == float("-inf"), float("inf"), lse * 1.4426950408889634)
    delta = tl.load(Delta + row_stats, mask=row_ok, other=0.0)
    k_head = K + tl.multiple_of(b * sk_b + h * sk_h, ALIGN)
    v_head = V + tl.multiple_of(b * sv_b + h * sv_h, ALIGN)
    mask_batch = Mask + b * sm_b
    qk_scale = scale * 1.4426950408889634
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)

    num_shared_keys = G * S
    slots_per_group = tl.maximum(S, 1)
    for start in range(0, num_shared_keys, BLOCK_N):
        cols = widen(start + tl.arange(0, BLOCK_N), WIDE)
        key_ok = cols < num_shared_keys
        src_g = cols // slots_per_group
        src_n = cols % slots_per_group
        visible = key_ok
        if HAS_MASK:
            flag = tl.load(mask_batch + src_g * sm_g + src_n * sm_n, mask=key_ok, other=0)
            visible = visible & (flag != 0)
        k_rows = tl.multiple_of(src_g * sk_g + src_n * sk_n, ALIGN)
        v_rows = tl.multiple_of(src_g * sv_g + src_n * sv_n, ALIGN)
        dq = dq_step(
            q, do, lse2, delta, dq,
            k_head + k_rows[None, :] + offs_d[:, None] * sk_d,
            v_head + v_rows[None, :] + offs_d[:, None] * sv_d,
            visible, d_ok, qk_scale, PRECISION,
        )  # fmt: skip
    for start in range(S, N, BLOCK_N):
        slots = widen(start + tl.arange(0, BLOCK_N), WIDE)
        key_ok = slots < N
        visible = key_ok
        if HAS_MASK:
            flag = tl.load(mask_batch + g * sm_g + slots * sm_n, mask=key_ok, other=0)
            visible = visible & (flag != 0)
        k_rows = tl.multiple_of(g * sk_g + slots * sk_n, ALIGN)
        v_rows = tl.multiple_of(g * sv_g + slots * sv_n, ALIGN)
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
def _group_attention_bwd_dkdv(
    Q, K, V, Mask, DO, Lse, Delta, DK, DV,
    sq_b, sq_g, sq_h, sq_n, sq_d,
    sk_b, sk_g, sk_h, sk_n, sk_d,
    sv_b, sv_g, sv_h, sv_n, sv_d,
    sdo_b, sdo_g, sdo_h, sdo_n, sdo_d,
    sdk_b, sdk_g, sdk_h, sdk_n, sdk_d,
    sdv_b, sdv_g, sdv_h, sdv_n, sdv_d,
    sm_b, sm_g, sm_n,
    G, H, N, S, D,
    scale,
    HAS_MASK: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    PRECISION: tl.constexpr,
    WIDE: tl.constexpr,
    ALIGN: tl.constexpr,
):  # fmt: skip
    pid_n, b, g_own, h = program_coords(tl.cdiv(N, BLOCK_N), G, H, WIDE)
    first_slot = pid_n * BLOCK_N
    slots = widen(first_slot + tl.arange(0, BLOCK_N), WIDE)
    offs_d = tl.arange(0, BLOCK_D)
    key_ok = slots < N
    d_ok = head_dim_mask(offs_d, D, ALIGN)
    tile_ok = key_ok[:, None] & d_ok[None, :]
    real = key_ok
    if HAS_MASK:
        flag = tl.load(Mask + b * sm_b + g_own * sm_g + slots * sm_n, mask=key_ok, other=0)
        real = real & (flag != 0)
    # masked slots are not read: their gradient is zero, whatever they hold (NaN included)
    real_tile = real[:, None] & d_ok[None, :]
    k_rows = tl.multiple_of(b * sk_b + g_own * sk_g + h * sk_h + slots * sk_n, ALIGN)
    v_rows = tl.multiple_of(b * sv_b + g_own * sv_g + h * sv_h + slots * sv_n, ALIGN)
    k = tl.load(K + k_rows[:, None] + offs_d[None, :] * sk_d, mask=real_tile, other=0.0)
    v = tl.load(V + v_rows[:, None] + offs_d[None, :] * sv_d, mask=real_tile, other=0.0)
    qk_scale = scale * 1.4426950408889634
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    shared = slots < S
    for g_query in range(0, G):
        # Other groups' queries see only shared slots: skip tiles that hold none.
        if (g_query == g_own) | (first_slot < S):
            visible = real & (shared | (g_query == g_own))
            g_q = widen(g_query, WIDE)
            q_group = tl.multiple_of(b * sq_b + g_q * sq_g + h * sq_h, ALIGN)
            do_group = tl.multiple_of(b * sdo_b + g_q * sdo_g + h * sdo_h, ALIGN)
            stats_group = ((b * G + g_q) * H + h) * N
            for start_m in range(0, N, BLOCK_M):
                offs_m = widen(start_m + tl.arange(0, BLOCK_M), WIDE)
                q_rows = tl.multiple_of(q_group + offs_m * sq_n, ALIGN)
                do_rows = tl.multiple_of(do_group + offs_m * sdo_n, ALIGN)
                dk, dv = dkdv_step(
                    k, v, dk, dv,
                    Q + q_rows[:, None] + offs_d[None, :] * sq_d,
                    DO + do_rows[:, None] + offs_d[None, :] * sdo_d,
                    Lse + stats_group + offs_m,
                    Delta + stats_group + offs_m,
                    offs_m < N, visible, d_ok, qk_scale, PRECISION,
                )  # fmt: skip

    dk_rows = tl.multiple_of(b * sdk_b + g_own * sdk_g + h * sdk_h + slots * sdk_n, ALIGN)
    dv_rows = tl.multiple_of(b * sdv_b + g_own * sdv_g + h * sdv_h + slots * sdv_n, ALIGN)
    tl.store(
        DK + dk_rows[:, None] + offs_d[None, :] * sdk_d,
        (dk * scale).to(DK.dtype.element_ty),
        mask=tile_ok,
    )
    tl.store(DV + dv_rows[:, None] + offs_d[None, :] * sdv_d, dv.to(DV.dtype.element_ty),
             mask=tile_ok)  # fmt: skip


def empty_like_heads_last(q: Tensor) -> Tensor:
    """An uninitialised ``[B, G, H, N, D]`` tensor stored as ``[B, G, N, H, D]``.

    Attention outputs are allocated this way so that merging the heads back
    (``b g h n d -> b g n (h d)``) is a view, not a copy.
    """
    batch, groups, heads, tokens, head_dim = q.shape
    storage = torch.empty((batch, groups, tokens, heads, head_dim), dtype=q.dtype, device=q.device)
    return storage.permute(0, 1, 3, 2, 4)


def group_attention_forward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_mask: Tensor | None,
    num_shared: int,
    scale: float,
    score_queries: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Launch the forward kernel.

    Returns ``(out [B, G, H, N, D], lse [B, G, H, N] float32, logits [B, G, H, J, Nk]
    float32)`` where ``Nk = G * S + N - S`` and ``J = score_queries``.
    """
    check_launchable(q, k, v)
    batch, groups, heads, tokens, head_dim = q.shape
    num_keys = groups * num_shared + tokens - num_shared
    out = empty_like_heads_last(q)
    lse = torch.empty((batch, groups, heads, tokens), dtype=torch.float32, device=q.device)
    logits = torch.empty(
        (batch, groups, heads, score_queries, num_keys), dtype=torch.float32, device=q.device
    )
    if out.numel() == 0:
        lse.fill_(float("-inf"))
        return out, lse, logits
    flags, mask_strides = mask_argument(key_mask, q)
    logits_arg = logits if score_queries > 0 else lse
    logits_strides = logits.stride() if score_queries > 0 else (0, 0, 0, 0, 0)
    plan = plan_launch(
        "fwd", batch * groups * heads, tokens, num_keys, head_dim,
        offset_tensors=(q, k, v, out, lse, logits, flags),
        row_tensors=(q, k, v, out),
    )  # fmt: skip
    launch(
        _group_attention_fwd, plan, q.device,
        q, k, v, flags, out, lse, logits_arg,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        *mask_strides, *logits_strides,
        groups, heads, tokens, num_shared, head_dim, score_queries,
        scale,
        HAS_MASK=key_mask is not None,
        STORE_LOGITS=score_queries > 0,
        PRECISION=dot_precision(q.dtype),
    )  # fmt: skip
    return out, lse, logits


def group_attention_backward(
    grad_out: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    lse: Tensor,
    key_mask: Tensor | None,
    num_shared: int,
    scale: float,
    grad_lse: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Launch the backward kernels; returns ``(dq, dk, dv)`` shaped like ``q, k, v``.

    ``grad_lse`` (the gradient of the returned log-sum-exp) enters through ``delta``: the
    derivative of a row's log-sum-exp with respect to its logits is its probabilities. Rows
    without a visible key pass no gradient back.
    """
    check_launchable(q, k, v, grad_out)
    batch, groups, heads, tokens, head_dim = q.shape
    dq, dk, dv = (empty_like_heads_last(t) for t in (q, k, v))
    if q.numel() == 0:
        return dq, dk, dv
    # A row without any visible key (lse -inf) has the constant output 0 and the constant lse
    # -inf: no gradient flows back through it, whatever arrives (NaN included, such as the
    # gradient of exp(logits - lse) there), as in the PyTorch backend.
    empty = lse == float("-inf")
    grad_out = grad_out.masked_fill(empty[..., None], 0.0)
    grad_out = grad_out.to(q.dtype)  # tl.dot needs operands of one dtype
    delta = (grad_out.float() * out.float()).sum(dim=-1)
    if grad_lse is not None:
        delta = delta - grad_lse.masked_fill(empty, 0.0)
    delta = delta.contiguous()
    lse = lse.contiguous()
    flags, mask_strides = mask_argument(key_mask, q)
    num_keys = groups * num_shared + tokens - num_shared
    rows = batch * groups * heads
    offset_tensors = (q, k, v, grad_out, lse, delta, dq, dk, dv, flags)
    row_tensors = (q, k, v, grad_out, dq, dk, dv)
    flags_and_precision = dict(HAS_MASK=key_mask is not None, PRECISION=dot_precision(q.dtype))
    plan = plan_launch("bwd_dq", rows, tokens, num_keys, head_dim, offset_tensors, row_tensors)
    launch(
        _group_attention_bwd_dq, plan, q.device,
        q, k, v, flags, grad_out, lse, delta, dq,
        *q.stride(), *k.stride(), *v.stride(), *grad_out.stride(), *dq.stride(),
        *mask_strides,
        groups, heads, tokens, num_shared, head_dim,
        scale,
        **flags_and_precision,
    )  # fmt: skip
    plan = plan_launch("bwd_dkdv", rows, tokens, tokens, head_dim, offset_tensors, row_tensors)
    launch(
        _group_attention_bwd_dkdv, plan, q.device,
        q, k, v, flags, grad_out, lse, delta, dk, dv,
        *q.stride(), *k.stride(), *v.stride(), *grad_out.stride(), *dk.stride(), *dv.stride(),
        *mask_strides,
        groups, heads, tokens, num_shared, head_dim,
        scale,
        **flags_and_precision,
    )  # fmt: skip
    return dq, dk, dv
