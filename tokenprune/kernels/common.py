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

import contextlib
import functools
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

#: Read once, when this module is imported: Triton reads ``TRITON_INTERPRET`` when kernels are
#: defined, so later changes of the variable have no effect on them.
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"

#: CUDA's grid limit on axis 0 (axes 1 and 2 allow only 65,535 programs); every launch here
#: is one-dimensional, with the query or key tiles of one (batch, group, head) fastest.
MAX_GRID = 2**31 - 1
#: A tensor spanning this many elements or more (the largest offset its shape and strides reach)
#: makes the kernels compute offsets in int64. Half the int32 range: the padded rows and
#: columns of a tile may reach past the last element before they are masked out.
WIDE_OFFSET_SPAN = 2**30
#: Element multiple of head_dim, strides and base addresses that lets the kernels promise
#: 16-byte aligned rows to the compiler (vector loads and cp.async for any head_dim % 8 == 0).
ALIGN_ELEMENTS = 8

#: ``.maxnreg`` of every kernel (the architectural limit per thread).
MAX_REGISTERS = 255

KINDS = ("fwd", "bwd_dq", "bwd_dkdv")


@dataclass(frozen=True)
class BlockConfig:
    """Tile sizes and launch options of one kernel launch."""

    block_m: int
    block_n: int
    block_d: int
    num_warps: int
    num_stages: int


def block_config(
    num_queries: int, num_keys: int, head_dim: int, kind: str = "fwd", scoring: bool = False
) -> BlockConfig:
    """Tile sizes for ``num_queries`` query rows against ``num_keys`` keys.

    ``kind`` is the kernel: ``"fwd"``, ``"bwd_dq"`` or ``"bwd_dkdv"``; ``scoring``: the forward
    also stores scoring logits (a pruning layer), which needs more registers. Under the
    interpreter the
    tiles are 16 x 16 (the smallest ``tl.dot`` shape on a GPU), which keeps test shapes small
    while still crossing block boundaries. On a GPU the query tile grows with the sequence;
    pose-transformer groups (25 to 280 tokens) use 32- or 64-row tiles. The backward kernels
    have their own tiles, warps and two pipeline stages, chosen so that no configuration
    spills registers on sm_80 or sm_90 (``python -m tokenprune.kernels.aot_check``).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
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
    if kind == "fwd":
        if block_d >= 128:
            block_m = min(block_m, 64)  # 128 x 128 float32 accumulators spill on sm_80
        # a 128-row tile, or 64 rows of a wide head, needs two warpgroups' registers
        wide = block_m == 128 or (block_m >= 32 and block_d >= 128)
        wide = wide or (block_m == 64 and block_d >= 64)
        num_warps = 8 if wide else 4
        # three stages of 64 x 64 tiles spill on sm_80 when the scoring logits are stored;
        # two stages of 128 x 64 tiles spill there too (aot_check)
        num_stages = 2 if block_d >= 128 or (block_d == 64 and block_m == 64) else 3
        if scoring and block_m == 64:
            # storing the logits keeps the key tile's columns live: 64-row tiles spill on
            # sm_80 with four warps, and with 64-key tiles from head_dim 64 (aot_check)
            num_warps = 8
            if block_d >= 64:
                block_n = 32
    elif kind == "bwd_dq":
        # dq, q and dO stay resident and each key tile makes four [M, N] float32 tiles
        block_m = min(block_m, 64)
        if block_d >= 64:
            block_n = 32
        num_warps = 8 if block_m == 64 and block_d >= 64 else 4
        num_stages = 2
    else:
        # a key tile keeps k, v, dk and dv resident; the query tile it loops over stays small
        block_m = 16 if num_queries <= 16 else 32
        if block_d >= 64:
            block_n = 32  # 64 x 64 k, v, dk and dv tiles spill on sm_80
        num_warps = 8 if block_d >= 64 or (block_n == 64 and block_d >= 32) else 4
        num_stages = 2
    return BlockConfig(block_m, block_n, block_d, num_warps, num_stages)


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot`` input precision: exact IEEE for float32 inputs (the GPU default, TF32, would
    lose about three decimal digits), the native tensor-core path for half precision."""
    return "ieee" if dtype is torch.float32 else "tf32"


def max_offset(tensor: torch.Tensor) -> int:
    """The largest element offset from its first element that ``tensor`` reaches through its
    shape and strides (0 for an empty tensor)."""
    return _span(tensor.shape, tensor.stride())


def needs_wide_offsets(*tensors: torch.Tensor) -> bool:
    """Whether the kernels must compute offsets into these tensors in int64: an index times a
    stride, or a sum of such products, may reach 2**31 elements (see ``WIDE_OFFSET_SPAN``)."""
    return any(max_offset(t) >= WIDE_OFFSET_SPAN for t in tensors)


def row_alignment(head_dim: int, *tensors: torch.Tensor) -> int:
    """``ALIGN_ELEMENTS`` if every row of these ``[..., D]`` tensors starts on a 16-byte
    boundary at a multiple of ``ALIGN_ELEMENTS`` elements (head_dim, every stride but the last,
    which must be 1, and the base address), else 1.

    The kernels pass it to ``tl.multiple_of`` so that Triton can use 16-byte loads and
    ``cp.async`` also when head_dim is not a multiple of 16 (GTPT's 24): Triton itself only
    notices integers divisible by 16.
    """
    layouts = tuple((t.shape, t.stride()) for t in tensors)
    return _alignment(head_dim, layouts, all(t.is_meta or t.data_ptr() % 16 == 0 for t in tensors))


def _alignment(head_dim: int, layouts: tuple, aligned_bases: bool) -> int:
    """:func:`row_alignment` from ``(shape, stride)`` pairs and whether every base address is
    16-byte aligned."""
    aligned = aligned_bases and head_dim % ALIGN_ELEMENTS == 0
    return ALIGN_ELEMENTS if aligned and all(_aligned_rows(*x) for x in layouts) else 1


def _aligned_rows(shape: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    if stride[-1] != 1 and shape[-1] > 1:
        return False
    # every stride, size-1 axes included: padded lanes of a tile step along them too
    return not any(s % ALIGN_ELEMENTS for s in stride[:-1])


def _span(shape: tuple[int, ...], stride: tuple[int, ...]) -> int:
    if 0 in shape:
        return 0
    return sum((size - 1) * abs(step) for size, step in zip(shape, stride, strict=True))


@dataclass(frozen=True)
class LaunchPlan:
    """Everything a launch decides besides its arguments: a pure function of shapes, strides
    and dtypes (see :func:`plan_launch`), so tests can check it without running a kernel.

    The grid is one-dimensional, ``tiles * rows`` programs (one per work item) with the
    ``tiles`` tiles of one (batch, group, head) row consecutive, because CUDA allows 65,535
    programs on grid axes 1 and 2 but ``2**31 - 1`` on axis 0; inside :func:`persistent_grid`
    it has fewer programs, each looping over work items (:func:`launch_grid`).
    """

    kind: str
    rows: int  # B * G * H
    tiles: int  # query tiles (fwd, bwd_dq) or key tiles (bwd_dkdv) per row
    config: BlockConfig
    wide_offsets: bool
    align: int

    @property
    def work(self) -> int:
        """Work items of the launch: one per (tile, batch, group, head)."""
        return self.tiles * self.rows

    @property
    def grid(self) -> tuple[int]:
        """One program per work item (a persistent grid has fewer, see :func:`persistent_grid`)."""
        return (self.work,)

    @functools.cached_property
    def options(self) -> dict:
        """The constexpr and compile options of the launch (besides the kernel's own flags)."""
        return dict(
            BLOCK_M=self.config.block_m,
            BLOCK_N=self.config.block_n,
            BLOCK_D=self.config.block_d,
            WIDE=self.wide_offsets,
            ALIGN=self.align,
            num_warps=self.config.num_warps,
            num_stages=self.config.num_stages,
            # Without a bound, ptxas stops at 128 registers in several configurations and
            # spills rather than use more (measured by aot_check): allow the architectural 255.
            maxnreg=MAX_REGISTERS,
        )


def plan_launch(
    kind: str,
    rows: int,
    num_queries: int,
    num_keys: int,
    head_dim: int,
    offset_tensors: tuple[torch.Tensor, ...],
    row_tensors: tuple[torch.Tensor, ...],
    own_elements: int = 0,
    scoring: bool = False,
    base_tensors: tuple[torch.Tensor, ...] = (),
) -> LaunchPlan:
    """Plan one launch of kernel ``kind`` over ``rows = B * G * H`` (batch, group, head) rows.

    Args:
        kind: ``"fwd"``, ``"bwd_dq"`` or ``"bwd_dkdv"`` (tiles over queries for the first two,
            over keys for the last).
        rows: ``B * G * H``.
        num_queries, num_keys, head_dim: ``Nq``, ``Nk`` and ``D`` of the attention.
        offset_tensors: every tensor the kernel addresses (decides int64 offsets), apart from
            those the launcher allocated contiguous (or permuted from contiguous) itself;
        row_tensors: the ``[..., D]`` tensors whose rows are loaded as tiles (decides alignment),
            apart from those the launcher allocated itself with rows of ``D`` elements.
        own_elements: the most elements of a tensor the launcher allocated itself (its offsets
            reach ``own_elements - 1``).
        scoring: the forward stores scoring logits (see :func:`block_config`).
        base_tensors: tensors laid out like one of ``row_tensors`` (k and v beside q, say) whose
            base addresses count for the alignment too.

    Raises:
        ValueError: the launch needs more than ``2**31 - 1`` programs.

    A launch plan is made on every call, so it is cached by shapes, strides and base-address
    alignment (the host's time per call decides the speed at GTPT's sizes;
    ``python -m benchmarks.host_cost``).
    """
    layouts = tuple((t.shape, t.stride()) for t in offset_tensors)
    row_layouts = tuple((t.shape, t.stride()) for t in row_tensors)
    pointers = 0
    for t in (*row_tensors, *base_tensors):
        if not t.is_meta:
            pointers |= t.data_ptr()
    aligned_bases = pointers % 16 == 0
    own_wide = own_elements > WIDE_OFFSET_SPAN
    return _cached_plan(kind, rows, num_queries, num_keys, head_dim, own_wide, layouts,
                        row_layouts, aligned_bases, scoring)  # fmt: skip


@functools.lru_cache(maxsize=1024)
def _cached_plan(
    kind, rows, num_queries, num_keys, head_dim, own_wide, layouts, row_layouts, aligned_bases,
    scoring,
) -> LaunchPlan:  # fmt: skip
    wide = own_wide or any(_span(*layout) >= WIDE_OFFSET_SPAN for layout in layouts)
    align = _alignment(head_dim, row_layouts, aligned_bases)
    config = block_config(num_queries, num_keys, head_dim, kind, scoring)
    tiles = triton.cdiv(num_keys if kind == "bwd_dkdv" else num_queries,
                        config.block_n if kind == "bwd_dkdv" else config.block_m)  # fmt: skip
    tiles = max(tiles, 1)
    if tiles * rows > MAX_GRID:
        raise ValueError(
            f"the {kind} launch needs {tiles} tiles x {rows} (batch, group, head) rows = "
            f"{tiles * rows} programs, more than CUDA's {MAX_GRID}; split the batch"
        )
    return LaunchPlan(kind, rows, tiles, config, wide, align)


def device_guard(device: torch.device):
    """``torch.cuda.device(device)`` for a CUDA device, so that Triton compiles for and launches
    on the tensors' GPU and its current stream, not the current device; a no-op otherwise."""
    if device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()


@dataclass(frozen=True)
class LaunchRecord:
    """One launch seen by :func:`capture_launches`: the kernel, its positional arguments and
    keyword arguments (constexprs and compile options) exactly as they would be passed, and
    its grid."""

    kernel: object
    args: tuple
    kwargs: dict
    plan: LaunchPlan
    grid: tuple[int]


#: Programs per streaming multiprocessor of a persistent launch; None: one per work item.
_programs_per_sm: int | None = None


@contextlib.contextmanager
def persistent_grid(programs_per_sm: int | None = 4):
    """Launch the kernels in this block on a persistent grid.

    Each launch then has ``programs_per_sm`` programs per streaming multiprocessor of its GPU
    (under the interpreter: ``programs_per_sm`` programs), and every program loops over the
    launch's work items (one per query or key tile of a (batch, group, head)), instead of one
    program per work item. The results are the same; which is faster depends on the GPU and
    the sizes (GTPT's calls are short, so the fixed cost of a program matters), and
    ``python -m benchmarks.kernels`` times both. ``None`` restores the default inside the block.

    Raises:
        ValueError: ``programs_per_sm`` is not a positive int (or None).
    """
    global _programs_per_sm
    if programs_per_sm is not None:
        if isinstance(programs_per_sm, bool) or not isinstance(programs_per_sm, int):
            raise ValueError(f"programs_per_sm must be a positive int or None, got "
                             f"{programs_per_sm!r}")  # fmt: skip
        if programs_per_sm < 1:
            raise ValueError(f"programs_per_sm must be a positive int, got {programs_per_sm}")
    previous, _programs_per_sm = _programs_per_sm, programs_per_sm
    try:
        yield
    finally:
        _programs_per_sm = previous


@functools.lru_cache(maxsize=16)
def _multiprocessors(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1


def launch_grid(plan: LaunchPlan, device: torch.device) -> tuple[int]:
    """The grid of a launch: :attr:`LaunchPlan.grid`, or a persistent one (fewer programs,
    never more than the work items) inside :func:`persistent_grid`."""
    if _programs_per_sm is None:
        return plan.grid
    return (min(plan.work, _programs_per_sm * _multiprocessors(device)),)


_captured: list[LaunchRecord] | None = None


@contextlib.contextmanager
def capture_launches():
    """Record the launches of the launchers in this block instead of running them.

    Nothing is launched and the launchers' outputs stay uninitialised; device checks are
    skipped, so CPU tensors laid out as on a GPU may stand in for CUDA tensors. Used by
    :mod:`tokenprune.kernels.aot_check` to compile every configuration ahead of time.
    Yields the list the records are appended to.
    """
    global _captured
    previous, _captured = _captured, []
    try:
        yield _captured
    finally:
        _captured = previous


def launch(kernel, plan: LaunchPlan, device: torch.device, *args, **flags) -> None:
    """Launch ``kernel`` as ``plan`` says, under the device guard of ``device``; the number of
    work items is appended to ``args`` (every kernel's last runtime argument, ``WORK``)."""
    kwargs = {**flags, **plan.options}
    args += (plan.work,)
    grid = plan.grid if _programs_per_sm is None else launch_grid(plan, device)
    if _captured is not None:
        _captured.append(LaunchRecord(kernel, args, kwargs, plan, grid))
        return
    with device_guard(device):
        kernel.run(*args, grid=grid, warmup=False, **kwargs)


def check_launchable(*tensors: torch.Tensor) -> None:
    """Raise a clear error instead of Triton's when a kernel cannot run on these tensors."""
    if _captured is not None:
        return
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


def mask_argument(key_mask: torch.Tensor | None, fallback: torch.Tensor) -> torch.Tensor:
    """A key mask as the kernels read it: one byte per key, contiguous (``[B, G, N]`` for group
    attention, ``[B, G, Nk]`` for gathered attention, addressed through ``G`` and ``N``).
    Without a mask any tensor stands in; the kernels never read it."""
    if key_mask is None:
        return fallback
    return key_mask.contiguous().view(torch.uint8)


def one_layout(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Tensors of one shape (q, k, v; or k, v) with one set of strides and a last stride of 1,
    which the kernels address through a single set of stride arguments: as given when they
    already are laid out alike (the views of a fused qkv projection, or tensors made alike),
    else contiguous copies."""
    first = tensors[0]
    stride = first.stride()
    if stride[-1] == 1 or first.shape[-1] == 1:
        for t in tensors:
            if t.stride() != stride:
                break
        else:
            return tensors
    return tuple(t.contiguous() for t in tensors)


def unit_last_stride(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors, each copied to contiguous memory only when its last stride is not 1 (the
    kernels address head_dim with stride 1 and leave that stride out of their arguments)."""
    return tuple(t if t.stride(-1) == 1 or t.shape[-1] == 1 else t.contiguous() for t in tensors)


@triton.jit
def widen(x, WIDE: tl.constexpr):
    """``x`` as int64 when the launch needs 64-bit offsets (``LaunchPlan.wide_offsets``)."""
    if WIDE:  # one return statement: Triton checks every return's type, even in dead branches
        x = tl.cast(x, tl.int64)
    return x


@triton.jit
def head_dim_mask(offs_d, D, ALIGN: tl.constexpr):
    """``offs_d < D``, written so that the compiler sees the mask constant over runs of
    ``ALIGN`` columns when the launcher checked that ``D`` is a multiple of ``ALIGN``
    (``LaunchPlan.align``; Triton itself only knows whether ``D`` is divisible by 16)."""
    if ALIGN > 1:
        return (offs_d // ALIGN) < (D // ALIGN)
    return offs_d < D


@triton.jit
def key_slots(cols, g, S, num_shared_keys):
    """``(group, slot)`` of group ``g``'s keys ``cols`` in the key layout of group attention:
    key ``j < G * S`` is shared slot ``j % S`` of group ``j // S``, the others are ``g``'s
    private slots ``S + j - G * S``."""
    shared = cols < num_shared_keys
    slots_per_group = tl.maximum(S, 1)
    src_g = tl.where(shared, cols // slots_per_group, g)
    src_n = tl.where(shared, cols % slots_per_group, cols - num_shared_keys + S)
    return src_g, src_n


@triton.jit
def dkdv_over_queries(
    k, v, dk, dv, Q, DO, Lse, Delta,
    q_group, do_group, stats_group, sq_n, sdo_n, num_queries,
    visible, offs_d, d_ok, qk_scale,
    BLOCK_M: tl.constexpr, PRECISION: tl.constexpr, WIDE: tl.constexpr, ALIGN: tl.constexpr,
):  # fmt: skip
    """Accumulate ``dk`` and ``dv`` of a key tile over every query tile of one (batch, group,
    head): queries at ``q_group + m * sq_n`` and ``dO`` rows at ``do_group + m * sdo_n``
    (element offsets), row statistics at ``stats_group + m``. See :func:`dkdv_step`."""
    for start_m in range(0, num_queries, BLOCK_M):
        offs_m = widen(start_m + tl.arange(0, BLOCK_M), WIDE)
        q_rows = tl.multiple_of(q_group + offs_m * sq_n, ALIGN)
        do_rows = tl.multiple_of(do_group + offs_m * sdo_n, ALIGN)
        dk, dv = dkdv_step(
            k, v, dk, dv,
            Q + q_rows[:, None] + offs_d[None, :],
            DO + do_rows[:, None] + offs_d[None, :],
            Lse + stats_group + offs_m,
            Delta + stats_group + offs_m,
            offs_m < num_queries, visible, d_ok, qk_scale, PRECISION,
        )  # fmt: skip
    return dk, dv


@triton.jit
def program_coords(work, num_tiles, G, H, WIDE: tl.constexpr):
    """``(tile, b, g, h)`` of work item ``work`` of the ``num_tiles * B * G * H`` items of a
    launch (tiles of one row consecutive, see ``LaunchPlan``)."""
    tile = work % num_tiles
    row = work // num_tiles
    h = widen(row % H, WIDE)
    g = widen((row // H) % G, WIDE)
    b = widen(row // (H * G), WIDE)
    return tile, b, g, h


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
def dq_prologue(
    Q, DO, Out, Lse, GradLse, Delta, q_rows, do_rows, own_rows, row_stats, row_ok, tile_ok,
    offs_d, HAS_GRAD_LSE: tl.constexpr,
):  # fmt: skip
    """The start of a dq program (both kernels): load its query tile's ``q [M, Dp]`` and ``dO``,
    compute ``delta = rowsum(dO * O) - dlse`` (``GradLse``, the gradient of the returned
    log-sum-exp, when ``HAS_GRAD_LSE``) and store it for the dk/dv kernel, launched next.
    Returns ``(q, do, lse2, delta)`` as :func:`dq_step` takes them.

    A row without any visible key (lse ``-inf``) has the constant output 0 and the constant
    lse ``-inf``: no gradient flows back through it, whatever arrives (NaN included, such as
    the gradient of ``exp(logits - lse)`` there), as in the PyTorch backend; its ``dO`` and
    ``delta`` are zero and its base-2 ``lse2`` is ``+inf`` (probabilities 0).
    """
    lse = tl.load(Lse + row_stats, mask=row_ok, other=float("-inf"))
    empty = lse == float("-inf")
    lse2 = tl.where(empty, float("inf"), lse * 1.4426950408889634)
    q = tl.load(Q + q_rows[:, None] + offs_d[None, :], mask=tile_ok, other=0.0)
    do = tl.load(DO + do_rows[:, None] + offs_d[None, :], mask=tile_ok, other=0.0)
    do = tl.where(empty[:, None], 0.0, do)
    o = tl.load(Out + own_rows[:, None] + offs_d[None, :], mask=tile_ok, other=0.0)
    # a row's lse has its probabilities as logit gradient
    delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), 1)
    if HAS_GRAD_LSE:
        delta -= tl.load(GradLse + row_stats, mask=row_ok, other=0.0)
    delta = tl.where(empty, 0.0, delta)
    tl.store(Delta + row_stats, delta, mask=row_ok)
    return q, do, lse2, delta


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
    empty = lse == float("-inf")  # a row without visible keys passes no gradient (NaN included)
    do = tl.where(empty[:, None], 0.0, do)
    lse2 = tl.where(empty, float("inf"), lse * 1.4426950408889634)
    delta = tl.load(delta_ptrs, mask=row_ok, other=0.0)
    s_t = tl.dot(k, tl.trans(q), input_precision=PRECISION)  # [N, M]
    p_t = tl.math.exp2(s_t * qk_scale - lse2[None, :])
    p_t = tl.where(visible[:, None] & row_ok[None, :], p_t, 0.0)
    dv += tl.dot(p_t.to(do.dtype), do, input_precision=PRECISION)
    dp_t = tl.dot(v, tl.trans(do), input_precision=PRECISION)
    ds_t = p_t * (dp_t - delta[None, :])
    dk += tl.dot(ds_t.to(q.dtype), q, input_precision=PRECISION)
    return dk, dv
