"""count_flops: the paper convention by hand, the traced count, and FlopCounterMode."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tokenprune import (
    GroupTokenPruner,
    MultiHeadGroupAttention,
    TransformerBlock,
    count_flops,
    token_scores,
)
from tokenprune.flops import flop_counter_mapping, register_mac_formula


class _SubclassedLinear(nn.Linear):
    """thop matches module types exactly, so a subclass of Linear is not counted."""


class _PaperZoo(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.depthwise = nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(4, 8)
        self.norm = nn.LayerNorm(8)
        self.softmax = nn.Softmax(dim=-1)
        self.act = nn.GELU()
        self.hidden = _SubclassedLinear(8, 8)

    def forward(self, image, tokens):
        y = self.pool(self.bn(self.depthwise(self.conv(image))))
        t = self.softmax(self.norm(self.act(self.linear(tokens))))
        t = self.hidden(t)
        attn = F.scaled_dot_product_attention(t, t, t)  # functional: invisible to thop
        return y, attn


def test_paper_convention_by_hand():
    report = count_flops(_PaperZoo(), torch.randn(1, 3, 8, 8), torch.randn(2, 5, 4))
    conv = 384 * 3 * 9  # output [1, 6, 8, 8] = 384 elements, 3 input channels, 3x3 kernel
    depthwise = 384 * 1 * 9
    bn = 2 * 384 * 2  # affine: doubled
    pool = (64 + 1) * 6
    linear = 4 * (2 * 5 * 8)
    layer_norm = 2 * 80 * 2
    softmax = 10 * (3 * 8 - 1)
    assert report.paper_macs == conv + depthwise + bn + pool + linear + layer_norm + softmax
    assert report.linear_conv_macs == conv + depthwise + linear
    assert report.paper_by_module["conv"] == conv
    assert "hidden" not in report.paper_by_module  # a Linear subclass is not hooked


def _mhga_macs(batch, groups, tokens, num_shared, dim, heads, score_queries=0):
    keys = groups * num_shared + tokens - num_shared
    rows = batch * groups * tokens
    head_dim = dim // heads
    linear = rows * dim * 3 * dim + rows * dim * dim
    attention = batch * groups * heads * tokens * keys * 2 * head_dim
    scoring = batch * groups * heads * score_queries * keys * head_dim
    return linear + attention + scoring


@pytest.mark.parametrize("score_queries", [0, 3])
def test_traced_count_of_group_attention_is_exact(score_queries):
    module = MultiHeadGroupAttention(32, 4)

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = module

        def forward(self, x):
            if not score_queries:
                return self.attn(x, num_shared=3)
            out, logits = self.attn.forward_scored(x, num_shared=3, score_queries=score_queries)
            # return everything: the trace drops computations whose results are unused
            return out, logits.logits

    x = torch.randn(2, 3, 10, 32)
    report = count_flops(Wrapped(), x)
    assert report.macs == _mhga_macs(2, 3, 10, 3, 32, 4, score_queries)
    assert report.flops == 2 * report.macs
    assert not report.unknown_ops
    # paper convention sees the two Linear layers only
    assert report.paper_macs == 2 * 3 * 10 * 32 * (3 * 32 + 32)


@pytest.mark.parametrize(
    "model, shape",
    [
        (MultiHeadGroupAttention(48, 6), (2, 3, 11, 48)),
        (
            nn.Sequential(
                nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 7 * 7, 10)
            ),
            (2, 3, 16, 16),
        ),
    ],
)
def test_traced_count_agrees_with_flop_counter_mode(model, shape):
    x = torch.randn(shape)
    report = count_flops(model, x)
    with FlopCounterMode(display=False, custom_mapping=flop_counter_mapping()) as counter:
        model(x)
    assert counter.get_total_flops() == 2 * report.macs


def test_pruning_ops_are_listed_as_uncounted():
    class Pruned(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = TransformerBlock(16, 2, mlp_ratio=2)
            self.pruner = GroupTokenPruner(0.5)

        def forward(self, x):
            x, logits = self.block.attend_scored(x, num_shared=2, score_queries=2)
            pruned = self.pruner(x, token_scores(logits, "softmax_pool"), num_shared=2)
            return self.block.feed_forward(pruned.tokens)

    report = count_flops(Pruned(), torch.randn(2, 3, 12, 16))
    assert "aten::sort" in report.uncounted_ops
    assert "aten::gather" in report.uncounted_ops
    assert report.unknown_ops == {}
    assert "counted as zero" in str(report)
    # the feed-forward runs on 2 + 5 tokens per group after pruning
    mlp = report.by_module["block.mlp"]
    assert mlp == 2 * 3 * 7 * (16 * 32 + 32 * 16)


torch.library.define("tokenprune_test::mystery", "(Tensor x) -> Tensor")


@torch.library.impl("tokenprune_test::mystery", "cpu")
def _mystery(x):
    return x @ x.transpose(-1, -2) @ x


class _Mystery(nn.Module):
    def forward(self, x):
        return torch.ops.tokenprune_test.mystery(x)


def test_custom_op_without_formula_warns_and_with_formula_counts():
    x = torch.randn(2, 4, 3)
    with pytest.warns(RuntimeWarning, match="no formula for.*tokenprune_test::mystery"):
        report = count_flops(_Mystery(), x)
    assert report.unknown_ops == {"tokenprune_test::mystery": 1}
    register_mac_formula(
        "tokenprune_test::mystery", lambda ins, outs: 2 * ins[0][0] * ins[0][1] ** 2 * ins[0][2]
    )
    report = count_flops(_Mystery(), x)
    assert report.macs == 2 * 2 * 16 * 3 and report.unknown_ops == {}


def test_params_and_mode_restored():
    model = TransformerBlock(16, 2, mlp_ratio=2).train()
    report = count_flops(model, torch.randn(1, 5, 16))
    assert report.params == sum(p.numel() for p in model.parameters())
    assert model.training
    with pytest.raises(TypeError, match=r"model must be an nn\.Module"):
        count_flops(lambda x: x, torch.randn(1))


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
