"""Triton kernels for group attention (the core of MultiHeadGroupAttention).

Each program handles one query tile of one (batch, group, head) (or, on a persistent grid, see
:func:`~tokenprune.kernels.persistent_grid`, several in turn). It streams the group's
``G * S + N - S`` keys as one sequence of key tiles, straight from the strided q/k/v views of
the qkv projection: key ``j < G * S`` is shared slot ``j % S`` of group ``j // S`` (the first
``S`` slots of *every* group), key ``j >= G * S`` is the group's private slot
``S + j - G * S``. Every key row is addressed on its own, so no concatenated copy exists, and
the shared and private keys fill the same tiles (GTPT-S's 18 shared and 76 private keys take
two 64-key tiles, not three).

The key order (and the column order of the optional scoring logits) is therefore the key layout
of :mod:`tokenprune.layout`. The backward pass computes ``dq`` per query tile (the
same key stream) and ``dk``/``dv`` per key tile of the group that owns the slots: a shared slot
collects gradients from the queries of all groups, a private slot from its own group's queries
only, so no atomics are needed. The dq kernel also computes ``delta = rowsum(dO * O) - dlse``
(the pre-pass of flash-attention-2) for its rows and stores it for the dk/dv kernel, which runs
after it on the same stream.

Launch arguments are kept few, because Triton's host-side binder costs time per argument and
a GTPT kernel runs only microseconds: q, k and v share one set of strides (views of one fused
qkv projection do; other layouts are copied, see ``one_layout``), dO has its own, the last
stride of both is 1, every tensor the launchers allocate has a fixed layout that the
kernels derive from ``G, H, N, D`` (outputs and gradients in the heads-last layout of
:func:`empty_like_heads_last`, rows at ``((b * G + g) * N + n) * H * D + h * D``; the row
statistics and the scoring logits contiguous), and the key mask is a contiguous ``[B, G, N]``
byte tensor. The heads-last offsets are written out in each kernel: computed by a jit helper,
they lose their ``tl.multiple_of`` hint and half-precision rows at head_dim 24 are loaded as
2-byte scalars (found by ``aot_check``).
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
    key_slots,
    launch,
    mask_argument,
    one_layout,
    online_softmax_step,
    plan_launch,
    program_coords,
    unit_last_stride,
    widen,
)


@triton.jit
def _group_attention_fwd(
    Q, K, V, Mask, Out, Lse, Logits,
    s_b, s_g, s_h, s_n,
    G, H, N, S, D, J,
    scale,
    WORK,
    HAS_MASK: tl.constexpr,
    STORE_LOGITS: tl.constexpr,
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
        pid_m, b, g, h = program_coords(work, tl.cdiv(N, BLOCK_M), G, H, WIDE)
        offs_m = widen(pid_m * BLOCK_M + tl.arange(0, BLOCK_M), WIDE)
        offs_d = tl.arange(0, BLOCK_D)
        row_ok = offs_m < N
        d_ok = head_dim_mask(offs_d, D, ALIGN)
        q_rows = tl.multiple_of(b * s_b + g * s_g + h * s_h + offs_m * s_n, ALIGN)
        q = tl.load(Q + q_rows[:, None] + offs_d[None, :], mask=row_ok[:, None] & d_ok[None, :],
                    other=0.0)  # fmt: skip
        k_head = K + tl.multiple_of(b * s_b + h * s_h, ALIGN)
        v_head = V + tl.multiple_of(b * s_b + h * s_h, ALIGN)
        mask_batch = Mask + b * G * N
        num_shared_keys = G * S
        num_keys = num_shared_keys + N - S
        # the scoring logits: contiguous [B, G, H, J, Nk]
        logits_head = Logits + ((b * G + g) * H + h) * J * num_keys
        qk_scale = scale * 1.4426950408889634

        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)

        for start in range(0, num_keys, BLOCK_N):  # one stream: shared keys, then private ones
            cols = widen(start + tl.arange(0, BLOCK_N), WIDE)
            key_ok = cols < num_keys
            src_g, src_n = key_slots(cols, g, S, num_shared_keys)
            visible = key_ok
            if HAS_MASK:
                flag = tl.load(mask_batch + src_g * N + src_n, mask=key_ok, other=0)
                visible = visible & (flag != 0)
            rows = tl.multiple_of(src_g * s_g + src_n * s_n, ALIGN)  # k and v share strides
            acc, m_i, l_i, s = online_softmax_step(
                q, acc, m_i, l_i,
                k_head + rows[None, :] + offs_d[:, None],
                v_head + rows[:, None] + offs_d[None, :],
                visible, d_ok, qk_scale, PRECISION,
            )  # fmt: skip
            if STORE_LOGITS:
                tl.store(
                    logits_head + offs_m[:, None] * num_keys + cols[None, :],
                    s * scale,
                    mask=(offs_m[:, None] < J) & key_ok[None, :],
                )

        out, lse = finish_softmax(acc, m_i, l_i)
        out_rows = tl.multiple_of(((b * G + g) * N + offs_m) * (H * D) + h * D, ALIGN)
        tl.store(
            Out + out_rows[:, None] + offs_d[None, :],
            out.to(Out.dtype.element_ty),
            mask=row_ok[:, None] & d_ok[None, :],
        )
        tl.store(Lse + ((b * G + g) * H + h) * N + offs_m, lse, mask=row_ok)


@triton.jit
def _group_attention_bwd_dq(
    Q, K, V, Mask, DO, Out, Lse, GradLse, Delta, DQ,
    s_b, s_g, s_h, s_n,
    sdo_b, sdo_g, sdo_h, sdo_n,
    G, H, N, S, D,
    scale,
    WORK,
    HAS_MASK: tl.constexpr,
    HAS_GRAD_LSE: tl.constexpr,
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
        pid_m, b, g, h = program_coords(work, tl.cdiv(N, BLOCK_M), G, H, WIDE)
        offs_m = widen(pid_m * BLOCK_M + tl.arange(0, BLOCK_M), WIDE)
        offs_d = tl.arange(0, BLOCK_D)
        row_ok = offs_m < N
        d_ok = head_dim_mask(offs_d, D, ALIGN)
        tile_ok = row_ok[:, None] & d_ok[None, :]
        q_rows = tl.multiple_of(b * s_b + g * s_g + h * s_h + offs_m * s_n, ALIGN)
        do_rows = tl.multiple_of(b * sdo_b + g * sdo_g + h * sdo_h + offs_m * sdo_n, ALIGN)
        own_rows = tl.multiple_of(((b * G + g) * N + offs_m) * (H * D) + h * D, ALIGN)
        row_stats = ((b * G + g) * H + h) * N + offs_m
        q, do, lse2, delta = dq_prologue(
            Q, DO, Out, Lse, GradLse, Delta, q_rows, do_rows, own_rows, row_stats,
            row_ok, tile_ok, offs_d, HAS_GRAD_LSE,
        )  # fmt: skip
        k_head = K + tl.multiple_of(b * s_b + h * s_h, ALIGN)
        v_head = V + tl.multiple_of(b * s_b + h * s_h, ALIGN)
        mask_batch = Mask + b * G * N
        qk_scale = scale * 1.4426950408889634
        dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)

        num_shared_keys = G * S
        num_keys = num_shared_keys + N - S
        for start in range(0, num_keys, BLOCK_N):  # one stream, as in the forward
            cols = widen(start + tl.arange(0, BLOCK_N), WIDE)
            key_ok = cols < num_keys
            src_g, src_n = key_slots(cols, g, S, num_shared_keys)
            visible = key_ok
            if HAS_MASK:
                flag = tl.load(mask_batch + src_g * N + src_n, mask=key_ok, other=0)
                visible = visible & (flag != 0)
            rows = tl.multiple_of(src_g * s_g + src_n * s_n, ALIGN)  # k and v share strides
            dq = dq_step(
                q, do, lse2, delta, dq,
                k_head + rows[None, :] + offs_d[:, None],
                v_head + rows[None, :] + offs_d[:, None],
                visible, d_ok, qk_scale, PRECISION,
            )  # fmt: skip

        tl.store(DQ + own_rows[:, None] + offs_d[None, :], (dq * scale).to(DQ.dtype.element_ty),
                 mask=tile_ok)  # fmt: skip


@triton.jit
def _group_attention_bwd_dkdv(
    Q, K, V, Mask, DO, Lse, Delta, DK, DV,
    s_b, s_g, s_h, s_n,
    sdo_b, sdo_g, sdo_h, sdo_n,
    G, H, N, S, D,
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
        pid_n, b, g_own, h = program_coords(work, tl.cdiv(N, BLOCK_N), G, H, WIDE)
        first_slot = pid_n * BLOCK_N
        slots = widen(first_slot + tl.arange(0, BLOCK_N), WIDE)
        offs_d = tl.arange(0, BLOCK_D)
        key_ok = slots < N
        d_ok = head_dim_mask(offs_d, D, ALIGN)
        tile_ok = key_ok[:, None] & d_ok[None, :]
        real = key_ok
        if HAS_MASK:
            flag = tl.load(Mask + (b * G + g_own) * N + slots, mask=key_ok, other=0)
            real = real & (flag != 0)
        # masked slots are not read: their gradient is zero, whatever they hold (NaN included)
        real_tile = real[:, None] & d_ok[None, :]
        k_rows = tl.multiple_of(b * s_b + g_own * s_g + h * s_h + slots * s_n, ALIGN)
        v_rows = tl.multiple_of(b * s_b + g_own * s_g + h * s_h + slots * s_n, ALIGN)
        k = tl.load(K + k_rows[:, None] + offs_d[None, :], mask=real_tile, other=0.0)
        v = tl.load(V + v_rows[:, None] + offs_d[None, :], mask=real_tile, other=0.0)
        qk_scale = scale * 1.4426950408889634
        dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
        dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
        shared = slots < S
        for g_query in range(0, G):
            # Other groups' queries see only shared slots: skip tiles that hold none.
            if (g_query == g_own) | (first_slot < S):
                visible = real & (shared | (g_query == g_own))
                g_q = widen(g_query, WIDE)
                q_group = tl.multiple_of(b * s_b + g_q * s_g + h * s_h, ALIGN)
                do_group = tl.multiple_of(b * sdo_b + g_q * sdo_g + h * sdo_h, ALIGN)
                stats_group = ((b * G + g_q) * H + h) * N
                dk, dv = dkdv_over_queries(
                    k, v, dk, dv, Q, DO, Lse, Delta,
                    q_group, do_group, stats_group, s_n, sdo_n, N,
                    visible, offs_d, d_ok, qk_scale, BLOCK_M, PRECISION, WIDE, ALIGN,
                )  # fmt: skip

        own_rows = tl.multiple_of(((b * G + g_own) * N + slots) * (H * D) + h * D, ALIGN)
        tl.store(DK + own_rows[:, None] + offs_d[None, :], (dk * scale).to(DK.dtype.element_ty),
                 mask=tile_ok)  # fmt: skip
        tl.store(DV + own_rows[:, None] + offs_d[None, :], dv.to(DV.dtype.element_ty),
                 mask=tile_ok)  # fmt: skip


def empty_like_heads_last(q: Tensor) -> Tensor:
    """An uninitialised ``[B, G, H, N, D]`` tensor stored as ``[B, G, N, H, D]``.

    Attention outputs are allocated this way so that merging the heads back
    (``b g h n d -> b g n (h d)``) is a view, not a copy. The kernels address these tensors
    through ``G, H, N, D`` alone.
    """
    _, groups, heads, tokens, head_dim = q.shape
    row = heads * head_dim
    strides = (groups * tokens * row, tokens * row, head_dim, row, 1)
    return torch.empty_strided(q.shape, strides, dtype=q.dtype, device=q.device)


def empty_logits(q: Tensor, num_shared: int) -> Tensor:
    """The scoring logits of zero scoring queries, ``[B, G, H, 0, Nk]`` float32."""
    batch, groups, heads, tokens, _ = q.shape
    num_keys = groups * num_shared + tokens - num_shared
    return q.new_empty((batch, groups, heads, 0, num_keys), dtype=torch.float32)


def heads_last(t: Tensor) -> Tensor:
    """``t`` (``[B, G, H, N, D]``) in the layout of :func:`empty_like_heads_last`, copied only
    when it is not already stored that way."""
    _, groups, heads, tokens, head_dim = t.shape
    row = heads * head_dim
    expected = (groups * tokens * row, tokens * row, head_dim, row, 1)
    if all(n == 1 or s == e for n, s, e in zip(t.shape, t.stride(), expected, strict=True)):
        return t
    copy = empty_like_heads_last(t)
    copy.copy_(t)
    return copy


def group_attention_forward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_mask: Tensor | None,
    num_shared: int,
    scale: float,
    score_queries: int,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Launch the forward kernel.

    Returns ``(out [B, G, H, N, D], lse [B, G, H, N] float32, logits [B, G, H, J, Nk]
    float32)`` where ``Nk = G * S + N - S`` and ``J = score_queries``; logits is None when
    ``J = 0`` (one allocation less per call: see ``empty_logits``).
    """
    check_launchable(q, k, v)
    batch, groups, heads, tokens, head_dim = q.shape
    num_keys = groups * num_shared + tokens - num_shared
    out = empty_like_heads_last(q)
    lse = q.new_empty((batch, groups, heads, tokens), dtype=torch.float32)
    logits = None
    if score_queries > 0:
        logits = q.new_empty((batch, groups, heads, score_queries, num_keys), dtype=torch.float32)
    if out.numel() == 0:
        lse.fill_(float("-inf"))
        return out, lse, logits
    q, k, v = one_layout(q, k, v)
    flags = mask_argument(key_mask, q)
    plan = plan_launch(
        "fwd", batch * groups * heads, tokens, num_keys, head_dim,
        offset_tensors=(q,),  # k and v have q's shape and strides (one_layout)
        row_tensors=(q,),
        base_tensors=(k, v),
        own_elements=batch * groups * heads * max(tokens * head_dim, score_queries * num_keys),
        scoring=score_queries > 0,
    )  # fmt: skip
    launch(
        _group_attention_fwd, plan, q.device,
        q, k, v, flags, out, lse, lse if logits is None else logits,
        *q.stride()[:4],
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
    grad_out = grad_out.to(q.dtype)  # tl.dot needs operands of one dtype
    q, k, v = one_layout(q, k, v)
    (grad_out,) = unit_last_stride(grad_out)
    out = heads_last(out)
    lse = lse.contiguous()
    delta = torch.empty_like(lse)  # written by the dq kernel, read by the dk/dv kernel
    grad_lse = lse if grad_lse is None else grad_lse.to(torch.float32).contiguous()
    flags = mask_argument(key_mask, q)
    num_keys = groups * num_shared + tokens - num_shared
    rows = batch * groups * heads
    # out is the layout of empty_like_heads_last (its span is its size), as are dq, dk, dv
    # k and v have q's shape and strides (one_layout)
    layout = dict(offset_tensors=(q, grad_out), row_tensors=(q, grad_out, out),
                  base_tensors=(k, v), own_elements=q.numel())  # fmt: skip
    strides = (*q.stride()[:4], *grad_out.stride()[:4])
    flags_and_precision = dict(HAS_MASK=key_mask is not None, PRECISION=dot_precision(q.dtype))
    plan = plan_launch("bwd_dq", rows, tokens, num_keys, head_dim, **layout)
    launch(
        _group_attention_bwd_dq, plan, q.device,
        q, k, v, flags, grad_out, out, lse, grad_lse, delta, dq,
        *strides,
        groups, heads, tokens, num_shared, head_dim,
        scale,
        HAS_GRAD_LSE=grad_lse is not lse,
        **flags_and_precision,
    )  # fmt: skip
    plan = plan_launch("bwd_dkdv", rows, tokens, tokens, head_dim, **layout)
    launch(
        _group_attention_bwd_dkdv, plan, q.device,
        q, k, v, flags, grad_out, lse, delta, dk, dv,
        *strides,
        groups, heads, tokens, num_shared, head_dim,
        scale,
        **flags_and_precision,
    )  # fmt: skip
    return dq, dk, dv
