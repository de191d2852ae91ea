"""How the Triton launchers launch: grid, 64-bit offsets, alignment, device guard, routing.

These are the GPU-only failure modes the interpreter cannot show (it has no grid limits, no
int32 address arithmetic and no devices): the launch plan is a pure function of shapes and
strides, so the tests assert on the plan the real launchers make, with meta tensors standing in
for tensors too large to allocate, and run the interpreter where a plan changes the kernel.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from tokenprune import group_attention, group_attention_scored
from tokenprune.attention import builtin_backends, gathered_attention
from tokenprune.attention.backends import resolve_backend
from tokenprune.attention.reference import gathered_attention_torch, group_attention_torch

pytest.importorskip("triton", reason="the Triton kernels need the 'kernels' extra")

from tokenprune.kernels import common, gathered_attention_triton, group_attention_triton
from tokenprune.kernels.common import (
    ALIGN_ELEMENTS,
    MAX_GRID,
    WIDE_OFFSET_SPAN,
    LaunchPlan,
    capture_launches,
    device_guard,
    max_offset,
    plan_launch,
)
from tokenprune.kernels.gathered_attention import (
    gathered_attention_backward,
    gathered_attention_forward,
)
from tokenprune.kernels.group_attention import group_attention_backward, group_attention_forward

CUDA_Y_LIMIT = 65_535


@pytest.fixture
def gpu_tiles(monkeypatch):
    """Plan with the tiles a GPU gets (the interpreter's are 16 x 16)."""
    monkeypatch.setattr(common, "INTERPRETED", False)


def meta_qkv(batch, groups, heads, tokens, head_dim, dtype=torch.float16):
    """q, k, v as the module passes them: strided views of one ``[B, G, N, 3, H, D]`` qkv."""
    qkv = torch.empty(batch, groups, tokens, 3, heads, head_dim, device="meta", dtype=dtype)
    return [qkv[:, :, :, i].permute(0, 1, 3, 2, 4) for i in range(3)]


def group_plans(q, k, v, num_shared=0, backward=True):
    with capture_launches() as launches:
        out, lse, _ = group_attention_forward(q, k, v, None, num_shared, 0.2, 0)
        if backward:
            group_attention_backward(out, q, k, v, out, lse, None, num_shared, 0.2, None)
    return [record.plan for record in launches]


def assert_launchable(plan: LaunchPlan):
    assert len(plan.grid) == 1, "every launch is one-dimensional"
    assert 0 < plan.grid[0] <= MAX_GRID
    assert plan.grid[0] == plan.tiles * plan.rows


# ---------------------------------------------------------------------------------------------
# F3: the grid


def test_gtpt_fine_stage_beyond_batch_2730_is_planned_on_grid_axis_0(gpu_tiles):
    q, k, v = meta_qkv(2731, 3, 8, 82, 24)  # B * G * H = 65,544 > 65,535
    plans = group_plans(q, k, v, num_shared=6)
    assert [p.kind for p in plans] == ["fwd", "bwd_dq", "bwd_dkdv"]
    for plan in plans:
        assert plan.rows == 2731 * 3 * 8 > CUDA_Y_LIMIT
        assert_launchable(plan)
    assert plans[0].tiles == 2  # 82 queries in 64-row tiles: tiles of one row are consecutive


def test_gathered_launch_with_many_rows_is_planned_on_grid_axis_0(gpu_tiles):
    q = torch.empty(9000, 1, 8, 40, 32, device="meta", dtype=torch.bfloat16)
    k = torch.empty(9000, 8, 50, 32, device="meta", dtype=torch.bfloat16)
    index = torch.empty(9000, 1, 30, device="meta", dtype=torch.int64)
    with capture_launches() as launches:
        out, lse = gathered_attention_forward(q, k, k, index, None, 0.2)
        gathered_attention_backward(out, q, k, k, index, None, out, lse, 0.2)
    assert [r.plan.kind for r in launches] == ["fwd", "bwd_dq", "bwd_dkdv"]
    for record in launches:
        assert record.plan.rows == 72_000 > CUDA_Y_LIMIT
        assert_launchable(record.plan)


def test_launch_beyond_cuda_grid_limit_raises():
    with pytest.raises(ValueError, match="more than CUDA's 2147483647"):
        plan_launch("fwd", 2**31, 1, 1, 16, (), ())


def test_interpreter_launches_decode_the_one_dimensional_grid():
    """Several query tiles and several (batch, group, head) rows in one launch: every tile lands
    on its own rows (compared with the reference)."""
    gen = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, 3, 2, 37, 16, generator=gen) for _ in range(3))
    with capture_launches() as launches:
        group_attention_forward(q, k, v, None, 2, 0.25, 0)
    assert launches[0].plan.tiles == 3 and launches[0].plan.rows == 12
    out = group_attention(q, k, v, num_shared=2, scale=0.25, backend="triton")
    expected = group_attention(q, k, v, num_shared=2, scale=0.25, backend="torch")
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# F4: 64-bit offsets


def test_max_offset_counts_every_axis():
    t = torch.empty_strided((2, 3, 5), (100, 7, 1), device="meta")
    assert max_offset(t) == 100 + 2 * 7 + 4
    assert max_offset(torch.empty(0, 5, device="meta")) == 0


@pytest.mark.parametrize("axis", ["n", "g", "h"])
def test_a_large_stride_on_any_axis_makes_the_launch_use_int64_offsets(gpu_tiles, axis):
    """Not only the batch index: a token, group or head stride whose product with its index
    reaches the int32 range (a sequence-first view, say) switches every kernel to int64. (q, k
    and v share one layout: the kernels take one set of strides for the three.)"""
    shape = (1, 2, 2, 3, 16)
    small = {"b": 4096, "g": 1024, "h": 512, "n": 16, "d": 1}
    strides = dict(small)
    strides[axis] = WIDE_OFFSET_SPAN  # index 1 times this stride already reaches the limit
    q = torch.empty_strided(shape, tuple(strides.values()), device="meta", dtype=torch.float16)
    narrow = torch.empty_strided(shape, tuple(small.values()), device="meta", dtype=torch.float16)
    assert all(p.wide_offsets for p in group_plans(q, q, q))
    assert not any(p.wide_offsets for p in group_plans(narrow, narrow, narrow))


def test_int64_offsets_just_below_the_limit_stay_int32(gpu_tiles):
    shape = (1, 1, 1, 2, 16)
    below = torch.empty_strided(shape, (1, 1, 1, WIDE_OFFSET_SPAN - 16, 1), device="meta")
    at = torch.empty_strided(shape, (1, 1, 1, WIDE_OFFSET_SPAN - 15, 1), device="meta")
    assert max_offset(below) == WIDE_OFFSET_SPAN - 1
    assert not any(p.wide_offsets for p in group_plans(below, below, below))
    assert all(p.wide_offsets for p in group_plans(at, at, at))


def test_int64_offsets_reach_the_kernels_and_compute_the_same(monkeypatch):
    """Force the int64 variant in the interpreter (no tensor here is big enough to need it):
    every launch is planned wide, and outputs and gradients match the int32 variant."""
    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 2, 2, 19, 24, generator=gen) for _ in range(3))
    buffer = torch.randn(1, 2, 11, 24, generator=gen)
    index = torch.randint(0, 11, (1, 2, 9), generator=gen)

    def run():
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v, buffer)]
        out = group_attention(*leaves[:3], num_shared=3, backend="triton")
        out2 = gathered_attention(leaves[0], leaves[3], leaves[3], index, backend="triton")
        grads = torch.autograd.grad((out.sum(), out2.square().sum()), leaves)
        return [out, out2, *grads]

    narrow = run()
    monkeypatch.setattr(common, "WIDE_OFFSET_SPAN", 1)
    with capture_launches() as launches:
        group_attention_forward(q, k, v, None, 3, 0.2, 0)
    assert launches[0].kwargs["WIDE"] is True
    wide = run()
    for a, b in zip(narrow, wide, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# F2: row alignment


def test_head_dim_24_rows_are_planned_aligned_when_strides_allow(gpu_tiles):
    q, k, v = meta_qkv(2, 3, 8, 82, 24)  # qkv rows of 3 * 8 * 24 elements, heads 24 apart
    plans = group_plans(q, k, v, num_shared=6)
    assert all(p.align == ALIGN_ELEMENTS for p in plans)
    q, k, v = meta_qkv(2, 3, 8, 82, 20)  # 20 is not a multiple of 8: no promise
    assert all(p.align == 1 for p in group_plans(q, k, v, num_shared=6))
    odd = torch.empty_strided((2, 3, 8, 82, 24), (60000, 20000, 2500, 25, 1), device="meta")
    assert all(p.align == 1 for p in group_plans(odd, odd, odd, num_shared=6))


def test_misaligned_base_address_is_not_promised(gpu_tiles):
    storage = torch.zeros(2 * 3 * 4 * 24 + 1)
    q = storage[1:].view(2, 3, 1, 4, 24)  # starts 4 bytes past a 16-byte boundary
    assert common.row_alignment(24, q) == 1
    assert common.row_alignment(24, storage[:-1].view(2, 3, 1, 4, 24)) == ALIGN_ELEMENTS


def test_aligned_interpreter_run_through_strided_views_matches_the_reference():
    gen = torch.Generator().manual_seed(4)
    qkv = torch.randn(2, 2, 21, 3, 2, 24, generator=gen)
    q, k, v = (qkv[:, :, :, i].permute(0, 1, 3, 2, 4) for i in range(3))
    with capture_launches() as launches:
        group_attention_forward(q, k, v, None, 2, 0.2, 0)
    assert launches[0].plan.align == ALIGN_ELEMENTS
    out = group_attention(q, k, v, num_shared=2, backend="triton")
    torch.testing.assert_close(out, group_attention(q, k, v, num_shared=2, backend="torch"))


# ---------------------------------------------------------------------------------------------
# F5: device guard


def test_device_guard_selects_the_tensors_gpu():
    guard = device_guard(torch.device("cuda", 1))
    assert isinstance(guard, torch.cuda.device) and guard.idx == 1
    assert isinstance(device_guard(torch.device("cpu")), contextlib.nullcontext)


def test_every_launch_runs_under_the_guard_of_its_tensors_device(monkeypatch):
    entered = []

    @contextlib.contextmanager
    def recording_guard(device):
        entered.append(device)
        yield

    monkeypatch.setattr(common, "device_guard", recording_guard)
    q = torch.randn(1, 2, 1, 5, 16, requires_grad=True)
    group_attention(q, q, q, num_shared=1, backend="triton").sum().backward()
    index = torch.tensor([[[0, 3], [1, 1]]])
    gathered_attention(q, q[:, 0], q[:, 0], index, backend="triton").sum().backward()
    assert entered == [q.device] * 6  # forward, dq and dk/dv of each op


# ---------------------------------------------------------------------------------------------
# F7: routing of float32


@pytest.fixture
def compiled_triton(monkeypatch):
    """Route as on a machine with a GPU (the suite runs the interpreter, which is CPU-only)."""
    monkeypatch.setattr(builtin_backends, "triton_interpreter_enabled", lambda: False)


@pytest.mark.parametrize(
    "op, triton_impl, torch_impl",
    [
        ("group_attention", group_attention_triton, group_attention_torch),
        ("gathered_attention", gathered_attention_triton, gathered_attention_torch),
    ],
)
def test_auto_sends_float32_cuda_tensors_to_torch_and_half_precision_to_triton(
    compiled_triton, op, triton_impl, torch_impl
):
    with FakeTensorMode():
        tensors = {
            dtype: torch.empty(2, 3, 8, 82, 24, device="cuda", dtype=dtype)
            for dtype in (torch.float16, torch.bfloat16, torch.float32)
        }
    assert resolve_backend(op, "auto", tensors[torch.float16]) is triton_impl
    assert resolve_backend(op, "auto", tensors[torch.bfloat16]) is triton_impl
    assert resolve_backend(op, "auto", tensors[torch.float32]) is torch_impl
    # asked for by name, the float32 kernels still run
    assert resolve_backend(op, "triton", tensors[torch.float32]) is triton_impl


def test_triton_auto_support_gives_the_reason():
    q = torch.empty(1, 1, 1, 4, 16)
    assert "float32" in builtin_backends.triton_auto_support(q)
    assert builtin_backends.triton_auto_support(q.half()) is None


# ---------------------------------------------------------------------------------------------
# F6: a deterministic gathered backward when requested


@pytest.fixture
def deterministic():
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(previous)


def _gathered_grads(backend, q, buffer, index, key_mask):
    leaves = [t.clone().requires_grad_(True) for t in (q, buffer)]
    out = gathered_attention(leaves[0], leaves[1], leaves[1] * 0.5, index, key_mask=key_mask,
                             backend=backend)  # fmt: skip
    return torch.autograd.grad(out.square().sum(), leaves)


def test_deterministic_mode_adds_per_slot_gradients_in_a_fixed_order(deterministic):
    """Keys selected by several groups and twice within a group: in deterministic mode the
    dk/dv kernel writes one slot per selected key (no atomics) and index_add_ adds them; the
    gradients match the reference and repeat bit for bit."""
    gen = torch.Generator().manual_seed(6)
    q = torch.randn(2, 3, 2, 7, 16, generator=gen)
    buffer = torch.randn(2, 2, 9, 16, generator=gen)
    index = torch.tensor([[0, 3, 3, 5], [3, 0, 8, 1], [5, 5, 5, 2]]).expand(2, 3, 4)
    key_mask = torch.ones(2, 3, 4, dtype=torch.bool)
    key_mask[1, 2, 1] = key_mask[0, 0, 3] = False
    with capture_launches() as launches:
        out, lse = gathered_attention_forward(q, buffer, buffer, index, key_mask, 0.25)
        gathered_attention_backward(out, q, buffer, buffer, index, key_mask, out, lse, 0.25)
    assert launches[-1].kwargs["PER_SLOT"] is True
    first = _gathered_grads("triton", q, buffer, index, key_mask)
    again = _gathered_grads("triton", q, buffer, index, key_mask)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    for ours, reference in zip(first, _gathered_grads("torch", q, buffer, index, key_mask),
                               strict=True):  # fmt: skip
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_default_mode_uses_atomics():
    q = torch.randn(1, 2, 1, 3, 16)
    index = torch.tensor([[[0, 1], [1, 1]]])
    with capture_launches() as launches:
        out, lse = gathered_attention_forward(q, q[:, 0], q[:, 0], index, None, 0.25)
        gathered_attention_backward(out, q, q[:, 0], q[:, 0], index, None, out, lse, 0.25)
    assert launches[-1].kwargs["PER_SLOT"] is False


def test_size_one_axes_with_odd_strides_are_not_promised_aligned():
    """Padded lanes of a tile step along size-1 axes too (a one-token group, one group): their
    strides must keep rows aligned as well."""
    odd = torch.empty_strided((1, 1, 1, 1, 24), (1000, 1000, 1000, 5, 1), device="meta")
    assert common.row_alignment(24, odd) == 1
    even = torch.empty_strided((1, 1, 1, 1, 24), (1000, 1000, 1000, 24, 1), device="meta")
    assert common.row_alignment(24, even) == ALIGN_ELEMENTS


def test_int32_gather_indices_reach_the_kernels_as_int64():
    """With wide offsets ``row * stride`` is computed in the index's dtype: the launchers
    widen an int32 index (the ops accept it when called directly)."""
    q = torch.randn(1, 2, 1, 3, 16)
    buffer = torch.randn(1, 1, 6, 16)
    index = torch.tensor([[[0, 5], [3, 3]]], dtype=torch.int32)
    with capture_launches() as launches:
        out, lse = gathered_attention_forward(q, buffer, buffer, index, None, 0.25)
        gathered_attention_backward(out, q, buffer, buffer, index, None, out, lse, 0.25)
    assert all(record.args[3].dtype == torch.int64 for record in launches)
    ours = torch.ops.tokenprune.gathered_attention(q, buffer, buffer, index, None, 0.25)[0]
    expected = gathered_attention(q, buffer, buffer, index.long(), scale=0.25, backend="torch")
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# The host path: eager calls skip the dispatcher, observers see the ops


def _group_call(q, k, v, key_mask=None):
    out, logits = group_attention_scored(q, k, v, num_shared=2, key_mask=key_mask, score_queries=2,
                                  backend="triton")  # fmt: skip
    # a loss through the output, the scoring logits and their log-sum-exp (grad_lse)
    lse = torch.where(torch.isfinite(logits.lse), logits.lse, 0.0)
    return out.square().sum() + logits.probs().square().sum() + lse.sum() * 0.1


def _group_grads(q, k, v, key_mask):
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    loss = _group_call(*leaves, key_mask=key_mask)
    return (loss, *torch.autograd.grad(loss, leaves))


def _group_inputs(seed=8):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, 3, 2, 7, 16, generator=gen) for _ in range(3))
    key_mask = torch.rand(2, 3, 7, generator=gen) > 0.3
    key_mask[1, :, :] = False  # a batch element without any visible key
    return q, k, v, key_mask


def test_plain_eager_calls_skip_the_dispatcher_and_observed_calls_use_the_ops():
    q, k, v, _ = _group_inputs()
    leaf = q.clone().requires_grad_(True)
    eager = group_attention(leaf, k, v, num_shared=2, backend="triton")
    assert type(eager.grad_fn).__name__ == "_EagerGroupAttentionBackward"
    with FlopCounterMode(display=False) as counter:
        observed = group_attention(leaf, k, v, num_shared=2, backend="triton")
    assert type(observed.grad_fn).__name__ != "_EagerGroupAttentionBackward"
    assert counter.get_total_flops() > 0  # the op's FLOP formula saw the call
    assert torch.equal(eager, observed)


def test_the_eager_path_computes_what_the_ops_compute_forward_and_backward():
    """Outputs, scoring logits, lse and gradients (masked keys, an empty batch element, a loss
    through the log-sum-exp) agree bit for bit between the eager path and the ops."""
    q, k, v, key_mask = _group_inputs()
    eager = _group_grads(q, k, v, key_mask)
    with FlopCounterMode(display=False):  # an observer: the backends call the ops
        through_ops = _group_grads(q, k, v, key_mask)
    for a, b in zip(eager, through_ops, strict=True):
        assert torch.equal(a, b)
    grads = eager[1:]
    assert all(torch.isfinite(g).all() for g in grads)
    assert all(g[1].abs().max() == 0 for g in grads), "the empty batch element has no grads"
    assert all(g[0].abs().max() > 0 for g in grads)


def test_gathered_eager_path_matches_the_ops_and_checks_the_index_range():
    gen = torch.Generator().manual_seed(9)
    q = torch.randn(1, 2, 2, 5, 16, generator=gen)
    buffer = torch.randn(1, 2, 6, 16, generator=gen)
    index = torch.tensor([[[0, 5, 5], [2, 1, 3]]])

    def grads():
        leaves = [t.clone().requires_grad_(True) for t in (q, buffer)]
        out = gathered_attention(leaves[0], leaves[1], leaves[1], index, backend="triton")
        return (out, *torch.autograd.grad(out.square().sum(), leaves))

    eager = grads()
    assert type(eager[0].grad_fn).__name__ == "_EagerGatheredAttentionBackward"
    with FlopCounterMode(display=False):
        through_ops = grads()
    for a, b in zip(eager, through_ops, strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="index"):
        gathered_attention(q, buffer, buffer, index + 1, backend="triton")


def test_dispatcher_observers():
    from tokenprune.kernels.dispatch import dispatcher_observed

    q = torch.randn(1, 1, 1, 2, 16)
    assert not dispatcher_observed(q, q, q, None)
    assert dispatcher_observed(q, torch.nn.Parameter(q), q, None)  # a tensor subclass
    with FlopCounterMode(display=False):
        assert dispatcher_observed(q, q, q, None)
    with FakeTensorMode():
        assert dispatcher_observed(q, q, q, None)
    seen = []
    torch.jit.trace(lambda x: seen.append(dispatcher_observed(x)) or x * 2, (q,),
                    check_trace=False)  # fmt: skip
    assert seen == [True]


def test_q_k_v_laid_out_differently_are_copied_to_one_layout():
    """The kernels take one set of strides for q, k and v: views of one qkv projection pass as
    they are, other layouts are copied (and the results are the same)."""
    from tokenprune.kernels.common import one_layout

    qkv = torch.randn(2, 3, 7, 3, 2, 16)
    q, k, v = (qkv[:, :, :, i].transpose(2, 3) for i in range(3))
    assert all(a is b for a, b in zip(one_layout(q, k, v), (q, k, v), strict=True))
    k_other = k.contiguous()
    copied = one_layout(q, k_other, v)
    assert len({t.stride() for t in copied}) == 1 and copied[1].stride(-1) == 1
    expected = group_attention(q, k_other, v, num_shared=2, backend="torch")
    ours = group_attention(q, k_other, v, num_shared=2, backend="triton")
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    # a last stride other than 1
    q_t = q.transpose(-1, -2).contiguous().transpose(-1, -2)
    assert q_t.stride(-1) != 1
    ours = group_attention(q_t, q_t, q_t, num_shared=2, backend="triton")
    torch.testing.assert_close(ours, group_attention(q, q, q, num_shared=2, backend="torch"),
                               rtol=1e-5, atol=1e-5)  # fmt: skip


def test_backward_op_accepts_out_in_any_layout():
    """The dq kernel reads ``out`` in the heads-last layout the forward allocates; an ``out``
    passed to the backward op in another layout is copied into it, with the same gradients."""
    q, k, v, key_mask = _group_inputs()
    out, lse, _ = torch.ops.tokenprune.group_attention(q, k, v, key_mask, 2, 0.25, 0)
    grad = torch.randn_like(q)
    heads_last = torch.ops.tokenprune.group_attention_backward(
        grad, q, k, v, out, lse, key_mask, 2, 0.25, None
    )
    contiguous = torch.ops.tokenprune.group_attention_backward(
        grad, q, k, v, out.contiguous(), lse, key_mask, 2, 0.25, None
    )
    for a, b in zip(heads_last, contiguous, strict=True):
        assert torch.equal(a, b)


def test_cached_plans_still_see_a_misaligned_base_address(gpu_tiles):
    """Plans are cached by shape and stride; the base address's alignment is part of the key."""
    buffer = torch.empty(2 * 3 * 8 * 24 + 8, dtype=torch.float16)
    aligned = buffer[:-8].view(1, 2, 3, 8, 24)
    shifted = buffer[1:-7].view(1, 2, 3, 8, 24)  # 2 bytes off a 16-byte boundary
    assert aligned.stride() == shifted.stride()
    plan = plan_launch("fwd", 6, 8, 8, 24, (aligned,), (aligned, aligned, aligned))
    assert plan.align == ALIGN_ELEMENTS
    plan = plan_launch("fwd", 6, 8, 8, 24, (shifted,), (aligned, shifted, aligned))
    assert plan.align == 1


# ---------------------------------------------------------------------------------------------
# A persistent grid


def test_a_persistent_grid_computes_the_same_bit_for_bit():
    """Two programs looping over every (tile, batch, group, head) work item: the same outputs,
    logits and gradients as one program per work item, for both ops."""
    from tokenprune.kernels import persistent_grid

    q, k, v, key_mask = _group_inputs()
    buffer = torch.randn(2, 2, 11, 16)
    index = torch.tensor([[0, 3, 3, 10], [7, 0, 8, 1], [5, 5, 2, 9]]).expand(2, 3, 4)

    def everything():
        gathered = [t.clone().requires_grad_(True) for t in (q, buffer)]
        out = gathered_attention(gathered[0], gathered[1], gathered[1], index, backend="triton")
        grads = torch.autograd.grad(out.square().sum(), gathered)
        return (*_group_grads(q, k, v, key_mask), out, *grads)

    default = everything()
    with persistent_grid(2):
        with capture_launches() as launches:
            group_attention_forward(q, k, v, key_mask, 2, 0.25, 0)
        persistent = everything()
    assert launches[0].grid == (2,) and launches[0].plan.work == 2 * 3 * 2 > 2
    for a, b in zip(default, persistent, strict=True):
        assert torch.equal(a, b)


def test_a_persistent_grid_never_exceeds_the_work_and_checks_its_argument():
    from tokenprune.kernels import persistent_grid

    q = torch.randn(1, 1, 1, 5, 16)
    with persistent_grid(1000), capture_launches() as launches:
        group_attention_forward(q, q, q, None, 0, 0.25, 0)
    assert launches[0].grid == launches[0].plan.grid == (1,)
    with capture_launches() as launches:
        group_attention_forward(q, q, q, None, 0, 0.25, 0)
    assert launches[0].args[-1] == launches[0].plan.work == 1  # WORK, the last argument
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match="programs_per_sm"), persistent_grid(bad):
            pass
