"""CGSR attention: standard multi-head attention as a special case, the cascade, the spatial
reduction, and the fused path against the explicit-softmax reference."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tokenprune_models.hevitpose.cgsr import CGSRAttention, cgsr_attention_reference


def test_one_group_without_reduction_is_standard_multi_head_attention():
    torch.manual_seed(0)
    dim, heads = 24, 3
    cgsr = CGSRAttention(dim, groups=1, heads_per_group=heads, key_dim=dim // heads, norm=False)
    group = cgsr.group_attention[0]
    mha = nn.MultiheadAttention(dim, heads, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([group.q.weight, group.k.weight, group.v.weight]))
        mha.in_proj_bias.copy_(torch.cat([group.q.bias, group.k.bias, group.v.bias]))
        # the group's output layer followed by the final projection: one linear map
        mha.out_proj.weight.copy_(cgsr.proj.weight @ group.out.weight)
        mha.out_proj.bias.copy_(cgsr.proj.weight @ group.out.bias + cgsr.proj.bias)
    x = torch.randn(2, 4 * 5, dim)
    expected, _ = mha(x, x, x, need_weights=False)
    torch.testing.assert_close(cgsr(x, (4, 5)), expected, atol=1e-5, rtol=1e-5)


def test_each_group_sees_the_previous_groups_output():
    torch.manual_seed(0)
    cgsr = CGSRAttention(12, groups=3, heads_per_group=2, key_dim=4, reduction=2).eval()
    x = torch.randn(1, 16, 12, requires_grad=True)
    outputs = []
    hooks = [
        group.register_forward_hook(lambda module, args, out: outputs.append(out))
        for group in cgsr.group_attention
    ]
    cgsr(x, (4, 4))
    for hook in hooks:
        hook.remove()
    # group 2's output depends on group 1's channels (through group 1's output), group 1's on
    # nothing but its own
    first, second = outputs[0], outputs[1]
    (grad_second,) = torch.autograd.grad(second.sum(), x, retain_graph=True)
    (grad_first,) = torch.autograd.grad(first.sum(), x)
    assert grad_second[..., :4].abs().sum() > 0  # group 1's channels reach group 2
    assert grad_first[..., 4:].abs().sum() == 0  # later channels never reach group 1
    # and the last output depends on every channel
    (grad_all,) = torch.autograd.grad(cgsr(x, (4, 4)).sum(), x)
    assert (grad_all.abs().sum(dim=(0, 1)) > 0).all()


def test_reduction_shrinks_keys_and_values():
    cgsr = CGSRAttention(8, groups=2, heads_per_group=1, key_dim=4, reduction=4)
    group = cgsr.group_attention[0]
    q, k, v = group.projections(torch.randn(2, 8 * 12, 4), (8, 12))
    assert q.shape == (2, 1, 96, 4) and k.shape == (2, 1, 6, 4) and v.shape == (2, 1, 6, 4)
    # a side that is not a multiple of R drops its remainder, like the convolution
    q, k, v = group.projections(torch.randn(1, 9 * 5, 4), (9, 5))
    assert k.shape[2] == 2 * 1


@settings(max_examples=30, deadline=None)
@given(
    batch=st.integers(0, 2), height=st.integers(1, 6), width=st.integers(1, 6),
    groups=st.integers(1, 3), heads=st.integers(1, 2), reduction=st.integers(1, 3),
    norm=st.booleans(), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_fused_path_matches_the_reference(batch, height, width, groups, heads, reduction, norm,
                                          seed):  # fmt: skip
    if min(height, width) < reduction:
        reduction = 1
    torch.manual_seed(seed)
    dim = groups * heads * 2
    cgsr = CGSRAttention(dim, groups, heads, key_dim=3, reduction=reduction, norm=norm).double()
    x = torch.randn(batch, height * width, dim, dtype=torch.float64, requires_grad=True)
    out = cgsr(x, (height, width))
    expected = cgsr_attention_reference(cgsr, x, (height, width))
    torch.testing.assert_close(out, expected)
    if batch:
        (grad,) = torch.autograd.grad(out.square().sum(), x)
        (grad_ref,) = torch.autograd.grad(expected.square().sum(), x)
        torch.testing.assert_close(grad, grad_ref)


def test_bad_arguments_get_clear_errors():
    with pytest.raises(ValueError, match="must split into groups"):
        CGSRAttention(10, groups=3)
    with pytest.raises(ValueError, match="reduction must be"):
        CGSRAttention(8, reduction=0)
    cgsr = CGSRAttention(8, groups=2, reduction=2)
    with pytest.raises(ValueError, match=r"x must be \[B, H\*W, C\] = \[B, 12, 8\]"):
        cgsr(torch.randn(1, 10, 8), (3, 4))
    with pytest.raises(TypeError, match="size must be an"):
        cgsr(torch.randn(1, 12, 8), 12)
    with pytest.raises(ValueError, match="smaller than the reduction"):
        cgsr(torch.randn(1, 4, 8), (1, 4))
    with pytest.raises(TypeError, match="floating-point"):
        cgsr(torch.ones(1, 12, 8, dtype=torch.long), (3, 4))
