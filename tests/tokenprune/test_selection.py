"""select_topk, gather_tokens and token fusion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tokenprune import select_topk
from tokenprune.selection import fuse_pruned_tokens, gather_tokens, pruned_token_weights


@st.composite
def score_rows(draw):
    """Scores ``[R, N]`` with deliberate ties (few distinct values) and a valid ``k``."""
    rows = draw(st.integers(1, 4))
    tokens = draw(st.integers(1, 12))
    distinct = draw(st.integers(1, 5))
    values = st.integers(0, distinct - 1).map(float) | st.just(float("-inf"))
    flat = draw(st.lists(values, min_size=rows * tokens, max_size=rows * tokens))
    k = draw(st.integers(1, tokens))
    return torch.tensor(flat, dtype=torch.float32).reshape(rows, tokens), k


@given(score_rows())
def test_select_topk_properties(case):
    scores, k = case
    idx = select_topk(scores, k)
    assert idx.dtype == torch.int64 and idx.shape == (scores.shape[0], k)
    for row, kept in zip(scores, idx, strict=True):
        kept_list = kept.tolist()
        assert kept_list == sorted(set(kept_list)), "unique and ascending"
        assert all(0 <= i < scores.shape[1] for i in kept_list)
        dropped = [i for i in range(scores.shape[1]) if i not in kept_list]
        if dropped:
            min_kept = row[kept].min()
            max_dropped = row[dropped].max()
            assert min_kept >= max_dropped, "every kept score >= every dropped score"
            # ties at the boundary go to the lower positions
            boundary = [i for i in range(scores.shape[1]) if row[i] == min_kept]
            kept_at_boundary = [i for i in kept_list if row[i] == min_kept]
            assert kept_at_boundary == boundary[: len(kept_at_boundary)]


@given(score_rows())
def test_select_topk_rows_are_independent(case):
    scores, k = case
    batched = select_topk(scores, k)
    for r in range(scores.shape[0]):
        assert torch.equal(batched[r], select_topk(scores[r], k))


def test_select_topk_full_k_is_identity_and_ties_prefer_lower_positions():
    scores = torch.tensor([[0.5, 2.0, 2.0, 1.0, 2.0]])
    assert select_topk(scores, 5).tolist() == [[0, 1, 2, 3, 4]]
    assert select_topk(scores, 2).tolist() == [[1, 2]]
    assert select_topk(scores, 3).tolist() == [[1, 2, 4]]
    assert select_topk(torch.zeros(1, 4), 2).tolist() == [[0, 1]]


def test_select_topk_batched_leading_dims():
    scores = torch.randn(2, 3, 10)
    idx = select_topk(scores, 4)
    assert idx.shape == (2, 3, 4)
    expected = scores.topk(4, dim=-1).indices.sort(dim=-1).values  # no ties with randn
    assert torch.equal(idx, expected)


@pytest.mark.parametrize("k", [0, -1, 6])
def test_select_topk_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k must be"):
        select_topk(torch.randn(5), k)


def test_select_topk_rejects_nan_and_bad_types():
    with pytest.raises(ValueError, match="NaN"):
        select_topk(torch.tensor([1.0, float("nan"), 0.0]), 1)
    with pytest.raises(TypeError, match="k must be an int"):
        select_topk(torch.randn(5), 2.0)
    with pytest.raises(TypeError, match="k must be an int"):
        select_topk(torch.randn(5), True)
    with pytest.raises(TypeError, match="scores must be a floating-point tensor"):
        select_topk(torch.arange(5), 2)
    with pytest.raises(TypeError, match=r"scores must be a torch\.Tensor"):
        select_topk([1.0, 2.0], 1)


@given(
    st.integers(1, 3), st.integers(1, 10), st.integers(0, 10), st.integers(1, 4), st.data()
)
def test_gather_tokens_matches_indexing(batch, tokens, k, dim, data):
    x = torch.randn(batch, tokens, dim)
    idx = torch.tensor(
        data.draw(st.lists(st.lists(st.integers(0, tokens - 1), min_size=k, max_size=k),
                           min_size=batch, max_size=batch)),
        dtype=torch.int64,
    ).reshape(batch, k)
    out = gather_tokens(x, idx)
    assert out.shape == (batch, k, dim)
    for b in range(batch):
        assert torch.equal(out[b], x[b, idx[b]])
    # per-token scalars: [..., N] with idx [..., k]
    assert torch.equal(gather_tokens(x[..., 0], idx), out[..., 0])


def test_gather_tokens_broadcasts_a_shared_table():
    pos = torch.randn(1, 6, 4)  # one positional table for the whole batch
    idx = torch.tensor([[0, 5], [3, 1], [2, 2]])
    out = gather_tokens(pos, idx)
    assert out.shape == (3, 2, 4)
    assert torch.equal(out[1], pos[0, [3, 1]])
    grouped = gather_tokens(torch.randn(2, 1, 6, 4), torch.zeros(2, 3, 2, dtype=torch.int64))
    assert grouped.shape == (2, 3, 2, 4)
    flat = gather_tokens(torch.arange(6.0), torch.tensor([4, 1]))
    assert torch.equal(flat, torch.tensor([4.0, 1.0]))


def test_gather_tokens_int32_indices_and_gradients():
    x = torch.randn(2, 5, 3, requires_grad=True)
    idx = torch.tensor([[1, 1], [4, 0]], dtype=torch.int32)
    gather_tokens(x, idx).sum().backward()
    expected = torch.zeros(2, 5, 3)
    expected[0, 1] = 2.0
    expected[1, 4] = 1.0
    expected[1, 0] = 1.0
    assert torch.equal(x.grad, expected)


def test_gather_tokens_rejects_bad_input():
    x = torch.randn(2, 5, 3)
    with pytest.raises(TypeError, match="idx must be an int64 or int32"):
        gather_tokens(x, torch.zeros(2, 1))
    with pytest.raises(ValueError, match=r"idx must lie in \[0, 5\)"):
        gather_tokens(x, torch.tensor([[0], [5]]))
    with pytest.raises(ValueError, match=r"idx must lie in \[0, 5\)"):
        gather_tokens(x, torch.tensor([[0], [-1]]))
    with pytest.raises(ValueError, match="x must be"):
        gather_tokens(x, torch.zeros(2, 2, 2, 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="do not broadcast"):
        gather_tokens(x, torch.zeros(3, 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="same device"):
        gather_tokens(x, torch.zeros(2, 1, dtype=torch.int64, device="meta"))


def test_fuse_pruned_tokens_by_hand():
    x = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [4.0, 4.0], [8.0, 0.0]]])
    weights = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    kept = torch.tensor([[0, 2]])
    # pruned: tokens 1 and 3 with weights 0.2 and 0.4
    summed = fuse_pruned_tokens(x, weights, kept)
    torch.testing.assert_close(summed, torch.tensor([[[0.2 * 0 + 0.4 * 8, 0.2 * 2 + 0]]]))
    averaged = fuse_pruned_tokens(x, weights, kept, normalize=True)
    torch.testing.assert_close(averaged, torch.tensor([[[3.2 / 0.6, 0.4 / 0.6]]]))
    # a padding slot never contributes
    mask = torch.tensor([[True, True, True, False]])
    torch.testing.assert_close(
        fuse_pruned_tokens(x, weights, kept, key_mask=mask), torch.tensor([[[0.0, 0.4]]])
    )
    # nothing pruned: zeros
    all_kept = torch.tensor([[0, 1, 2, 3]])
    nothing = fuse_pruned_tokens(x, weights, all_kept, normalize=True)
    assert torch.equal(nothing, torch.zeros(1, 1, 2))
    assert pruned_token_weights(weights, kept).tolist() == [[0.0, pytest.approx(0.2), 0.0,
                                                             pytest.approx(0.4)]]


def test_fuse_pruned_tokens_rejects_negative_weights():
    with pytest.raises(ValueError, match="non-negative"):
        fuse_pruned_tokens(torch.randn(1, 3, 2), torch.tensor([[0.1, -0.2, 0.3]]),
                           torch.tensor([[0]]))


def test_gather_tokens_refuses_a_table_without_batch_axis_it_would_misread():
    table = torch.randn(256, 192)
    with pytest.raises(ValueError, match=r"give it a leading axis"):
        gather_tokens(table, torch.tensor([[3, 7, 100]]))
    assert gather_tokens(table[None], torch.tensor([[3, 7, 100]])).shape == (1, 3, 192)


def test_fusion_checks_kept_indices():
    with pytest.raises(ValueError, match=r"kept_idx must lie in \[0, 3\)"):
        fuse_pruned_tokens(torch.randn(1, 3, 2), torch.rand(1, 3), torch.tensor([[7]]))


def test_numpy_integers_are_ints():
    idx = select_topk(torch.tensor([0.1, 0.9, 0.5]), np.int64(2))
    assert idx.tolist() == [1, 2]
