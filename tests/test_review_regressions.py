"""Regression tests for defects found in review: each failed before its fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tokenprune import (
    ConstantKeepRate,
    GroupTokenPruner,
    MultiHeadGroupAttention,
    TransformerBlock,
    count_flops,
    fuse_pruned_tokens,
    gather_tokens,
    select_topk,
    token_scores,
)
from tokenprune.flops import flop_counter_mapping


class _EViTStep(nn.Module):
    """Attention, class-token scores, pruning with fusion; returns the PrunedTokens tuple."""

    def __init__(self):
        super().__init__()
        self.attn = MultiHeadGroupAttention(16, 2)
        self.prune = GroupTokenPruner(0.5, fuse_pruned=True)

    def forward(self, x):
        x, logits = self.attn.forward_scored(x, num_shared=1, score_queries=1)
        return self.prune(x, token_scores(logits, "cls"), num_shared=1)


def test_count_flops_traces_fusion_and_named_tuple_outputs():
    report = count_flops(_EViTStep(), torch.randn(2, 9, 16))
    assert report.unknown_ops == {}
    assert "aten::scatter" in report.uncounted_ops
    assert report.macs > 0


def test_flops_agree_with_flop_counter_mode_on_a_block_with_layer_norms():
    block = TransformerBlock(16, 2, mlp_ratio=2)
    x = torch.randn(1, 3, 7, 16)
    report = count_flops(block, x)
    with FlopCounterMode(display=False, custom_mapping=flop_counter_mapping()) as counter:
        block(x)
    assert counter.get_total_flops() == report.flops
    assert report.uncounted_ops["aten::layer_norm"] == 2


@pytest.mark.slow
def test_compiles_with_dynamic_shapes():
    attn = MultiHeadGroupAttention(16, 2).eval()
    pruner = GroupTokenPruner(0.5)

    def step(x):
        x, logits = attn.forward_scored(x, num_shared=2, score_queries=2)
        return pruner(x, token_scores(logits, "softmax_pool"), num_shared=2).tokens

    compiled = torch.compile(step, dynamic=True, fullgraph=True)
    for tokens in (9, 13):
        x = torch.randn(2, 3, tokens, 16)
        torch.testing.assert_close(compiled(x), step(x))


def test_gather_tokens_refuses_a_table_without_batch_axis_it_would_misread():
    table = torch.randn(256, 192)
    with pytest.raises(ValueError, match=r"give it a leading axis"):
        gather_tokens(table, torch.tensor([[3, 7, 100]]))
    assert gather_tokens(table[None], torch.tensor([[3, 7, 100]])).shape == (1, 3, 192)


def test_apply_rejects_side_tensors_with_wrong_leading_axes():
    result = GroupTokenPruner(0.5)(torch.randn(2, 10, 4), torch.randn(2, 8), num_shared=2)
    with pytest.raises(ValueError, match="side must be"):
        result.apply(torch.randn(10, 8))  # a table without batch axis, 8 == N - S by chance
    with pytest.raises(ValueError, match="side must be"):
        result.apply(torch.randn(3, 10, 4))


def test_module_input_must_match_parameters():
    attn = MultiHeadGroupAttention(16, 2)
    with pytest.raises(ValueError, match="must match the module's parameters"):
        attn(torch.randn(1, 5, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="must match the module's parameters"):
        attn(torch.randn(1, 5, 16, device="meta"))
    with pytest.raises(TypeError, match=r"key_mask must be a torch\.Tensor"):
        attn(torch.randn(1, 5, 16), key_mask=[[True] * 5])
    with pytest.raises(ValueError, match=r"attn_drop must be in \[0.0, 1.0\)"):
        MultiHeadGroupAttention(16, 2, attn_drop=1.5)


@pytest.mark.parametrize("rate", [1.0, 0.01])  # k == N - S and k == 0 skip the top-k
def test_nan_scores_raise_on_every_path(rate):
    pruner = GroupTokenPruner(rate, budget="original", num_original=8)
    with pytest.raises(ValueError, match="NaN"):
        pruner(torch.randn(1, 10, 4), torch.full((1, 8), float("nan")), num_shared=2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_scoring_logits_values(dtype):
    torch.manual_seed(0)
    module = MultiHeadGroupAttention(32, 4)
    x = torch.randn(2, 3, 10, 32)
    _, exact = module.double().forward_scored(x.double(), num_shared=2, score_queries=3)
    _, half = module.to(dtype).forward_scored(x.to(dtype), num_shared=2, score_queries=3)
    # the logits are computed in float32 from half-precision q and k
    torch.testing.assert_close(half.logits.double(), exact.logits, rtol=0, atol=0.05)
    torch.testing.assert_close(half.lse.double(), exact.lse, rtol=0, atol=0.05)


def test_fusion_checks_kept_indices():
    with pytest.raises(ValueError, match=r"kept_idx must lie in \[0, 3\)"):
        fuse_pruned_tokens(torch.randn(1, 3, 2), torch.rand(1, 3), torch.tensor([[7]]))


def test_schedule_epoch_checks():
    schedule = ConstantKeepRate(0.7)
    with pytest.raises(ValueError, match="finite"):
        schedule(float("nan"))
    with pytest.raises(TypeError, match="epoch must be a number"):
        schedule("3")


def test_numpy_integers_are_ints():
    idx = select_topk(torch.tensor([0.1, 0.9, 0.5]), np.int64(2))
    assert idx.tolist() == [1, 2]


def test_group_without_keys_has_finite_zero_gradients():
    module = MultiHeadGroupAttention(8, 2)
    x = torch.randn(1, 2, 4, 8, requires_grad=True)
    key_mask = torch.ones(1, 2, 4, dtype=torch.bool)
    key_mask[0, 1] = False
    module(x, key_mask=key_mask).sum().backward()
    assert torch.isfinite(x.grad).all()
