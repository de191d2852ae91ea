"""TransformerBlock, Mlp and DropPath."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tokenprune import TransformerBlock
from tokenprune.blocks import DropPath


def test_block_is_pre_norm_attention_then_mlp():
    torch.manual_seed(0)
    block = TransformerBlock(16, 4, mlp_ratio=3).eval()
    x = torch.randn(2, 3, 7, 16)
    h = x + block.attn(block.norm1(x), num_shared=2)
    mlp = block.mlp
    expected = h + mlp.fc2(F.gelu(mlp.fc1(block.norm2(h))))
    torch.testing.assert_close(block(x, num_shared=2), expected)
    assert mlp.fc1.out_features == 48


def test_attend_then_feed_forward_equals_forward_and_returns_logits():
    block = TransformerBlock(16, 4).eval()
    x = torch.randn(1, 9, 16)
    out, logits = block.forward_scored(x, num_shared=1, score_queries=1)
    staged, staged_logits = block.attend_scored(x, num_shared=1, score_queries=1)
    torch.testing.assert_close(block.feed_forward(staged), out)
    torch.testing.assert_close(staged_logits.logits, logits.logits)


def test_drop_path_drops_whole_samples_in_training_only():
    torch.manual_seed(0)
    drop = DropPath(0.5)
    x = torch.ones(1000, 3, 4)
    y = drop.train()(x)
    per_sample = y.flatten(1)
    assert ((per_sample == 0).all(1) | (per_sample == 2).all(1)).all()
    assert 0.4 < (per_sample[:, 0] == 0).float().mean() < 0.6
    assert torch.equal(drop.eval()(x), x)
    with pytest.raises(ValueError, match=r"drop_prob must be in \[0, 1\)"):
        DropPath(1.0)
