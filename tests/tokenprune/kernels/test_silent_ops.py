"""Nothing silent (issue 16, kernels part): the ``tokenprune::*`` custom ops check their own
arguments, also when called directly, and a query row without any visible key is zero, with
lse ``-inf`` and gradient zero, on both backends and in both directions.

Without a GPU the kernels run in Triton's interpreter (float32, small shapes).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenprune import group_attention, group_attention_scored
from tokenprune.attention import gathered_attention

pytest.importorskip("triton", reason="the Triton kernels need the 'kernels' extra")

from tokenprune.kernels import INTERPRETED

DEVICE = "cpu" if INTERPRETED else "cuda"
if DEVICE == "cuda" and not torch.cuda.is_available():  # pragma: no cover
    pytest.skip("compiled Triton kernels need a CUDA GPU", allow_module_level=True)

OPS = torch.ops.tokenprune
TOL = {"rtol": 1e-4, "atol": 1e-5}


def _randn(*shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen).to(DEVICE)


def _leaves(*tensors):
    return [t.detach().clone().requires_grad_(True) for t in tensors]


def _grads(loss, leaves):
    return torch.autograd.grad(loss, leaves, allow_unused=True, materialize_grads=True)


# ----------------------------------------------------------------------------------------------
# A row without any visible key: output 0, lse -inf, probabilities 0, gradient 0
# ----------------------------------------------------------------------------------------------


def _empty_group_case():
    """Batch element 0: group 1 sees no key (shared slots masked too); batch element 1: no key
    at all."""
    shape = (2, 3, 2, 7, 16)
    q, k, v = (_randn(*shape, seed=i) for i in range(3))
    key_mask = torch.ones(2, 3, 7, dtype=torch.bool)
    key_mask[0, :, :2] = False
    key_mask[0, 1] = False
    key_mask[1] = False
    return (q, k, v), key_mask.to(DEVICE)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_fully_masked_rows_are_zero_with_lse_minus_inf(backend):
    (q, k, v), key_mask = _empty_group_case()
    out, logits = group_attention_scored(
        q, k, v, num_shared=2, key_mask=key_mask, score_queries=3, backend=backend
    )
    empty = ~key_mask.any(-1) & ~key_mask[:, :, :2].any(-1).any(-1, keepdim=True)
    assert empty.tolist() == [[False, True, False], [True, True, True]]
    assert torch.equal(out[empty], torch.zeros_like(out[empty]))
    assert (logits.lse[empty] == -math.inf).all()
    assert torch.isfinite(logits.lse[~empty]).all()
    probs = logits.probs()
    assert torch.equal(probs[empty], torch.zeros_like(probs[empty]))
    torch.testing.assert_close(probs[~empty].sum(-1), torch.ones_like(probs[~empty].sum(-1)))


def test_gradients_through_probs_of_fully_masked_rows_are_finite_and_agree():
    (q, k, v), key_mask = _empty_group_case()
    weights = _randn(2, 3, 2, 3, 3 * 2 + 5, seed=5)
    out_weights = _randn(2, 3, 2, 7, 16, seed=6)
    grads = {}
    for backend in ("torch", "triton"):
        leaves = _leaves(q, k, v)
        out, logits = group_attention_scored(
            *leaves, num_shared=2, key_mask=key_mask, score_queries=3, backend=backend
        )
        loss = (logits.probs() * weights).sum() + (out * out_weights).sum()
        grads[backend] = _grads(loss, leaves)
        for name, grad in zip("qkv", grads[backend], strict=True):
            assert torch.isfinite(grad).all(), f"{backend}: d{name} is not finite"
    for torch_grad, triton_grad in zip(grads["torch"], grads["triton"], strict=True):
        torch.testing.assert_close(triton_grad, torch_grad, **TOL)


def test_probs_alone_pass_no_gradient_through_fully_masked_rows():
    (q, k, v), key_mask = _empty_group_case()
    for backend in ("torch", "triton"):
        leaves = _leaves(q, k, v)
        _, logits = group_attention_scored(
            *leaves, num_shared=2, key_mask=key_mask, score_queries=3, backend=backend
        )
        dq, dk, _ = _grads(logits.probs().sum(), leaves)  # probabilities sum to 1: no gradient
        assert torch.isfinite(dq).all() and torch.isfinite(dk).all(), backend
        torch.testing.assert_close(dq, torch.zeros_like(dq), atol=1e-6, rtol=0)


def test_nan_gradients_arriving_at_fully_masked_rows_pass_nothing_back():
    """Whatever gradient reaches an empty row (NaN here: ``out / out.norm()`` of a zero row
    gives that) is dropped, by both backends, as the row is a constant."""
    (q, k, v), key_mask = _empty_group_case()
    empty = ~key_mask.any(-1)  # these groups see no key (no shared one either)
    out_weights = _randn(2, 3, 2, 7, 16, seed=6)
    out_weights[empty] = math.nan
    lse_weights = _randn(2, 3, 2, 3, seed=7)
    lse_weights[empty] = math.nan
    grads = {}
    for backend in ("torch", "triton"):
        leaves = _leaves(q, k, v)
        out, logits = group_attention_scored(
            *leaves, num_shared=2, key_mask=key_mask, score_queries=3, backend=backend
        )
        loss = (out * out_weights).sum() + (logits.lse * lse_weights).sum()  # NaN itself
        grads[backend] = _grads(loss, leaves)
        for name, grad in zip("qkv", grads[backend], strict=True):
            assert torch.isfinite(grad).all(), f"{backend}: d{name} is not finite"
    for torch_grad, triton_grad in zip(grads["torch"], grads["triton"], strict=True):
        torch.testing.assert_close(triton_grad, torch_grad, **TOL)
    # the same through the op's log-sum-exp output, which the public function slices
    leaves = _leaves(q, k, v)
    out, lse, _ = OPS.group_attention(*leaves, key_mask, 2, 0.25, 0)
    grad_lse = torch.where(lse == -math.inf, math.nan, 1.0)
    dq, dk, dv = torch.autograd.grad((out, lse), leaves, (torch.zeros_like(out), grad_lse))
    assert all(torch.isfinite(g).all() for g in (dq, dk, dv))


def test_nan_gradients_arriving_at_an_empty_gathered_group_pass_nothing_back():
    q = _randn(1, 3, 2, 5, 16, seed=1)
    k, v = _randn(1, 2, 6, 16, seed=2), _randn(1, 2, 6, 16, seed=3)
    index = torch.tensor([[[0, 5, 5, 2], [1, 1, 3, 0], [4, 2, 0, 1]]], device=DEVICE)
    key_mask = torch.ones(1, 3, 4, dtype=torch.bool, device=DEVICE)
    key_mask[0, 1] = False
    weights = _randn(1, 3, 2, 5, 16, seed=4)
    weights[0, 1] = math.nan
    grads = {}
    for backend in ("torch", "triton"):
        leaves = _leaves(q, k, v)
        out = gathered_attention(*leaves, index, key_mask=key_mask, backend=backend)
        assert torch.equal(out[0, 1], torch.zeros_like(out[0, 1]))
        grads[backend] = _grads((out * weights).sum(), leaves)
        for name, grad in zip("qkv", grads[backend], strict=True):
            assert torch.isfinite(grad).all(), f"{backend}: d{name} is not finite"
    for torch_grad, triton_grad in zip(grads["torch"], grads["triton"], strict=True):
        torch.testing.assert_close(triton_grad, torch_grad, **TOL)


# ----------------------------------------------------------------------------------------------
# Direct op calls check their arguments
# ----------------------------------------------------------------------------------------------


def _group_args(**changes):
    """Valid arguments of ``tokenprune::group_attention`` ([1, 2, 2, 5, 16], S = 2, J = 2) with
    some replaced."""
    q, k, v = (_randn(1, 2, 2, 5, 16, seed=i) for i in range(3))
    args = dict(q=q, k=k, v=v, key_mask=torch.ones(1, 2, 5, dtype=torch.bool, device=DEVICE),
                num_shared=2, scale=0.25, score_queries=2)  # fmt: skip
    args.update(changes)
    return args


def _group_backward_args(**changes):
    forward = _group_args()
    out, lse, _ = OPS.group_attention(**forward)
    del forward["score_queries"]
    args = dict(grad_out=torch.ones_like(out), **forward, out=out, lse=lse, grad_lse=None)
    args.update(changes)
    return args


def _gathered_args(**changes):
    """Valid arguments of ``tokenprune::gathered_attention``: q [1, 2, 2, 3, 16], a buffer of
    6 rows, 4 keys per group."""
    args = dict(
        q=_randn(1, 2, 2, 3, 16, seed=0),
        k=_randn(1, 2, 6, 16, seed=1),
        v=_randn(1, 2, 6, 16, seed=2),
        index=torch.tensor([[[0, 5, 5, 2], [1, 1, 3, 0]]], device=DEVICE),
        key_mask=torch.ones(1, 2, 4, dtype=torch.bool, device=DEVICE),
        scale=0.25,
    )
    args.update(changes)
    return args


def _gathered_backward_args(**changes):
    forward = _gathered_args()
    out, lse = OPS.gathered_attention(**forward)
    args = dict(grad_out=torch.ones_like(out), **forward, out=out, lse=lse)
    args.update(changes)
    return args


def _index(rows):
    return torch.tensor(rows, device=DEVICE)


_MASK = torch.ones(1, 2, 5, dtype=torch.bool)
BAD_CALLS = [
    # group_attention: a mask of another dtype used to be read as bytes
    ("group", "key_mask_int64", lambda: _group_args(key_mask=_MASK.long().to(DEVICE)),
     TypeError, "key_mask must be a bool tensor"),
    ("group", "key_mask_float", lambda: _group_args(key_mask=_MASK.float().to(DEVICE)),
     TypeError, "key_mask must be a bool tensor"),
    ("group", "num_shared_high", lambda: _group_args(num_shared=6), ValueError,
     "num_shared must be <= 5"),
    ("group", "num_shared_negative", lambda: _group_args(num_shared=-1), ValueError,
     "num_shared must be >= 0"),
    ("group", "score_queries_high", lambda: _group_args(score_queries=6), ValueError,
     "score_queries must be <= 5"),
    ("group", "score_queries_negative", lambda: _group_args(score_queries=-1), ValueError,
     "score_queries must be >= 0"),
    ("group", "short_k", lambda: _group_args(k=_randn(1, 2, 2, 4, 16)), ValueError,
     "q, k and v must have the same shape"),
    ("group", "short_v", lambda: _group_args(v=_randn(1, 2, 2, 3, 16)), ValueError,
     "q, k and v must have the same shape"),
    ("group", "heads", lambda: _group_args(k=_randn(1, 2, 1, 5, 16), v=_randn(1, 2, 1, 5, 16)),
     ValueError, "q, k and v must have the same shape"),
    ("group", "short_mask", lambda: _group_args(key_mask=_MASK[..., :4].to(DEVICE)),
     ValueError, r"key_mask must have shape \(1, 2, 5\)"),
    ("group", "mask_rank", lambda: _group_args(key_mask=_MASK[0].to(DEVICE)), ValueError,
     "key_mask must have shape"),
    ("group", "rank", lambda: _group_args(q=_randn(2, 2, 5, 16)), ValueError,
     "q must have 5 dimensions"),
    ("group", "dtype", lambda: _group_args(v=_randn(1, 2, 2, 5, 16).half()), ValueError,
     "must share one dtype"),
    ("group", "integer_q", lambda: _group_args(q=torch.ones(1, 2, 2, 5, 16, dtype=torch.long)),
     TypeError, "q must be a floating-point tensor"),
    ("group", "device", lambda: _group_args(key_mask=_MASK.to("meta")), ValueError,
     "same device"),
    ("group", "scale_nan", lambda: _group_args(scale=math.nan), ValueError,
     "scale must be a positive finite float"),
    ("group", "scale_negative", lambda: _group_args(scale=-1.0), ValueError,
     "scale must be a positive finite float"),
    # group_attention_backward
    ("group_backward", "key_mask_int64",
     lambda: _group_backward_args(key_mask=_MASK.long().to(DEVICE)), TypeError,
     "key_mask must be a bool tensor"),
    ("group_backward", "num_shared_high", lambda: _group_backward_args(num_shared=6),
     ValueError, "num_shared must be <= 5"),
    ("group_backward", "short_k", lambda: _group_backward_args(k=_randn(1, 2, 2, 4, 16)),
     ValueError, "q, k and v must have the same shape"),
    ("group_backward", "grad_out_shape",
     lambda: _group_backward_args(grad_out=_randn(1, 2, 2, 4, 16)), ValueError,
     r"grad_out must have shape \(1, 2, 2, 5, 16\)"),
    ("group_backward", "out_shape", lambda: _group_backward_args(out=_randn(1, 2, 2, 5, 8)),
     ValueError, "out must have shape"),
    ("group_backward", "lse_shape", lambda: _group_backward_args(lse=_randn(1, 2, 2, 4)),
     ValueError, r"lse must have shape \(1, 2, 2, 5\)"),
    ("group_backward", "lse_dtype", lambda: _group_backward_args(lse=_randn(1, 2, 2, 5).half()),
     TypeError, "lse must be float32"),
    ("group_backward", "grad_lse_shape",
     lambda: _group_backward_args(grad_lse=_randn(1, 2, 2, 2)), ValueError,
     "grad_lse must have shape"),
    # gathered_attention: indices used to be read unchecked
    ("gathered", "index_high", lambda: _gathered_args(index=_index([[[0, 6, 5, 2], [1, 1, 3, 0]]])),
     ValueError, r"index must lie in \[0, 6\)"),
    ("gathered", "index_negative",
     lambda: _gathered_args(index=_index([[[0, 5, 5, 2], [1, -1, 3, 0]]])), ValueError,
     r"index must lie in \[0, 6\)"),
    ("gathered", "index_float", lambda: _gathered_args(index=_index([[[0.0, 5, 5, 2]] * 2])),
     TypeError, "index must be an int64 or int32"),
    ("gathered", "index_shape", lambda: _gathered_args(index=_index([[[0, 5, 5, 2]]])),
     ValueError, "index must have shape"),
    ("gathered", "key_mask_int64",
     lambda: _gathered_args(key_mask=torch.ones(1, 2, 4, dtype=torch.long, device=DEVICE)),
     TypeError, "key_mask must be a bool tensor"),
    ("gathered", "short_mask",
     lambda: _gathered_args(key_mask=torch.ones(1, 2, 3, dtype=torch.bool, device=DEVICE)),
     ValueError, r"key_mask must have shape \(1, 2, 4\)"),
    ("gathered", "heads", lambda: _gathered_args(k=_randn(1, 1, 6, 16), v=_randn(1, 1, 6, 16)),
     ValueError, r"k and v must have shape \[B=1, H=2, T, D=16\]"),
    ("gathered", "short_v", lambda: _gathered_args(v=_randn(1, 2, 3, 16)), ValueError,
     "k and v must have shape"),
    ("gathered", "head_dim", lambda: _gathered_args(k=_randn(1, 2, 6, 8), v=_randn(1, 2, 6, 8)),
     ValueError, "k and v must have shape"),
    ("gathered", "scale_inf", lambda: _gathered_args(scale=math.inf), ValueError,
     "scale must be a positive finite float"),
    # gathered_attention_backward (its atomic adds would write out of bounds)
    ("gathered_backward", "index_high",
     lambda: _gathered_backward_args(index=_index([[[0, 6, 5, 2], [1, 1, 3, 0]]])),
     ValueError, r"index must lie in \[0, 6\)"),
    ("gathered_backward", "key_mask_int64",
     lambda: _gathered_backward_args(key_mask=torch.ones(1, 2, 4, dtype=torch.long,
                                                         device=DEVICE)),
     TypeError, "key_mask must be a bool tensor"),
    ("gathered_backward", "lse_shape", lambda: _gathered_backward_args(lse=_randn(1, 2, 2, 4)),
     ValueError, "lse must have shape"),
    ("gathered_backward", "grad_out_shape",
     lambda: _gathered_backward_args(grad_out=_randn(1, 2, 2, 3, 8)), ValueError,
     "grad_out must have shape"),
]  # fmt: skip

_OP = {
    "group": OPS.group_attention,
    "group_backward": OPS.group_attention_backward,
    "gathered": OPS.gathered_attention,
    "gathered_backward": OPS.gathered_attention_backward,
}


@pytest.mark.parametrize(
    "op, make_args, error, message",
    [pytest.param(op, make, error, message, id=f"{op}-{case}")
     for op, case, make, error, message in BAD_CALLS],
)  # fmt: skip
def test_direct_op_call_refuses_bad_arguments(op, make_args, error, message):
    args = make_args()
    with pytest.raises(error, match=message):
        _OP[op](**args)


def test_direct_op_calls_accept_what_the_tables_above_start_from():
    for make_args, op in (
        (_group_args, "group"),
        (_group_backward_args, "group_backward"),
        (_gathered_args, "gathered"),
        (_gathered_backward_args, "gathered_backward"),
    ):
        for result in _OP[op](**make_args()):
            assert not result.isnan().any()
    # an int32 index is read as it is
    out32, _ = OPS.gathered_attention(**_gathered_args(index=_index([[[0, 5, 5, 2]] * 2]).int()))
    out64, _ = OPS.gathered_attention(**_gathered_args(index=_index([[[0, 5, 5, 2]] * 2])))
    assert torch.equal(out32, out64)


# ----------------------------------------------------------------------------------------------
# Fuzz: direct op calls equal the public functions on valid input, refuse invalid input
# ----------------------------------------------------------------------------------------------


@st.composite
def key_masks(draw, batch, groups, tokens, gen):
    kind = draw(st.sampled_from(["none", "random", "ragged"]))
    if kind == "none":
        return None
    if kind == "random":
        return torch.rand(batch, groups, tokens, generator=gen) < 0.7
    # ragged groups: real tokens first, padding after; a group may be all padding
    lengths = torch.tensor(
        draw(st.lists(st.integers(0, tokens), min_size=batch * groups, max_size=batch * groups))
    ).view(batch, groups, 1)
    return torch.arange(tokens) < lengths


@st.composite
def group_cases(draw):
    batch, groups, heads = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    tokens = draw(st.integers(1, 18))
    head_dim = draw(st.sampled_from([16, 20, 32]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    q, k, v = (torch.randn(batch, groups, heads, tokens, head_dim, generator=gen)
               for _ in range(3))  # fmt: skip
    key_mask = draw(key_masks(batch, groups, tokens, gen))
    return dict(
        q=q.to(DEVICE),
        k=k.to(DEVICE),
        v=v.to(DEVICE),
        key_mask=None if key_mask is None else key_mask.to(DEVICE),
        num_shared=draw(st.integers(0, tokens)),
        scale=draw(st.sampled_from([head_dim**-0.5, 0.1, 1.0])),
        score_queries=draw(st.integers(0, min(tokens, 4))),
    )


@st.composite
def gathered_cases(draw):
    batch, groups, heads = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    queries, buffer = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    keys = draw(st.integers(0, 18))
    head_dim = draw(st.sampled_from([16, 24]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    q = torch.randn(batch, groups, heads, queries, head_dim, generator=gen)
    k, v = (torch.randn(batch, heads, buffer, head_dim, generator=gen) for _ in "kv")
    index = torch.randint(0, buffer, (batch, groups, keys), generator=gen)
    key_mask = draw(key_masks(batch, groups, keys, gen))
    return dict(
        q=q.to(DEVICE),
        k=k.to(DEVICE),
        v=v.to(DEVICE),
        index=index.to(DEVICE),
        key_mask=None if key_mask is None else key_mask.to(DEVICE),
        scale=draw(st.sampled_from([head_dim**-0.5, 0.3])),
    )


def _public_group(args, backend):
    leaves = _leaves(args["q"], args["k"], args["v"])
    result = group_attention_scored(
        *leaves, num_shared=args["num_shared"], key_mask=args["key_mask"], scale=args["scale"],
        score_queries=args["score_queries"], backend=backend,
    )  # fmt: skip
    out, logits = result if isinstance(result, tuple) else (result, None)
    grad_out = torch.linspace(-1, 1, out.numel(), device=DEVICE).view(out.shape)
    return out.detach(), logits, _grads((out * grad_out).sum(), leaves), grad_out


# Each example runs the kernels four times (forward and backward, direct and public): about
# half a second in the interpreter
@settings(max_examples=max(1, settings.default.max_examples // 2))
@given(group_cases())
def test_direct_group_attention_op_equals_the_public_function(args):
    out, lse, logits = OPS.group_attention(**args)
    out_public, logits_public, grads_public, grad_out = _public_group(args, "triton")
    assert torch.equal(out, out_public)
    score_queries = args["score_queries"]
    if score_queries:
        assert torch.equal(logits, logits_public.logits)
        assert torch.equal(lse[..., :score_queries], logits_public.lse)
    grads = OPS.group_attention_backward(
        grad_out, args["q"], args["k"], args["v"], out, lse, args["key_mask"],
        args["num_shared"], args["scale"], None,
    )  # fmt: skip
    for got, want in zip(grads, grads_public, strict=True):
        assert torch.equal(got, want)
    # and the PyTorch backend agrees (fully masked rows included)
    out_torch, logits_torch, grads_torch, _ = _public_group(args, "torch")
    torch.testing.assert_close(out, out_torch, **TOL)
    if score_queries:
        torch.testing.assert_close(logits, logits_torch.logits, **TOL)
        torch.testing.assert_close(logits_public.probs(), logits_torch.probs(), **TOL)
    for got, want in zip(grads, grads_torch, strict=True):
        torch.testing.assert_close(got, want, **TOL)


@settings(max_examples=max(1, settings.default.max_examples // 2))
@given(gathered_cases())
def test_direct_gathered_attention_op_equals_the_public_function(args):
    out, lse = OPS.gathered_attention(**args)
    outputs = {}
    for backend in ("triton", "torch"):
        leaves = _leaves(args["q"], args["k"], args["v"])
        result = gathered_attention(*leaves, args["index"], key_mask=args["key_mask"],
                                    scale=args["scale"], backend=backend)  # fmt: skip
        grad_out = torch.linspace(-1, 1, result.numel(), device=DEVICE).view(result.shape)
        outputs[backend] = result.detach(), _grads((result * grad_out).sum(), leaves)
    grads = OPS.gathered_attention_backward(grad_out, **args, out=out, lse=lse)
    assert torch.equal(out, outputs["triton"][0])
    for got, want in zip(grads, outputs["triton"][1], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)  # atomic adds: any order
    torch.testing.assert_close(out, outputs["torch"][0], **TOL)
    for got, want in zip(grads, outputs["torch"][1], strict=True):
        torch.testing.assert_close(got, want, **TOL)


def _spoil_group(args, category):
    """Valid group-attention arguments made invalid in one way; returns ``(args, error)``."""
    q, mask = args["q"], args["key_mask"]
    batch, groups, heads, tokens, head_dim = q.shape
    if mask is None:
        mask = torch.ones(batch, groups, tokens, dtype=torch.bool, device=q.device)
    shorter = q.new_zeros(batch, groups, heads, tokens - 1, head_dim)
    spoiled = {
        "key_mask_int64": (dict(key_mask=mask.long()), TypeError),
        "key_mask_float": (dict(key_mask=mask.float()), TypeError),
        "num_shared_high": (dict(num_shared=tokens + 1), ValueError),
        "num_shared_negative": (dict(num_shared=-1), ValueError),
        "score_queries_high": (dict(score_queries=tokens + 1), ValueError),
        "short_k": (dict(k=shorter), ValueError),
        "short_v": (dict(v=shorter), ValueError),
        "short_mask": (dict(key_mask=mask[..., :-1]), ValueError),
        "heads": (dict(k=torch.cat([args["k"]] * 2, dim=2)), ValueError),
        "scale": (dict(scale=math.nan), ValueError),
    }[category]
    return {**args, **spoiled[0]}, spoiled[1]


def _spoil_gathered(args, category):
    index, mask, k = args["index"], args["key_mask"], args["k"]
    buffer = k.shape[2]
    if mask is None:
        mask = torch.ones(index.shape, dtype=torch.bool, device=index.device)
    out_of_range, negative = index.clone(), index.clone()
    if index.numel():
        out_of_range.view(-1)[-1] = buffer
        negative.view(-1)[0] = -1
    spoiled = {
        "index_high": (dict(index=out_of_range), ValueError),
        "index_negative": (dict(index=negative), ValueError),
        "index_float": (dict(index=index.float()), TypeError),
        "key_mask_int64": (dict(key_mask=mask.long()), TypeError),
        "short_mask": (dict(key_mask=mask[..., :-1]), ValueError),
        "heads": (
            dict(k=torch.cat([k] * 2, dim=1), v=torch.cat([args["v"]] * 2, dim=1)),
            ValueError,
        ),
        "short_v": (dict(v=args["v"][:, :, :-1]), ValueError),
        "scale": (dict(scale=-0.5), ValueError),
    }[category]
    return {**args, **spoiled[0]}, spoiled[1]


GROUP_SPOILS = (
    "key_mask_int64",
    "key_mask_float",
    "num_shared_high",
    "num_shared_negative",
    "score_queries_high",
    "short_k",
    "short_v",
    "short_mask",
    "heads",
    "scale",
)
GATHERED_SPOILS = ("index_high", "index_negative", "index_float", "key_mask_int64",
                   "short_mask", "heads", "short_v", "scale")  # fmt: skip


@given(group_cases(), st.sampled_from(GROUP_SPOILS))
def test_direct_group_attention_op_refuses_invalid_input(args, category):
    bad, error = _spoil_group(args, category)
    with pytest.raises(error):
        OPS.group_attention(**bad)
    with pytest.raises(error):  # as the public function does
        group_attention_scored(bad["q"], bad["k"], bad["v"], num_shared=bad["num_shared"],
                        key_mask=bad["key_mask"], scale=bad["scale"],
                        score_queries=bad["score_queries"], backend="triton")  # fmt: skip


@given(gathered_cases(), st.sampled_from(GATHERED_SPOILS))
def test_direct_gathered_attention_op_refuses_invalid_input(args, category):
    if args["index"].numel() == 0 and category in ("index_high", "index_negative"):
        category = "index_float"  # no entry to spoil
    if args["index"].shape[-1] == 0 and category == "short_mask":
        category = "heads"
    bad, error = _spoil_gathered(args, category)
    with pytest.raises(error):
        OPS.gathered_attention(**bad)
    out, lse = torch.zeros_like(args["q"]), torch.zeros(args["q"].shape[:-1], device=DEVICE)
    with pytest.raises(error):
        OPS.gathered_attention_backward(torch.ones_like(out), **bad, out=out, lse=lse)
    with pytest.raises(error):
        gathered_attention(bad["q"], bad["k"], bad["v"], bad["index"], key_mask=bad["key_mask"],
                           scale=bad["scale"], backend="triton")  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Whatever a masked key slot holds (NaN, inf) changes nothing, on both backends
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("poison", [math.nan, math.inf])
def test_masked_key_slots_holding_nan_change_nothing(poison):
    shape = (2, 3, 2, 7, 16)
    q, k, v = (_randn(*shape, seed=i) for i in range(3))
    key_mask = torch.rand(2, 3, 7, generator=torch.Generator().manual_seed(4)) > 0.4
    key_mask[..., 0] = True  # every group keeps one real key
    key_mask = key_mask.to(DEVICE)
    # a poisoned slot is masked for its own group; with num_shared=2 a shared slot is masked
    # for every group alike, so slots 0-1 must be real wherever they are shared
    poisoned = ~key_mask[:, :, None, :, None].expand(shape)
    k_bad, v_bad = k.masked_fill(poisoned, poison), v.masked_fill(poisoned, poison)
    out_weights = _randn(*shape, seed=5)
    results = {}
    for backend in ("torch", "triton"):
        for name, (kk, vv) in {"clean": (k, v), "poisoned": (k_bad, v_bad)}.items():
            leaves = _leaves(q, kk, vv)
            out = group_attention(*leaves, num_shared=2, key_mask=key_mask, backend=backend)
            grads = _grads((out * out_weights).sum(), leaves)
            assert torch.isfinite(out).all(), f"{backend}/{name}: output not finite"
            for g_name, grad in zip("qkv", grads, strict=True):
                assert torch.isfinite(grad).all(), f"{backend}/{name}: d{g_name} not finite"
            results[backend, name] = (out, *grads)
    for key, result in results.items():
        for got, want in zip(result, results["torch", "clean"], strict=True):
            torch.testing.assert_close(got, want, **TOL, msg=lambda m, key=key: f"{key}: {m}")


def test_masked_gathered_entries_pointing_at_nan_rows_change_nothing():
    q = _randn(1, 3, 2, 5, 16, seed=1)
    k, v = _randn(1, 2, 6, 16, seed=2), _randn(1, 2, 6, 16, seed=3)
    index = torch.tensor([[[0, 5, 5, 2], [1, 1, 3, 0], [4, 2, 0, 1]]], device=DEVICE)
    key_mask = torch.tensor([[[1, 0, 0, 1], [1, 1, 1, 1], [0, 1, 1, 1]]], device=DEVICE).bool()
    # buffer row 5 is referenced only by masked entries (group 0, entries 1 and 2)
    k_bad, v_bad = k.clone(), v.clone()
    k_bad[:, :, 5], v_bad[:, :, 5] = math.nan, math.nan
    out_weights = _randn(1, 3, 2, 5, 16, seed=4)
    results = {}
    for backend in ("torch", "triton"):
        for name, (kk, vv) in {"clean": (k, v), "poisoned": (k_bad, v_bad)}.items():
            leaves = _leaves(q, kk, vv)
            out = gathered_attention(*leaves, index, key_mask=key_mask, backend=backend)
            grads = _grads((out * out_weights).sum(), leaves)
            assert torch.isfinite(out).all(), f"{backend}/{name}: output not finite"
            for g_name, grad in zip("qkv", grads, strict=True):
                assert torch.isfinite(grad).all(), f"{backend}/{name}: d{g_name} not finite"
            results[backend, name] = (out, *grads)
    for key, result in results.items():
        for got, want in zip(result, results["torch", "clean"], strict=True):
            torch.testing.assert_close(got, want, **TOL, msg=lambda m, key=key: f"{key}: {m}")
