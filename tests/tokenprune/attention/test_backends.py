"""The backend registry behind MultiHeadGroupAttention(backend=...)."""

from __future__ import annotations

import pytest
import torch

from tokenprune import MultiHeadGroupAttention, group_attention
from tokenprune.attention import available_backends
from tokenprune.attention import backends as registry
from tokenprune.attention.reference import group_attention_torch


@pytest.fixture
def recording_backend():
    calls = []

    def impl(*args):
        calls.append(args[0].shape)
        return group_attention_torch(*args)

    def supports(q, dropout_p):
        return None if q.dtype == torch.float64 else "float64 only"

    registry.register_backend("group_attention", "recording", lambda: impl, supports, priority=10)
    yield calls
    del registry._REGISTRY[("group_attention", "recording")]


def test_torch_backend_is_always_available():
    assert {"auto", "torch"} <= set(available_backends())
    q = torch.randn(1, 2, 2, 3, 4)
    torch.testing.assert_close(
        group_attention(q, q, q, num_shared=1, backend="torch"),
        group_attention(q, q, q, num_shared=1, backend="auto"),
    )


def test_auto_prefers_higher_priority_backend_that_supports_the_call(recording_backend):
    q = torch.randn(1, 2, 2, 3, 4, dtype=torch.float64)
    group_attention(q, q, q)
    assert len(recording_backend) == 1
    group_attention(q.float(), q.float(), q.float())  # not supported: falls back to torch
    assert len(recording_backend) == 1
    module = MultiHeadGroupAttention(8, 2, backend="recording").double()
    module(torch.randn(1, 5, 8, dtype=torch.float64))
    assert len(recording_backend) == 2


def test_named_backend_that_cannot_run_the_call_raises(recording_backend):
    q = torch.randn(1, 2, 2, 3, 4)
    with pytest.raises(ValueError, match="backend 'recording' cannot run this call: float64 only"):
        group_attention(q, q, q, backend="recording")


def test_auto_is_reserved():
    with pytest.raises(ValueError, match="reserved"):
        registry.register_backend("group_attention", "auto", lambda: group_attention_torch,
                                  lambda *a: None,
                                  priority=0)
