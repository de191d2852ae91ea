"""Benchmark tokenprune's Triton attention kernels against PyTorch's best paths.

On a CUDA GPU it times group attention (GTPT's stage shapes for GTPT-T and GTPT-S/B, COCO and
WholeBody token counts, batch 1 and 64, and large unpruned shapes) and gathered attention,
forward and forward+backward, against:

* eager PyTorch (concatenate the shared keys, matmul, softmax, matmul) and ``torch.compile`` of it;
* ``scaled_dot_product_attention`` on the concatenated keys with each backend pinned (math,
  efficient, cuDNN, and flash where no mask is needed);
* gather + SDPA (keys and values gathered by index, SDPA picks its backend);
* compiled FlexAttention with a group ``mask_mod`` (its block-mask build time is reported
  separately, as a pruned model rebuilds it whenever the kept tokens change).

Every timed function is first checked against a float32 reference (outputs, and gradients in
forward+backward mode); a function that fails is reported and not timed. Times are medians of
``triton.testing.do_bench`` (L2 flushed between runs) and of ``do_bench_cudagraph`` (CUDA-graph
replay, no launch overhead). TFLOP/s count useful work only: ``4 * pairs * head_dim`` forward,
2.5 times that backward, where ``pairs`` are the (query, key) pairs the group layout allows.

Without a GPU it runs a reduced correctness-only mode: tiny shapes, every competitor that runs
on the CPU (our kernels in Triton's interpreter, FlexAttention eagerly) compared with the
reference, no timing.

    python -m benchmarks.kernels                    # everything (GPU) or the correctness mode
    python -m benchmarks.kernels --suite gtpt       # only GTPT's stage shapes
    python -m benchmarks.kernels --output benchmarks/results/kernels_h100.md
    python -m benchmarks.kernels --roofline         # the roofline model of the GPU cases only

The report ends with a roofline model of every case (FLOPs, compulsory bytes, arithmetic
intensity, the ideal time on an H100 and an H200) and, on one of those, the share of the ideal
time each of our timings reaches.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():  # our kernels run in Triton's interpreter on the CPU
    os.environ.setdefault("TRITON_INTERPRET", "1")

import argparse
import contextlib
import platform
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch.nn.functional as F
import triton
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

import tokenprune
from tokenprune import group_attention
from tokenprune.attention import gathered_attention
from tokenprune.layout import group_key_mask, group_keys
from tokenprune_models.common.atomic import write_text_atomic
from tokenprune_models.common.cli import HelpFormatter, int_at_least

GPU = torch.cuda.is_available()
DEVICE = "cuda" if GPU else "cpu"


# ---------------------------------------------------------------------------------------------
# cases


@dataclass(frozen=True)
class GroupCase:
    """One group-attention problem: ``G`` groups of ``N`` slots, ``S`` shared per group."""

    name: str
    batch: int
    groups: int
    heads: int
    tokens: int
    num_shared: int
    head_dim: int
    dummy_mask: bool  # GTPT's dummy keypoint (slot 0 of group 0) is masked as a key

    @property
    def num_keys(self) -> int:
        return self.groups * self.num_shared + self.tokens - self.num_shared

    @property
    def pairs(self) -> int:
        return self.batch * self.groups * self.heads * self.tokens * self.num_keys

    @property
    def target_group(self) -> str:
        return "gtpt64" if self.name.startswith("gtpt") and self.batch == 64 else ""


@dataclass(frozen=True)
class GatheredCase:
    """Gathered attention: ``G`` groups of ``Nq`` queries select ``Nk`` of ``T`` buffer rows."""

    name: str
    batch: int
    groups: int
    heads: int
    queries: int
    buffer: int
    keys: int
    head_dim: int

    @property
    def pairs(self) -> int:
        return self.batch * self.groups * self.heads * self.queries * self.keys

    target_group = ""


#: GTPT's attention stages (gtpt.md section 3): (stage, groups, tokens per group, shared).
GTPT_STAGES = [
    ("coco L1-L4 MHSA", 1, 257, 0),
    ("coco L5-L6 MHSA", 1, 196, 0),
    ("coco L7-L10 MHGA", 3, 82, 6),
    ("coco L11-L12 MHGA", 3, 31, 6),
    ("wholebody L5-L6 MHSA", 1, 201, 0),
    ("wholebody L7-L10 MHGA", 3, 134, 6),
    ("wholebody L11-L12 MHGA", 3, 82, 6),
    ("training entire pass L7-L12", 3, 262, 6),
]
GTPT_VARIANTS = [("T", 8, 16), ("S/B", 8, 24)]  # (variant, heads, head_dim)


def gtpt_cases(batches: tuple[int, ...]) -> list[GroupCase]:
    return [
        GroupCase(f"gtpt-{variant} {stage} b{batch}", batch, groups, heads, tokens, shared,
                  head_dim, dummy_mask=groups > 1)
        for batch in batches
        for variant, heads, head_dim in GTPT_VARIANTS
        for stage, groups, tokens, shared in GTPT_STAGES
    ]  # fmt: skip


def large_cases() -> list[GroupCase]:
    return [
        GroupCase(f"large N={n} d={d}", 4, 1, 16, n, 0, d, dummy_mask=False)
        for d in (64, 128)
        for n in (1024, 2048, 4096)
    ]


def gathered_cases() -> list[GatheredCase]:
    # GTPT's coarse-to-fine step: 3 groups keep 76 of the 179 visual tokens left after layer 4;
    # and a large ViT-style selection of half of 4096 tokens.
    return [
        GatheredCase(f"gtpt-S/B c2f b{b}", b, 3, 8, 82, 179, 76, 24) for b in (1, 64)
    ] + [GatheredCase("large select 2048 of 4096 d=64", 4, 1, 16, 2048, 4096, 2048, 64)]


def correctness_cases() -> tuple[list[GroupCase], list[GatheredCase]]:
    """Tiny shapes for the CPU mode (Triton's interpreter is slow)."""
    groups = [
        GroupCase("tiny gtpt-like", 2, 3, 2, 21, 3, 24, dummy_mask=True),
        GroupCase("tiny mhsa", 2, 1, 2, 33, 0, 16, dummy_mask=False),
    ]
    gathered = [GatheredCase("tiny gathered", 2, 3, 2, 9, 20, 13, 24)]
    return groups, gathered


# ---------------------------------------------------------------------------------------------
# inputs


@dataclass
class GroupInputs:
    qkv: Tensor  # [B, G, N, 3, H, D] leaf, as the qkv projection produces it
    key_mask: Tensor | None
    scale: float
    num_shared: int

    def split(self) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v as ``[B, G, H, N, D]`` strided views (what MultiHeadGroupAttention passes)."""
        return self.qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)


def make_group_inputs(case: GroupCase, dtype: torch.dtype, seed: int = 0) -> GroupInputs:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    shape = (case.batch, case.groups, case.tokens, 3, case.heads, case.head_dim)
    qkv = torch.randn(shape, generator=gen).to(DEVICE, dtype)
    key_mask = None
    if case.dummy_mask:
        key_mask = torch.ones(case.batch, case.groups, case.tokens, dtype=torch.bool)
        key_mask[:, 0, 0] = False
        key_mask = key_mask.to(DEVICE)
    return GroupInputs(qkv, key_mask, case.head_dim**-0.5, case.num_shared)


@dataclass
class GatheredInputs:
    q: Tensor  # [B, G, H, Nq, D]
    kv: Tensor  # [B, T, 2, H, D]
    index: Tensor  # [B, G, Nk], distinct rows per group (FlexAttention masks are sets)
    scale: float

    def split(self) -> tuple[Tensor, Tensor, Tensor]:
        k, v = self.kv.permute(2, 0, 3, 1, 4).unbind(0)
        return self.q, k, v


def make_gathered_inputs(case: GatheredCase, dtype: torch.dtype, seed: int = 0) -> GatheredInputs:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(case.batch, case.groups, case.heads, case.queries, case.head_dim, generator=gen)
    kv = torch.randn(case.batch, case.buffer, 2, case.heads, case.head_dim, generator=gen)
    index = torch.stack([
        torch.stack([torch.randperm(case.buffer, generator=gen)[: case.keys]
                     for _ in range(case.groups)])
        for _ in range(case.batch)
    ])  # fmt: skip
    return GatheredInputs(
        q.to(DEVICE, dtype), kv.to(DEVICE, dtype), index.to(DEVICE), case.head_dim**-0.5
    )


# ---------------------------------------------------------------------------------------------
# competitors: each maps inputs to the attention output [B, G, H, N, D]


@dataclass
class Competitor:
    name: str
    run: Callable[..., Tensor]
    backward: bool = True  # supports autograd
    setup_ms: float | None = None  # one-off cost per input (FlexAttention's block mask)
    note: str = ""
    #: a context the check and the timing (forward and backward) run in
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext


#: programs per SM of our kernels on a persistent grid (a competitor of the default grid)
PERSISTENT_PROGRAMS_PER_SM = 4


def ours_persistent(ours: Callable[..., Tensor]) -> Competitor:
    """Our kernels launched on a persistent grid (:func:`tokenprune.kernels.persistent_grid`)."""
    from tokenprune.kernels import persistent_grid

    return Competitor(
        f"ours, persistent grid ({PERSISTENT_PROGRAMS_PER_SM}/SM)", ours,
        context=lambda: persistent_grid(PERSISTENT_PROGRAMS_PER_SM),
    )  # fmt: skip


def _masked_softmax_attention(q, keys, values, valid, scale):
    logits = (q @ keys.transpose(-1, -2)) * scale
    if valid is not None:
        logits = logits.masked_fill(~valid[:, :, None, None, :], float("-inf"))
    probs = torch.softmax(logits.float(), dim=-1).nan_to_num(0.0).to(q.dtype)
    return probs @ values


def group_eager(inp: GroupInputs) -> Tensor:
    q, k, v = inp.split()
    keys, values = group_keys(k, inp.num_shared), group_keys(v, inp.num_shared)
    valid = None if inp.key_mask is None else group_key_mask(inp.key_mask, inp.num_shared)
    return _masked_softmax_attention(q, keys, values, valid, inp.scale)


def group_sdpa(backend: SDPBackend) -> Callable[[GroupInputs], Tensor]:
    def run(inp: GroupInputs) -> Tensor:
        q, k, v = inp.split()
        keys, values = group_keys(k, inp.num_shared), group_keys(v, inp.num_shared)
        mask = None
        if inp.key_mask is not None:
            mask = group_key_mask(inp.key_mask, inp.num_shared).flatten(0, 1)[:, None, None]
        with sdpa_kernel(backend):
            out = F.scaled_dot_product_attention(
                q.flatten(0, 1), keys.flatten(0, 1), values.flatten(0, 1),
                attn_mask=mask, scale=inp.scale,
            )  # fmt: skip
        return out.unflatten(0, q.shape[:2])

    return run


def _group_key_index(case_groups: int, tokens: int, shared: int, device) -> Tensor:
    """``[G, Nk]`` positions of each group's keys among the ``G * N`` flattened slots."""
    rows = []
    for g in range(case_groups):
        shared_rows = [h * tokens + s for h in range(case_groups) for s in range(shared)]
        private_rows = [g * tokens + n for n in range(shared, tokens)]
        rows.append(shared_rows + private_rows)
    return torch.tensor(rows, device=device)


def group_gather_sdpa(inp: GroupInputs) -> Tensor:
    batch, groups, tokens = inp.qkv.shape[:3]
    q, _, _ = inp.split()
    index = _group_key_index(groups, tokens, inp.num_shared, q.device)
    # the qkv rows of all groups, [B, G*N, 3, H, D] as a view; one gather builds every
    # group's keys and values
    rows = inp.qkv.flatten(1, 2)[:, index]  # [B, G, Nk, 3, H, D]
    keys = rows[:, :, :, 1].transpose(2, 3)  # [B, G, H, Nk, D]
    values = rows[:, :, :, 2].transpose(2, 3)
    mask = None
    if inp.key_mask is not None:
        mask = group_key_mask(inp.key_mask, inp.num_shared).flatten(0, 1)[:, None, None]
    out = F.scaled_dot_product_attention(
        q.flatten(0, 1), keys.flatten(0, 1), values.flatten(0, 1), attn_mask=mask,
        scale=inp.scale,
    )  # fmt: skip
    return out.unflatten(0, (batch, groups))


def group_flex(inp: GroupInputs, compiled: bool) -> Competitor:
    """FlexAttention over all groups flattened into one sequence, with a group mask_mod."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    q, _, _ = inp.split()
    batch, groups, heads, tokens, dim = q.shape
    shared = inp.num_shared
    valid = (
        torch.ones(batch, groups * tokens, dtype=torch.bool, device=q.device)
        if inp.key_mask is None
        else inp.key_mask.flatten(1)
    )

    def mask_mod(b, h, q_idx, kv_idx):
        same_group = (q_idx // tokens) == (kv_idx // tokens)
        return ((kv_idx % tokens < shared) | same_group) & valid[b, kv_idx]

    build = torch.compile(create_block_mask) if compiled else create_block_mask
    block_mask = build(mask_mod, batch, None, groups * tokens, groups * tokens, device=DEVICE)
    setup_ms = None
    if GPU:
        setup_ms = triton.testing.do_bench(
            lambda: build(mask_mod, batch, None, groups * tokens, groups * tokens, device=DEVICE),
            return_mode="median",
        )
    attend = torch.compile(flex_attention) if compiled else flex_attention

    def run(inp: GroupInputs) -> Tensor:
        q, k, v = inp.split()

        def flat(t):
            return t.transpose(1, 2).reshape(batch, heads, groups * tokens, dim)

        out = attend(flat(q), flat(k), flat(v), block_mask=block_mask, scale=inp.scale)
        return out.reshape(batch, heads, groups, tokens, dim).transpose(1, 2)

    name = "flex (compiled)" if compiled else "flex (eager)"
    return Competitor(name, run, backward=GPU, setup_ms=setup_ms)


def group_ours(inp: GroupInputs) -> Tensor:
    q, k, v = inp.split()
    return group_attention(
        q, k, v, num_shared=inp.num_shared, key_mask=inp.key_mask, scale=inp.scale,
        backend="triton",
    )  # fmt: skip


def group_competitors(inp: GroupInputs, compile_: bool) -> list[Competitor]:
    comps = [ours_persistent(group_ours), Competitor("eager", group_eager)]
    if GPU:
        comps += [
            Competitor("sdpa math", group_sdpa(SDPBackend.MATH)),
            Competitor("sdpa efficient", group_sdpa(SDPBackend.EFFICIENT_ATTENTION)),
            Competitor("sdpa cudnn", group_sdpa(SDPBackend.CUDNN_ATTENTION)),
        ]
        if inp.key_mask is None and inp.qkv.dtype != torch.float32:
            comps.append(Competitor("sdpa flash", group_sdpa(SDPBackend.FLASH_ATTENTION)))
    else:
        comps.append(Competitor("sdpa math", group_sdpa(SDPBackend.MATH)))
    comps.append(Competitor("gather + sdpa", group_gather_sdpa))
    if compile_:
        comps.append(Competitor("eager (compiled)", torch.compile(group_eager)))
    comps.append(group_flex(inp, compiled=compile_ and GPU))
    return comps


def gathered_eager(inp: GatheredInputs) -> Tensor:
    q, k, v = inp.split()
    batch, groups, heads, _, dim = q.shape
    index = inp.index[:, :, None, :, None].expand(batch, groups, heads, -1, dim)
    keys = torch.gather(k.unsqueeze(1).expand(batch, groups, *k.shape[1:]), 3, index)
    values = torch.gather(v.unsqueeze(1).expand(batch, groups, *v.shape[1:]), 3, index)
    return keys, values


def gathered_gather_eager(inp: GatheredInputs) -> Tensor:
    q, _, _ = inp.split()
    keys, values = gathered_eager(inp)
    return _masked_softmax_attention(q, keys, values, None, inp.scale)


def gathered_gather_sdpa(inp: GatheredInputs) -> Tensor:
    q, _, _ = inp.split()
    keys, values = gathered_eager(inp)
    out = F.scaled_dot_product_attention(
        q.flatten(0, 1), keys.flatten(0, 1), values.flatten(0, 1), scale=inp.scale
    )
    return out.unflatten(0, q.shape[:2])


def gathered_flex(inp: GatheredInputs, compiled: bool) -> Competitor:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    q, _, _ = inp.split()
    batch, groups, heads, queries, dim = q.shape
    buffer = inp.kv.shape[1]
    selected = torch.zeros(batch, groups, buffer, dtype=torch.bool, device=q.device)
    selected.scatter_(2, inp.index, True)

    def mask_mod(b, h, q_idx, kv_idx):
        return selected[b, q_idx // queries, kv_idx]

    build = torch.compile(create_block_mask) if compiled else create_block_mask
    block_mask = build(mask_mod, batch, None, groups * queries, buffer, device=DEVICE)
    setup_ms = None
    if GPU:
        setup_ms = triton.testing.do_bench(
            lambda: build(mask_mod, batch, None, groups * queries, buffer, device=DEVICE),
            return_mode="median",
        )
    attend = torch.compile(flex_attention) if compiled else flex_attention

    def run(inp: GatheredInputs) -> Tensor:
        q, k, v = inp.split()
        flat_q = q.transpose(1, 2).reshape(batch, heads, groups * queries, dim)
        out = attend(flat_q, k, v, block_mask=block_mask, scale=inp.scale)
        return out.reshape(batch, heads, groups, queries, dim).transpose(1, 2)

    name = "flex (compiled)" if compiled else "flex (eager)"
    return Competitor(name, run, backward=GPU, setup_ms=setup_ms)


def gathered_ours(inp: GatheredInputs) -> Tensor:
    q, k, v = inp.split()
    return gathered_attention(q, k, v, inp.index, scale=inp.scale, backend="triton")


def gathered_competitors(inp: GatheredInputs, compile_: bool) -> list[Competitor]:
    comps = [
        ours_persistent(gathered_ours),
        Competitor("gather + eager", gathered_gather_eager),
        Competitor("gather + sdpa", gathered_gather_sdpa),
    ]
    if compile_:
        comps.append(Competitor("gather + sdpa (compiled)", torch.compile(gathered_gather_sdpa)))
    comps.append(gathered_flex(inp, compiled=compile_ and GPU))
    return comps


# ---------------------------------------------------------------------------------------------
# checking and timing


TOLERANCE = {torch.float16: 2e-2, torch.bfloat16: 6e-2, torch.float32: 2e-3}


def _leaves(inp) -> list[Tensor]:
    return [inp.qkv] if isinstance(inp, GroupInputs) else [inp.q, inp.kv]


def _with_leaves(inp, leaves):
    if isinstance(inp, GroupInputs):
        return GroupInputs(leaves[0], inp.key_mask, inp.scale, inp.num_shared)
    return GatheredInputs(leaves[0], leaves[1], inp.index, inp.scale)


def forward_backward(fn, inp, grad_out: Tensor | None):
    """Output and (if ``grad_out`` is given) input gradients of ``fn`` on fresh leaves."""
    leaves = [t.detach().clone().requires_grad_(grad_out is not None) for t in _leaves(inp)]
    out = fn(_with_leaves(inp, leaves))
    if grad_out is None:
        return out.detach(), []
    grads = torch.autograd.grad(out, leaves, grad_out)
    return out.detach(), list(grads)


def reference(inp, with_backward: bool):
    """float32 reference through tokenprune's PyTorch backend."""
    leaves32 = [t.float() for t in _leaves(inp)]
    inp32 = _with_leaves(inp, leaves32)
    if isinstance(inp, GroupInputs):
        def fn(x):
            q, k, v = x.split()
            return group_attention(q, k, v, num_shared=x.num_shared, key_mask=x.key_mask,
                                   scale=x.scale, backend="torch")  # fmt: skip
    else:
        def fn(x):
            q, k, v = x.split()
            return gathered_attention(q, k, v, x.index, scale=x.scale, backend="torch")
    gen = torch.Generator(device="cpu").manual_seed(1)
    out_shape = fn(inp32).shape
    grad_out = torch.randn(out_shape, generator=gen).to(DEVICE) if with_backward else None
    out, grads = forward_backward(fn, inp32, grad_out)
    return out, grads, grad_out


def check(fn, inp, ref, dtype) -> str | None:
    """None if ``fn`` reproduces the reference (outputs and gradients), else the reason."""
    ref_out, ref_grads, grad_out = ref
    try:
        out, grads = forward_backward(fn, inp, None if grad_out is None else grad_out.to(dtype))
    except Exception as error:  # a backend that cannot run this case
        return f"cannot run: {type(error).__name__}: {str(error).splitlines()[0][:80]}"
    tol = TOLERANCE[dtype]
    named_grads = zip(("dq/dqkv", "dkv"), grads, ref_grads, strict=False)  # 0, 1 or 2 grads
    for name, got, want in [("out", out, ref_out), *named_grads]:
        error = (got.float() - want).abs().max().item()
        scale = want.abs().max().item() + 1e-6
        if not error <= tol * max(scale, 1.0):
            return f"wrong {name}: max error {error:.3g}"
    return None


def time_ms(fn, inp, grad_out: Tensor | None) -> tuple[float, float | None]:
    """Median milliseconds with ``do_bench`` and with CUDA-graph replay (None if capture fails)."""
    leaves = [t.detach().clone().requires_grad_(grad_out is not None) for t in _leaves(inp)]
    x = _with_leaves(inp, leaves)
    if grad_out is None:
        def call():
            with torch.no_grad():
                fn(x)
    else:
        def call():
            fn(x).backward(grad_out)
    ms = triton.testing.do_bench(call, grad_to_none=leaves, return_mode="median")
    try:
        graph_ms = triton.testing.do_bench_cudagraph(
            call, grad_to_none=leaves, return_mode="median"
        )
    except Exception:  # some paths (host syncs, compiled graphs) cannot be captured
        graph_ms = None
    return ms, graph_ms


# ---------------------------------------------------------------------------------------------
# running and reporting


@dataclass
class Row:
    case: object
    mode: str
    ours: tuple[float, float | None] | None = None
    ours_problem: str | None = None
    others: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    setup_ms: dict[str, float] = field(default_factory=dict)

    def best_other(self, graph: bool) -> tuple[str, float] | None:
        """The fastest competitor that is not one of our own variants."""
        others = {n: t for n, t in self.others.items() if not n.startswith("ours")}
        times = {n: t[1] if graph else t[0] for n, t in others.items()}
        times = {n: t for n, t in times.items() if t is not None}
        if not times:
            return None
        name = min(times, key=times.get)
        return name, times[name]


def run_case(case, dtype, mode: str, compile_: bool, timing: bool) -> Row:
    if compile_:
        # compiled competitors are rebuilt per case; without a reset dynamo would stop
        # recompiling after its recompile limit and silently run them eagerly
        torch._dynamo.reset()
    grouped = isinstance(case, GroupCase)
    inp = make_group_inputs(case, dtype) if grouped else make_gathered_inputs(case, dtype)
    comps = group_competitors(inp, compile_) if grouped else gathered_competitors(inp, compile_)
    ours = group_ours if grouped else gathered_ours
    with_backward = mode == "fwd+bwd"
    ref = reference(inp, with_backward)
    grad_out = None if ref[2] is None else ref[2].to(dtype)
    row = Row(case, mode)
    row.ours_problem = check(ours, inp, ref, dtype)
    if row.ours_problem is None and timing:
        row.ours = time_ms(ours, inp, grad_out)
    for comp in comps:
        if with_backward and not comp.backward:
            row.problems[comp.name] = "no backward"
            continue
        with comp.context():
            problem = check(comp.run, inp, ref, dtype)
            if problem is not None:
                row.problems[comp.name] = problem
                continue
            if comp.setup_ms is not None:
                row.setup_ms[comp.name] = comp.setup_ms
            if timing:
                row.others[comp.name] = time_ms(comp.run, inp, grad_out)
            else:
                row.others[comp.name] = (float("nan"), None)
    return row


def useful_flops(case, mode: str) -> float:
    """FLOPs of the (query, key) pairs the layout allows: ``4 * pairs * head_dim`` forward
    (two matmuls), 2.5 times that more for the backward (five)."""
    return 4 * case.pairs * case.head_dim * (3.5 if mode == "fwd+bwd" else 1.0)


def useful_tflops(case, mode: str, ms: float) -> float:
    return useful_flops(case, mode) / (ms * 1e-3) / 1e12


# ---------------------------------------------------------------------------------------------
# roofline

#: Dense tensor-core peaks (TFLOP/s, fp16/bf16 with fp32 accumulation) and HBM bandwidth
#: (TB/s) from NVIDIA's datasheets (SXM parts).
PEAKS = {"H100": (989.0, 3.35), "H200": (989.0, 4.8)}


def compulsory_bytes(case, mode: str, element_size: int) -> int:
    """Bytes every implementation must move: q, k, v read (for gathered attention the selected
    buffer rows, counted as ``min(T, G * Nk)`` per batch and head) and the output (and
    log-sum-exp, float32) written once; the backward also reads the output, its gradient and the
    log-sum-exp and writes dq, dk and dv once."""
    if isinstance(case, GroupCase):
        rows_q = case.batch * case.groups * case.heads * case.tokens
        rows_kv = rows_q  # a group's keys are its own slots and the shared slots of all groups
        stats = rows_q
    else:
        rows_q = case.batch * case.groups * case.heads * case.queries
        # the selected buffer rows only: at most the buffer, at most every group's picks
        rows_kv = case.batch * case.heads * min(case.buffer, case.groups * case.keys)
        stats = rows_q
    q = out = rows_q * case.head_dim * element_size
    kv = 2 * rows_kv * case.head_dim * element_size
    forward = q + kv + out + 4 * stats
    if mode == "fwd":
        return forward
    backward = (q + kv + out) + out + 4 * stats + (q + kv)  # reads, dO, lse; writes dq, dk, dv
    return forward + backward


def roofline(case, mode: str, element_size: int = 2) -> dict:
    """FLOPs, bytes, arithmetic intensity and the ideal microseconds on each GPU of
    :data:`PEAKS`: ``max(FLOPs / peak, bytes / bandwidth)``."""
    flops, nbytes = useful_flops(case, mode), compulsory_bytes(case, mode, element_size)
    ideal = {gpu: max(flops / (tflops * 1e12), nbytes / (tbps * 1e12)) * 1e6
             for gpu, (tflops, tbps) in PEAKS.items()}  # fmt: skip
    return {"gflop": flops / 1e9, "mb": nbytes / 1e6, "intensity": flops / nbytes,
            "ideal_us": ideal}  # fmt: skip


def device_peak_name() -> str | None:
    """The :data:`PEAKS` entry of this run's GPU (None if not one of them)."""
    if not GPU:
        return None
    name = torch.cuda.get_device_name()
    if "PCIe" in name or "GH200" in name or "NVL" in name:
        return None  # other clocks and bandwidth than the SXM parts of PEAKS
    return next((gpu for gpu in PEAKS if gpu in name), None)


def roofline_table(cases, modes, element_size: int, measured: dict | None = None) -> list[str]:
    """A markdown table of :func:`roofline` per (case, mode); with ``measured`` (``{(case
    name, mode): ms}``) on a GPU of :data:`PEAKS`, also the share of the ideal time reached."""
    gpu = device_peak_name()
    ridge = {name: tflops / tbps for name, (tflops, tbps) in PEAKS.items()}
    lines = [
        "### roofline",
        "",
        "Ideal time = max(FLOPs / tensor-core peak, compulsory bytes / HBM bandwidth); ridge "
        + ", ".join(f"{n} {r:.0f} FLOP/B" for n, r in ridge.items()) + ". Compulsory bytes: "
        "q, k, v read and out written once (the backward: q, k, v, out, dO read, dq, dk, dv "
        "written once).",
        "",
        "| case | mode | GFLOP | MB | FLOP/B | "
        + " | ".join(f"ideal us {n}" for n in PEAKS)
        + (f" | measured us | % of {gpu} roofline |" if gpu and measured else " |"),
        "|---|---|---:|---:|---:|" + "---:|" * len(PEAKS)
        + ("---:|---:|" if gpu and measured else ""),
    ]
    for case in cases:
        for mode in modes:
            r = roofline(case, mode, element_size)
            cells = [f"{case.name}", mode, f"{r['gflop']:.3f}", f"{r['mb']:.2f}",
                     f"{r['intensity']:.0f}", *(f"{r['ideal_us'][n]:.1f}" for n in PEAKS)]
            if gpu and measured:
                ms = measured.get((case.name, mode))
                cells += (["n/a", "n/a"] if ms is None else
                          [f"{ms * 1e3:.1f}", f"{100 * r['ideal_us'][gpu] / (ms * 1e3):.0f}%"])
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _fmt(ms: float | None) -> str:
    return "n/a" if ms is None else f"{ms:.4f}"


def report(rows: list[Row], dtype, timing: bool, header: list[str]) -> str:
    lines = [*header, ""]
    if not timing:
        lines += ["| case | mode | ours | competitors agreeing with the reference | problems |",
                  "|---|---|---|---|---|"]
        for row in rows:
            problems = "; ".join(f"{n}: {p}" for n, p in row.problems.items()) or "-"
            lines.append(
                f"| {row.case.name} | {row.mode} | {row.ours_problem or 'ok'} | "
                f"{', '.join(row.others) or '-'} | {problems} |"
            )
        return "\n".join(lines) + "\n"

    for mode in ("fwd", "fwd+bwd"):
        mode_rows = [r for r in rows if r.mode == mode]
        if not mode_rows:
            continue
        lines += [
            f"### {mode}",
            "",
            "| case | ours ms | ours ms (graph) | best competitor | its ms | speedup "
            "| speedup (graph) | ours TFLOP/s |",
            "|---|---:|---:|---|---:|---:|---:|---:|",
        ]
        for row in mode_rows:
            if row.ours is None:
                lines.append(f"| {row.case.name} | FAILED: {row.ours_problem} | | | | | | |")
                continue
            best = row.best_other(graph=False)
            best_graph = row.best_other(graph=True)
            speed = "-" if best is None else f"{best[1] / row.ours[0]:.2f}x"
            speed_graph = (
                "-" if best_graph is None or row.ours[1] is None
                else f"{best_graph[1] / row.ours[1]:.2f}x"
            )  # fmt: skip
            lines.append(
                f"| {row.case.name} | {row.ours[0]:.4f} | {_fmt(row.ours[1])} | "
                f"{best[0] if best else '-'} | {_fmt(best[1] if best else None)} | {speed} | "
                f"{speed_graph} | {useful_tflops(row.case, mode, row.ours[0]):.1f} |"
            )
        lines.append("")
    lines += ["### all competitors (median ms, do_bench / CUDA graph)", ""]
    for row in rows:
        parts = [f"{n} {_fmt(t[0])}/{_fmt(t[1])}" for n, t in row.others.items()]
        parts += [f"{n}: {p}" for n, p in row.problems.items()]
        parts += [f"{n} block-mask build {ms:.4f}" for n, ms in row.setup_ms.items()]
        lines.append(f"- {row.case.name} [{row.mode}]: " + "; ".join(parts))
    lines += ["", *targets(rows, dtype)]
    measured = {(row.case.name, row.mode): row.ours[0] for row in rows if row.ours}
    cases = list({row.case.name: row.case for row in rows}.values())
    modes = list(dict.fromkeys(row.mode for row in rows))
    lines += ["", *roofline_table(cases, modes, dtype.itemsize, measured)]
    return "\n".join(lines) + "\n"


def targets(rows: list[Row], dtype) -> list[str]:
    """The issue's targets, checked on this run."""
    lines = ["### targets", ""]
    for mode, goal in (("fwd", 1.5), ("fwd+bwd", 1.3)):
        speedups = [
            (row.case.name, best[1] / row.ours[0])
            for row in rows
            if row.mode == mode and row.case.target_group == "gtpt64" and row.ours
            and (best := row.best_other(graph=False)) is not None
        ]  # fmt: skip
        if speedups:
            worst = min(speedups, key=lambda item: item[1])
            verdict = "met" if worst[1] >= goal else f"MISSED (worst {worst[1]:.2f}x: {worst[0]})"
            lines.append(f"- group attention {mode} >= {goal}x the best competitor at every "
                         f"GTPT stage, batch 64: {verdict}")  # fmt: skip
    for row in rows:
        if (row.mode == "fwd" and isinstance(row.case, GroupCase) and row.ours
                and row.case.tokens == 4096 and row.case.head_dim == 64):  # fmt: skip
            tflops = useful_tflops(row.case, "fwd", row.ours[0])
            verdict = "met" if tflops >= 300 else f"MISSED by {300 - tflops:.0f} TFLOP/s"
            lines.append(
                f"- N=4096, head_dim 64, {str(dtype).removeprefix('torch.')} forward >= 300 "
                f"TFLOP/s: {tflops:.0f} ({verdict})"
            )
    return lines


def environment() -> list[str]:
    device = torch.cuda.get_device_name() if GPU else f"CPU ({platform.machine()})"
    return [
        f"device: {device}",
        f"torch {torch.__version__}, triton {triton.__version__}, CUDA {torch.version.cuda}, "
        f"cuDNN {torch.backends.cudnn.version() if GPU else None}, "
        f"tokenprune {tokenprune.__version__}, Python {platform.python_version()}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)  # fmt: skip
    parser.add_argument("--suite", choices=["all", "gtpt", "large", "gathered"], default="all",
                        help="the GPU cases: GTPT's stage shapes, large unpruned shapes, "
                        "gathered attention, or all")  # fmt: skip
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16",
                        help="dtype of the GPU cases (the CPU mode runs float32)")
    parser.add_argument("--modes", nargs="+", choices=["fwd", "fwd+bwd"],
                        default=["fwd", "fwd+bwd"], help="passes to time")  # fmt: skip
    parser.add_argument("--batches", type=int_at_least(1), nargs="+", default=[1, 64],
                        help="batch sizes of GTPT's stage shapes")  # fmt: skip
    parser.add_argument("--match", nargs="+",
                        help="only the GPU cases whose name contains one of these texts "
                        "(default: every case)")  # fmt: skip
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the torch.compile competitors")  # fmt: skip
    parser.add_argument("--output", type=Path, help="write the markdown report here "
                        "(default: print only)")  # fmt: skip
    parser.add_argument("--roofline", action=argparse.BooleanOptionalAction, default=False,
                        help="only print the roofline model of the GPU cases (runs nothing)")
    args = parser.parse_args(argv)
    if args.roofline:
        cases = []
        if args.suite in ("all", "gtpt"):
            cases += gtpt_cases(tuple(args.batches))
        if args.suite in ("all", "large"):
            cases += large_cases()
        if args.suite in ("all", "gathered"):
            cases += gathered_cases()
        element_size = getattr(torch, args.dtype).itemsize
        text = "\n".join([f"# tokenprune attention kernels: roofline model ({args.dtype})", "",
                          *roofline_table(cases, args.modes, element_size)]) + "\n"
        print(text)
        if args.output is not None:
            write_text_atomic(args.output, text)
        return 0

    dtype = getattr(torch, args.dtype) if GPU else torch.float32
    if GPU:
        group_list, gathered_list = [], []
        if args.suite in ("all", "gtpt"):
            group_list += gtpt_cases(tuple(args.batches))
        if args.suite in ("all", "large"):
            group_list += large_cases()
        if args.suite in ("all", "gathered"):
            gathered_list = gathered_cases()
    else:
        group_list, gathered_list = correctness_cases()
    if args.match is not None and GPU:
        group_list = [c for c in group_list if any(m in c.name for m in args.match)]
        gathered_list = [c for c in gathered_list if any(m in c.name for m in args.match)]
    title = "timings" if GPU else "correctness only (no GPU: reduced mode, no timing)"
    header = [f"# tokenprune attention kernels: {title}", "", *environment(),
              f"dtype: {str(dtype).removeprefix('torch.')}"]  # fmt: skip
    print("\n".join(header), flush=True)

    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager FlexAttention warns that it is unfused
        for case in [*group_list, *gathered_list]:
            for mode in args.modes:
                row = run_case(case, dtype, mode, compile_=args.compile, timing=GPU)
                rows.append(row)
                status = row.ours_problem or (f"{row.ours[0]:.4f} ms" if row.ours else "ok")
                print(f"{case.name} [{mode}]: ours {status}", flush=True)
    text = report(rows, dtype, GPU, header)
    print(text)
    if args.output is not None:
        write_text_atomic(args.output, text)
    failures = [r for r in rows if r.ours_problem is not None]
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
