"""TokenRecoveringAttention: recovering the full sequence from the kept tokens."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenprune.temporal import (
    TokenRecoveringAttention,
)


def reference_recovery(module: TokenRecoveringAttention, kept: torch.Tensor) -> torch.Tensor:
    """The same computation through nn.MultiheadAttention, one sequence per middle index."""
    dim, heads = module.dim, module.num_heads
    mha = torch.nn.MultiheadAttention(dim, heads, batch_first=True, dtype=kept.dtype)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([module.q.weight, module.k.weight, module.v.weight]))
        mha.in_proj_bias.copy_(torch.cat([module.q.bias, module.k.bias, module.v.bias]))
        mha.out_proj.weight.copy_(module.proj.weight)
        mha.out_proj.bias.copy_(module.proj.bias)
    batch, n = kept.shape[:2]
    middle = kept.shape[2:-1]
    sequences = kept.movedim(1, -2).reshape(-1, n, dim)
    queries = module.queries.expand(sequences.shape[0], -1, -1)
    out = queries + mha(queries, sequences, sequences, need_weights=False)[0]
    return out.reshape(batch, *middle, module.num_tokens, dim).movedim(-2, 1)


@settings(deadline=None)
@given(
    st.integers(0, 2), st.integers(1, 6), st.integers(1, 9), st.integers(0, 2),
    st.sampled_from([(8, 1), (8, 2), (12, 3)]), st.integers(0, 2**16),
)  # fmt: skip
def test_recovery_matches_multihead_attention(batch, kept, length, middle_axes, sizes, seed):
    dim, heads = sizes
    torch.manual_seed(seed)
    module = TokenRecoveringAttention(dim, length, heads).double()
    torch.nn.init.normal_(module.queries)
    middle = (3, 2)[:middle_axes]
    tokens = torch.randn(batch, kept, *middle, dim, dtype=torch.float64)
    out = module(tokens)
    assert out.shape == (batch, length, *middle, dim)
    torch.testing.assert_close(out, reference_recovery(module, tokens))


def test_recovery_gradient_reaches_every_input():
    torch.manual_seed(0)
    module = TokenRecoveringAttention(16, 7, 4)
    torch.nn.init.normal_(module.queries)
    kept = torch.randn(2, 3, 5, 16, requires_grad=True)
    (module(kept) * torch.randn(2, 7, 5, 16)).sum().backward()
    assert kept.grad.abs().sum(dim=(0, 2, 3)).gt(0).all(), "every kept token gets gradient"
    for name, param in module.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_recovery_zero_queries_give_equal_positions():
    module = TokenRecoveringAttention(8, 5, 2)  # HoT's zero-initialised queries
    out = module(torch.randn(1, 3, 8))
    torch.testing.assert_close(out, out[:, :1].expand_as(out))


def test_recovery_bad_input():
    with pytest.raises(ValueError, match="divisible"):
        TokenRecoveringAttention(10, 5, 3)
    with pytest.raises(ValueError, match="num_tokens"):
        TokenRecoveringAttention(8, 0, 2)
    with pytest.raises(ValueError, match="attn_drop"):
        TokenRecoveringAttention(8, 5, 2, attn_drop=1.0)
    with pytest.raises(ValueError, match="proj_drop"):
        TokenRecoveringAttention(8, 5, 2, proj_drop=-0.1)
    module = TokenRecoveringAttention(8, 5, 2)
    with pytest.raises(ValueError, match=r"kept must be \[B, n >= 1, \.\.\., D=8\]"):
        module(torch.randn(1, 3, 6))
    with pytest.raises(ValueError, match="kept must be"):
        module(torch.randn(1, 0, 8))
    with pytest.raises(TypeError, match="kept"):
        module(torch.ones(1, 3, 8, dtype=torch.int64))
