"""Triton kernels against float64 PyTorch references.

Without a GPU the kernels run in Triton's interpreter (float32 and float16, small shapes); with a
CUDA GPU the same tests run compiled, in float16, bfloat16 and float32.

Tolerance, in the style of flash-attention's tests: the kernel's max error against a float64
reference must be at most twice the error of the same computation done by PyTorch in the input
dtype, plus the rounding error of that dtype at the data's magnitude and a small absolute floor.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from tokenprune import MultiHeadGroupAttention, group_attention
from tokenprune.attention import gathered_attention
from tokenprune.attention.backends import resolve_backend
from tokenprune.attention.reference import gathered_attention_torch, group_attention_torch

pytest.importorskip("triton", reason="the Triton kernels need the 'kernels' extra")

from tokenprune.kernels import INTERPRETED, gathered_attention_triton, group_attention_triton

DEVICE = "cpu" if INTERPRETED else "cuda"
if DEVICE == "cuda" and not torch.cuda.is_available():  # pragma: no cover
    pytest.skip("compiled Triton kernels need a CUDA GPU", allow_module_level=True)
DTYPES = (
    [torch.float32, torch.float16]
    if DEVICE == "cpu"
    else [torch.float16, torch.bfloat16, torch.float32]
)
ABS_FLOOR = {torch.float32: 1e-5, torch.float16: 1e-4, torch.bfloat16: 1e-3}


def assert_within_reference_error(name, got, same_dtype, exact, dtype):
    """``|got - exact| <= 2 |same_dtype - exact| + rounding(dtype) + floor``, on finite entries
    (non-finite entries, such as logits of masked keys, must agree exactly)."""
    finite = torch.isfinite(exact)
    assert torch.equal(torch.isfinite(got), finite), f"{name}: non-finite entries differ"
    assert torch.equal(got[~finite].double(), exact[~finite]), f"{name}: non-finite values differ"
    if not finite.any():
        return
    exact = exact[finite]
    error = (got.double()[finite] - exact).abs().max().item()
    reference_error = (same_dtype.double()[finite] - exact).abs().max().item()
    rounding = 2 * ((exact.to(dtype) + 0.3 - 0.3).double() - exact).abs().max().item()
    bound = 2 * reference_error + rounding + ABS_FLOOR[dtype]
    assert error <= bound, (
        f"{name}: error {error:.3g} > bound {bound:.3g} (PyTorch's {reference_error:.3g})"
    )


def run_with_grads(fn, tensors, args, grad_seed=7):
    """Run ``fn(*tensors, *args)``; return its floating outputs and the gradients of a fixed
    random projection of the first output with respect to ``tensors``."""
    leaves = [t.detach().clone().requires_grad_(True) for t in tensors]
    outputs = fn(*leaves, *args)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    outputs = [o for o in outputs if o is not None]
    gen = torch.Generator().manual_seed(grad_seed)
    grad_out = torch.randn(outputs[0].shape, generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad(outputs[0], leaves, grad_out.to(outputs[0]))
    return [o.detach() for o in outputs], list(grads)


def compare_three_ways(names, fn_kernel, fn_reference, tensors64, args, dtype):
    cast = [t.to(DEVICE, dtype) for t in tensors64]
    exact_out, exact_grads = run_with_grads(fn_reference, [t.to(DEVICE) for t in tensors64], args)
    pt_out, pt_grads = run_with_grads(fn_reference, cast, args)
    k_out, k_grads = run_with_grads(fn_kernel, cast, args)
    for name, got, same, exact in zip(
        names, k_out + k_grads, pt_out + pt_grads, exact_out + exact_grads, strict=True
    ):
        assert got.dtype == same.dtype, name
        assert got.shape == exact.shape, name
        assert_within_reference_error(name, got, same, exact, dtype)


@st.composite
def group_cases(draw):
    batch = draw(st.integers(1, 2))
    groups = draw(st.integers(1, 3))
    heads = draw(st.integers(1, 2))
    tokens = draw(st.integers(1, 37))
    num_shared = draw(st.integers(0, tokens))  # num_shared == tokens: no private tokens
    head_dim = draw(st.sampled_from([16, 24, 40, 64]))
    score_queries = draw(st.integers(0, min(tokens, 5)))
    seed = draw(st.integers(0, 2**31 - 1))
    masked = draw(st.booleans())
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, groups, heads, tokens, head_dim)
    qkv = [torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(3)]
    key_mask = (torch.rand(batch, groups, tokens, generator=gen) < 0.75) if masked else None
    return qkv, num_shared, key_mask, head_dim**-0.5, score_queries


# Each interpreter case takes about a second; the "thorough" profile runs more.
KERNEL_EXAMPLES = max(1, settings.default.max_examples // 2)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=KERNEL_EXAMPLES)
@given(group_cases())
def test_group_attention_kernel_matches_reference(dtype, case):
    qkv, num_shared, key_mask, scale, score_queries = case
    key_mask = None if key_mask is None else key_mask.to(DEVICE)
    names = ["out"] + (["logits", "lse"] if score_queries else []) + ["dq", "dk", "dv"]
    compare_three_ways(
        names,
        group_attention_triton,
        group_attention_torch,
        qkv,
        (num_shared, key_mask, scale, 0.0, score_queries),
        dtype,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape, num_shared, mask_kind",
    [
        ((1, 3, 1, 6, 24), 6, None),  # no private tokens at all
        ((2, 1, 2, 1, 16), 0, None),  # a single token
        ((1, 2, 1, 17, 16), 2, "empty_group"),  # a group whose every key is masked
        ((1, 3, 1, 9, 128), 3, "random"),  # the largest head_dim
        ((2, 1, 2, 33, 64), 0, None),  # plain attention, length not a multiple of the block
    ],
)
def test_group_attention_kernel_edge_cases(dtype, shape, num_shared, mask_kind):
    gen = torch.Generator().manual_seed(0)
    qkv = [torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(3)]
    key_mask = None
    if mask_kind == "empty_group":
        key_mask = torch.ones(shape[0], shape[1], shape[3], dtype=torch.bool)
        key_mask[:, 1] = False
        key_mask[:, :, :num_shared] = False  # shared tokens too, so group 1 sees nothing
    elif mask_kind == "random":
        key_mask = torch.rand(shape[0], shape[1], shape[3], generator=gen) < 0.5
    key_mask = None if key_mask is None else key_mask.to(DEVICE)
    score_queries = min(3, shape[3])
    compare_three_ways(
        ["out", "logits", "lse", "dq", "dk", "dv"],
        group_attention_triton,
        group_attention_torch,
        qkv,
        (num_shared, key_mask, shape[-1] ** -0.5, 0.0, score_queries),
        dtype,
    )


def test_gradients_through_scoring_logits_and_lse():
    gen = torch.Generator().manual_seed(3)
    shape = (2, 3, 2, 11, 16)
    tensors = [torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(3)]
    key_mask = (torch.rand(2, 3, 11, generator=gen) < 0.8).to(DEVICE)
    weights = [torch.randn(2, 3, 2, 4, 3 * 2 + 9, generator=gen), torch.randn(2, 3, 2, 4)]

    def loss_grads(fn, dtype):
        leaves = [t.to(DEVICE, dtype).requires_grad_(True) for t in tensors]
        out, logits, lse = fn(*leaves, 2, key_mask, 0.25, 0.0, 4)
        logits = torch.where(torch.isfinite(logits), logits, 0.0)
        loss = out.sum() + (logits * weights[0].to(logits)).sum() + (lse * weights[1].to(lse)).sum()
        return torch.autograd.grad(loss, leaves)

    exact = loss_grads(group_attention_torch, torch.float64)
    kernel = loss_grads(group_attention_triton, torch.float32)
    for got, want in zip(kernel, exact, strict=True):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_head_group_attention_triton_backend(dtype):
    torch.manual_seed(0)
    reference = MultiHeadGroupAttention(48, 2).to(DEVICE, torch.float64)
    kernel = MultiHeadGroupAttention(48, 2, backend="triton").to(DEVICE, dtype)
    kernel.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 19, 48, device=DEVICE, dtype=torch.float64)
    key_mask = torch.rand(2, 3, 19, device=DEVICE) < 0.8
    x64 = x.clone().requires_grad_(True)
    out64, logits64 = reference.forward_scored(x64, 4, num_shared=4, key_mask=key_mask)
    out64.sum().backward()
    xk = x.to(dtype).requires_grad_(True)
    out, logits = kernel.forward_scored(xk, 4, num_shared=4, key_mask=key_mask)
    out.sum().backward()
    tol = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 1e-1}[dtype]
    torch.testing.assert_close(out.double(), out64, rtol=tol, atol=tol)
    torch.testing.assert_close(logits.lse.double(), logits64.lse, rtol=tol, atol=tol)
    torch.testing.assert_close(xk.grad.double(), x64.grad, rtol=tol, atol=tol)
    # the output is stored heads-last, so merging heads in the module was a view
    merged = kernel.qkv(xk)
    assert merged.is_contiguous()


@st.composite
def gathered_cases(draw):
    batch = draw(st.integers(1, 2))
    groups = draw(st.integers(1, 3))
    heads = draw(st.integers(1, 2))
    queries = draw(st.integers(1, 20))
    buffer = draw(st.integers(1, 24))
    keys = draw(st.integers(1, 37))
    head_dim = draw(st.sampled_from([16, 24, 32]))
    seed = draw(st.integers(0, 2**31 - 1))
    masked = draw(st.booleans())
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, groups, heads, queries, head_dim, generator=gen, dtype=torch.float64)
    k = torch.randn(batch, heads, buffer, head_dim, generator=gen, dtype=torch.float64)
    v = torch.randn(batch, heads, buffer, head_dim, generator=gen, dtype=torch.float64)
    # repeats within and across groups are common with a small buffer
    index = torch.randint(0, buffer, (batch, groups, keys), generator=gen)
    key_mask = (torch.rand(batch, groups, keys, generator=gen) < 0.75) if masked else None
    return (q, k, v), index, key_mask, head_dim**-0.5


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=KERNEL_EXAMPLES)
@given(gathered_cases())
def test_gathered_attention_kernel_matches_reference(dtype, case):
    tensors, index, key_mask, scale = case
    key_mask = None if key_mask is None else key_mask.to(DEVICE)
    compare_three_ways(
        ["out", "dq", "dk", "dv"],
        gathered_attention_triton,
        gathered_attention_torch,
        tensors,
        (index.to(DEVICE), key_mask, scale),
        dtype,
    )


def test_gathered_gradients_add_up_over_groups_selecting_one_row():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(1, 3, 1, 5, 16, generator=gen, device="cpu").to(DEVICE)
    k = torch.randn(1, 1, 4, 16, generator=gen).to(DEVICE).requires_grad_(True)
    v = torch.randn(1, 1, 4, 16, generator=gen).to(DEVICE).requires_grad_(True)
    index = torch.tensor([[[2, 2, 0], [2, 1, 1], [3, 2, 2]]], device=DEVICE)
    out = gathered_attention(q, k, v, index, backend="triton")
    out.sum().backward()
    kernel_grads = k.grad.clone(), v.grad.clone()
    k.grad = v.grad = None
    gathered_attention(q, k, v, index, backend="torch").sum().backward()
    torch.testing.assert_close(kernel_grads[0], k.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(kernel_grads[1], v.grad, rtol=1e-4, atol=1e-5)
    assert kernel_grads[1][0, 0, 2].abs().sum() > 0  # row 2 collected from all three groups


def _opcheck_inputs(dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(1, 2, 1, 5, 16, generator=gen).to(DEVICE, dtype).requires_grad_(True)
        for _ in range(3)
    )
    key_mask = torch.tensor([[[1, 1, 0, 1, 1], [1, 0, 1, 1, 1]]], dtype=torch.bool, device=DEVICE)
    return q, k, v, key_mask


def test_opcheck_group_attention():
    q, k, v, key_mask = _opcheck_inputs()
    torch.library.opcheck(torch.ops.tokenprune.group_attention, (q, k, v, key_mask, 2, 0.25, 2))
    torch.library.opcheck(torch.ops.tokenprune.group_attention, (q, k, v, None, 0, 0.25, 0))


def test_opcheck_gathered_attention():
    q, _, _, _ = _opcheck_inputs()
    gen = torch.Generator().manual_seed(1)
    k, v = (torch.randn(1, 1, 6, 16, generator=gen).to(DEVICE).requires_grad_(True) for _ in "kv")
    index = torch.tensor([[[0, 5, 5, 2], [1, 1, 3, 0]]], device=DEVICE)
    key_mask = torch.tensor([[[1, 1, 0, 1], [1, 1, 1, 0]]], dtype=torch.bool, device=DEVICE)
    torch.library.opcheck(
        torch.ops.tokenprune.gathered_attention, (q, k, v, index, key_mask, 0.25)
    )


def test_flop_counter_mode_counts_forward_and_backward():
    q, k, v, key_mask = _opcheck_inputs()
    pairs = 1 * 2 * 1 * 5 * (2 * 2 + 5 - 2)
    with FlopCounterMode(display=False) as counter:
        out = group_attention(q, k, v, num_shared=2, key_mask=key_mask, backend="triton")
        out.sum().backward()
    counts = counter.get_flop_counts()["Global"]
    assert counts[torch.ops.tokenprune.group_attention] == 4 * pairs * 16
    assert counts[torch.ops.tokenprune.group_attention_backward] == 10 * pairs * 16


def test_count_flops_counts_the_kernel_like_the_reference():
    from tokenprune import count_flops

    torch.manual_seed(0)
    x = torch.randn(1, 3, 10, 32, device=DEVICE)
    reference = MultiHeadGroupAttention(32, 2, backend="torch").to(DEVICE)
    kernel = MultiHeadGroupAttention(32, 2, backend="triton").to(DEVICE)

    class Wrap(torch.nn.Module):
        def __init__(self, attn):
            super().__init__()
            self.attn = attn

        def forward(self, x):
            return self.attn(x, num_shared=2)

    assert count_flops(Wrap(kernel), x).macs == count_flops(Wrap(reference), x).macs


def test_unsupported_calls_get_clear_errors():
    q = torch.randn(1, 1, 1, 4, 8, device=DEVICE)
    with pytest.raises(ValueError, match=r"head_dim 8 is outside \[16, 128\]"):
        group_attention(q, q, q, backend="triton")
    q = torch.randn(1, 1, 1, 4, 16, device=DEVICE)
    with pytest.raises(ValueError, match="dropout"):
        group_attention(q, q, q, dropout_p=0.1, backend="triton")
    with pytest.raises(ValueError, match="float64"):
        group_attention(q.double(), q.double(), q.double(), backend="triton")
    if DEVICE == "cpu":
        b = q.bfloat16()
        with pytest.raises(ValueError, match="bfloat16"):
            group_attention(b, b, b, backend="triton")
        # on CPU tensors "auto" keeps the PyTorch reference
        assert resolve_backend("group_attention", "auto", q) is group_attention_torch


@pytest.mark.slow
def test_compiles_through_the_custom_op():
    torch.manual_seed(0)
    module = MultiHeadGroupAttention(32, 2, backend="triton").to(DEVICE).eval()
    x = torch.randn(1, 3, 9, 32, device=DEVICE)
    compiled = torch.compile(module.forward_scored, fullgraph=True)
    out, logits = compiled(x, num_shared=2, score_queries=2)
    ref_out, ref_logits = module.forward_scored(x, num_shared=2, score_queries=2)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(logits.logits, ref_logits.logits)
