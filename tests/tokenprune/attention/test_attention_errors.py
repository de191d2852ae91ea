"""Bad input to the attention API gets a clear error that names the argument."""

from __future__ import annotations

import pytest
import torch

from tokenprune import MultiHeadGroupAttention, group_attention


@pytest.fixture
def module():
    return MultiHeadGroupAttention(16, 4)


def test_constructor_arguments():
    with pytest.raises(ValueError, match=r"dim \(10\) must be divisible by num_heads \(4\)"):
        MultiHeadGroupAttention(10, 4)
    with pytest.raises(ValueError, match="num_heads must be >= 1"):
        MultiHeadGroupAttention(16, 0)
    with pytest.raises(TypeError, match="dim must be an int"):
        MultiHeadGroupAttention(16.0, 4)
    with pytest.raises(ValueError, match="scale must be a positive"):
        MultiHeadGroupAttention(16, 4, scale=0.0)
    with pytest.raises(ValueError, match="backend must be one of"):
        MultiHeadGroupAttention(16, 4, backend="cuda")


def test_forward_shapes(module):
    with pytest.raises(ValueError, match="x must have 3 or 4 dimensions"):
        module(torch.randn(5, 16))
    with pytest.raises(ValueError, match="x must have 3 or 4 dimensions"):
        module(torch.randn(1, 2, 3, 5, 16))
    with pytest.raises(ValueError, match="x must have last dimension 16"):
        module(torch.randn(2, 5, 12))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        module(torch.ones(2, 5, 16, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor"):
        module([[0.0] * 16])


def test_forward_token_arguments(module):
    x = torch.randn(2, 3, 5, 16)
    with pytest.raises(ValueError, match="num_shared must be <= 5"):
        module(x, num_shared=6)
    with pytest.raises(ValueError, match="num_shared must be >= 0"):
        module(x, num_shared=-1)
    with pytest.raises(ValueError, match="score_queries must be <= 5"):
        module.forward_scored(x, score_queries=6)
    with pytest.raises(TypeError, match="num_shared must be an int"):
        module(x, num_shared=1.5)


def test_key_mask_arguments(module):
    x = torch.randn(2, 3, 5, 16)
    with pytest.raises(TypeError, match="key_mask must be a bool tensor"):
        module(x, key_mask=torch.ones(2, 3, 5))
    with pytest.raises(ValueError, match=r"key_mask must have shape \(2, 3, 5\)"):
        module(x, key_mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"key_mask must have shape \(2, 5\)"):
        module(torch.randn(2, 5, 16), key_mask=torch.ones(2, 3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="same device"):
        module(x, key_mask=torch.ones(2, 3, 5, dtype=torch.bool, device="meta"))


def test_functional_arguments():
    q = torch.randn(1, 2, 2, 4, 8)
    with pytest.raises(ValueError, match="q, k and v must have the same shape"):
        group_attention(q, q[..., :4], q)
    with pytest.raises(ValueError, match="tensors must share one dtype"):
        group_attention(q, q.double(), q)
    with pytest.raises(ValueError, match="same device"):
        group_attention(q, q.to("meta"), q)
    with pytest.raises(ValueError, match="q must have 5 dimensions"):
        group_attention(q[0], q[0], q[0])
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\)"):
        group_attention(q, q, q, dropout_p=1.0)
    with pytest.raises(ValueError, match="backend must be one of"):
        group_attention(q, q, q, backend="flash")


def test_public_checks_are_documented_and_name_the_argument():
    from tokenprune import checks

    assert all(getattr(checks, name).__doc__ for name in checks.__all__)
    with pytest.raises(ValueError, match=r"keep_rate must be in \(0, 1\], got 1.5"):
        checks.check_keep_rate("keep_rate", 1.5)
    with pytest.raises(TypeError, match=r"x must be a torch\.Tensor, got list"):
        checks.check_floating("x", [1.0])
    assert checks.check_int("n", 3, low=0, high=5) == 3
