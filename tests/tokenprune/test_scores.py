"""Score rules against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.oracles.naive import naive_group_attention, split_heads
from tokenprune import MultiHeadGroupAttention, token_scores
from tokenprune.scores import cls_score, mean_score, softmax_pool_score


def test_softmax_pool_by_hand():
    # [H=2, J=1, N=2]; column 0 has logits (0, ln 3): weights (1/4, 3/4); column 1 is flat.
    logits = torch.tensor([[[0.0, 1.0]], [[math.log(3.0), 1.0]]], dtype=torch.float64)
    scores = softmax_pool_score(logits)
    expected = torch.tensor([0.75 * math.log(3.0), 1.0], dtype=torch.float64)
    torch.testing.assert_close(scores, expected)


def test_softmax_pool_leans_to_the_max_but_is_not_the_max():
    logits = torch.tensor([[[5.0]], [[0.0]], [[0.0]]])  # [H=3, J=1, N=1]
    w = math.exp(5.0) / (math.exp(5.0) + 2.0)
    assert softmax_pool_score(logits).item() == pytest.approx(5.0 * w, rel=1e-6)
    assert softmax_pool_score(logits).item() < 5.0


def test_softmax_pool_query_mask_equals_gtpt_finite_fill():
    # GTPT fills its dummy query row with -finfo(float32).max, which gives it exactly zero
    # softmax weight; excluding the row with query_mask must give the same scores.
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 6, 20, generator=gen)  # [B, G, H, J, N]
    official = logits.clone()
    official[:, 0, :, 0, :] = -torch.finfo(torch.float32).max
    rows = official.flatten(2, 3)  # [B, G, H*J, N], softmax over rows, per column
    expected = (torch.softmax(rows, dim=2) * rows).sum(dim=2)
    query_mask = torch.ones(3, 6, dtype=torch.bool)
    query_mask[0, 0] = False
    torch.testing.assert_close(softmax_pool_score(logits, query_mask), expected)


def test_softmax_pool_masked_column_scores_minus_infinity():
    logits = torch.tensor([[[0.3, float("-inf")], [0.1, float("-inf")]]])  # [H=1, J=2, N=2]
    scores = softmax_pool_score(logits)
    assert scores[1].item() == float("-inf") and math.isfinite(scores[0].item())
    logits.requires_grad_(True)
    softmax_pool_score(logits)[0].backward()
    assert torch.isfinite(logits.grad).all()


def test_mean_score_by_hand():
    probs = torch.tensor(
        [
            [[0.2, 0.3, 0.5], [0.0, 0.5, 0.1]],  # head 0: queries 0, 1
            [[0.4, 0.1, 0.1], [0.2, 0.3, 0.3]],  # head 1
        ]
    )
    torch.testing.assert_close(mean_score(probs), torch.tensor([0.4, 0.6, 0.5]))
    torch.testing.assert_close(
        mean_score(probs, torch.tensor([True, False])), torch.tensor([0.3, 0.2, 0.3])
    )


def test_cls_score_by_hand():
    probs = torch.tensor([[[0.2, 0.3, 0.5]], [[0.4, 0.1, 0.1]]])
    torch.testing.assert_close(cls_score(probs), torch.tensor([0.3, 0.2, 0.3]))
    with pytest.raises(ValueError, match=r"\[\.\.\., H, 1, N\]"):
        cls_score(torch.rand(2, 2, 3))


@given(st.integers(1, 2), st.integers(1, 4), st.integers(0, 6), st.sampled_from([1, 2, 4]),
       st.integers(0, 2**31 - 1))
def test_token_scores_mean_is_ppt_rule_on_attention(batch, keypoints, visual, heads, seed):
    # PPT: keypoint tokens first, scores = post-softmax attention of the keypoint rows to the
    # visual columns, mean over heads, sum over keypoints.
    torch.manual_seed(seed)
    dim = heads * 4
    module = MultiHeadGroupAttention(dim, heads).double()
    x = torch.randn(batch, keypoints + visual, dim, dtype=torch.float64)
    _, logits = module.forward_scored(x, num_shared=keypoints, score_queries=keypoints)
    q, k, v = (split_heads(t, heads) for t in module.qkv(x).chunk(3, dim=-1))
    _, full = naive_group_attention(q[:, None], k[:, None], v[:, None], 0, None, module.scale)
    probs = torch.softmax(full[:, 0], dim=-1)  # [B, H, N, N]
    expected = probs[:, :, :keypoints, keypoints:].mean(dim=1).sum(dim=1)
    torch.testing.assert_close(token_scores(logits, "mean"), expected)


def test_token_scores_softmax_pool_and_cls_on_group_attention():
    torch.manual_seed(0)
    module = MultiHeadGroupAttention(16, 4).double()
    x = torch.randn(2, 3, 9, 16, dtype=torch.float64)  # 3 groups, 2 shared + 7 private each
    _, logits = module.forward_scored(x, num_shared=2, score_queries=2)
    scores = token_scores(logits, "softmax_pool")
    assert scores.shape == (2, 3, 7)
    private = logits.logits[..., 3 * 2 :]
    torch.testing.assert_close(scores, softmax_pool_score(private))
    _, cls_logits = module.forward_scored(x, num_shared=1, score_queries=1)
    cls = token_scores(cls_logits, "cls")
    assert cls.shape == (2, 3, 8)
    torch.testing.assert_close(cls, cls_logits.private_probs().mean(dim=2).squeeze(2))


def test_token_scores_rejects_bad_arguments():
    module = MultiHeadGroupAttention(8, 2)
    _, logits = module.forward_scored(torch.randn(1, 5, 8), num_shared=1, score_queries=2)
    with pytest.raises(ValueError, match="rule must be one of"):
        token_scores(logits, "max")
    with pytest.raises(TypeError, match="attention must be AttentionLogits"):
        token_scores(logits.logits, "mean")
    with pytest.raises(ValueError, match="query_mask must have last dimension 2"):
        token_scores(logits, "mean", torch.ones(3, dtype=torch.bool))
    with pytest.raises(TypeError, match="query_mask must be a bool tensor"):
        token_scores(logits, "softmax_pool", torch.ones(2))
    with pytest.raises(ValueError, match=r"exactly one query \(score_queries=1\), got 2"):
        token_scores(logits, "cls")


@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_softmax_pool_matches_per_column_loop(heads, queries, columns, seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, heads, queries, columns, generator=gen, dtype=torch.float64) * 3
    masked_columns = torch.rand(2, columns, generator=gen) < 0.3
    logits = logits.masked_fill(masked_columns[:, None, None, :], float("-inf"))
    query_mask = torch.rand(2, queries, generator=gen) < 0.7
    scores = softmax_pool_score(logits, query_mask)
    for b in range(2):
        rows = [(h, j) for h in range(heads) for j in range(queries) if query_mask[b, j]]
        for n in range(columns):
            column = [logits[b, h, j, n].item() for h, j in rows]
            if not column or masked_columns[b, n]:
                assert scores[b, n].item() == float("-inf")
                continue
            top = max(column)
            weights = [math.exp(a - top) for a in column]
            expected = sum(w * a for w, a in zip(weights, column, strict=True)) / sum(weights)
            assert scores[b, n].item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_softmax_pool_propagates_nan_so_selection_rejects_it():
    logits = torch.tensor([[[0.3, 1.0], [float("nan"), 2.0]]])  # [H=1, J=2, N=2]
    scores = softmax_pool_score(logits)
    assert torch.isnan(scores[0]) and torch.isfinite(scores[1])
    from tokenprune import select_topk

    with pytest.raises(ValueError, match="NaN"):
        select_topk(scores, 1)
