"""TokenPruningCluster: DPC-kNN frame selection."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.oracles.naive import naive_density_peaks
from tokenprune.temporal import (
    TokenPruningCluster,
    density_peaks,
    pool_frames,
)


@st.composite
def frame_features(draw):
    batch = draw(st.integers(1, 3))
    frames = draw(st.integers(1, 12))
    width = draw(st.integers(1, 6))
    k = draw(st.integers(1, frames))
    seed = draw(st.integers(0, 2**16))
    features = torch.randn(batch, frames, width, generator=torch.Generator().manual_seed(seed))
    return features.double(), k


@given(frame_features(), st.sampled_from(["index", "none"]))
def test_density_peaks_match_loops(case, tie_break):
    features, k = case
    density, parent, score = density_peaks(features, k, tie_break)
    want_density, want_parent, want_score = naive_density_peaks(features, k, tie_break)
    torch.testing.assert_close(density, want_density, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(parent, want_parent, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(score, want_score, rtol=1e-9, atol=1e-9)


def test_density_peaks_by_hand():
    # frames on a line at 0, 1, 3 (width 1): nearest other frame at 1, 1, 2
    features = torch.tensor([[[0.0], [1.0], [3.0]]], dtype=torch.float64)
    want_density = torch.exp(-torch.tensor([[0.5, 0.5, 2.0]], dtype=torch.float64))
    # frames 0 and 1 tie for the highest density. Without a tie-break neither is strictly
    # denser: both are peaks with the sequence's largest distance (3). With the index
    # tie-break frame 0 is the one peak and frame 1's parent is frame 0 (distance 1).
    # Frame 2's nearest denser frame is frame 1 either way.
    for tie_break, want_parent in (("none", [[3.0, 3.0, 2.0]]), ("index", [[3.0, 1.0, 2.0]])):
        density, parent, score = density_peaks(features, 2, tie_break)
        torch.testing.assert_close(density, want_density)
        torch.testing.assert_close(parent, torch.tensor(want_parent, dtype=torch.float64))
        torch.testing.assert_close(score, density * parent)


@given(frame_features(), st.integers(1, 12), st.booleans())
def test_cluster_keeps_distinct_frames_in_time_order(case, num_kept, keep_centre):
    features, k = case
    frames = features.shape[1]
    num_kept = min(num_kept, frames)
    tokens = features[:, :, None, :].expand(-1, -1, 3, -1)  # [B, T, J=3, C]
    pruned = TokenPruningCluster(num_kept, k, keep_centre=keep_centre)(tokens)
    assert pruned.kept_idx.shape == (features.shape[0], num_kept)
    assert pruned.tokens.shape == (features.shape[0], num_kept, 3, features.shape[2])
    for row in pruned.kept_idx.tolist():
        assert row == sorted(set(row)) and all(0 <= i < frames for i in row)
        if keep_centre:
            assert (frames - 1) // 2 in row
    batch = torch.arange(features.shape[0])[:, None]
    torch.testing.assert_close(pruned.tokens, tokens[batch, pruned.kept_idx])


@given(frame_features(), st.integers(1, 12))
def test_cluster_keeps_the_best_scores(case, num_kept):
    features, k = case
    num_kept = min(num_kept, features.shape[1])
    index = TokenPruningCluster(num_kept, k).select(features)
    score = density_peaks(features, k).score
    for row_score, row_index in zip(score, index, strict=True):
        kept = set(row_index.tolist())
        dropped = [i for i in range(len(row_score)) if i not in kept]
        if dropped:
            assert row_score[row_index].min() >= row_score[dropped].max()


def repeated_segments(seed: int = 0) -> tuple[torch.Tensor, list[range]]:
    """``[1, 30, 4, 8]``: three segments of 10 frames, each a constant pose (different per
    segment) plus a little noise."""
    gen = torch.Generator().manual_seed(seed)
    segments = [range(0, 10), range(10, 22), range(22, 30)]
    poses = torch.randn(3, 4, 8, generator=gen) * 3
    frames = [poses[s] for s, seg in enumerate(segments) for _ in seg]
    tokens = torch.stack(frames)[None] + 0.01 * torch.randn(1, 30, 4, 8, generator=gen)
    return tokens, segments


@pytest.mark.parametrize("seed", range(5))
def test_cluster_picks_one_representative_per_repeated_segment(seed):
    tokens, segments = repeated_segments(seed)
    index = TokenPruningCluster(3).select(tokens)[0].tolist()
    assert [next(s for s, seg in enumerate(segments) if i in seg) for i in index] == [0, 1, 2]


def test_cluster_is_deterministic_and_ignores_joint_order():
    # values on a 1/8 grid: the joint mean is exact in any order, so a permutation of the
    # joints leaves the pooled features bitwise equal (with arbitrary floats the mean moves by
    # rounding, and noise-level density differences inside a segment may reorder)
    gen = torch.Generator().manual_seed(1)
    poses = torch.randint(-24, 25, (3, 4, 8), generator=gen)
    tokens = poses.repeat_interleave(10, dim=0) + torch.randint(-1, 2, (30, 4, 8), generator=gen)
    tokens = (tokens.float() / 8)[None]
    cluster = TokenPruningCluster(5)
    first = cluster(tokens).kept_idx
    for _ in range(3):
        assert torch.equal(cluster(tokens).kept_idx, first)
    for perm in ([2, 0, 3, 1], [3, 2, 1, 0]):
        assert torch.equal(cluster(tokens[:, :, torch.tensor(perm)]).kept_idx, first)
    assert [i // 10 for i in TokenPruningCluster(3)(tokens).kept_idx[0].tolist()] == [0, 1, 2]


@given(frame_features(), st.integers(2, 12))
def test_keep_centre_adds_the_best_other_frames(case, num_kept):
    features, k = case
    frames = features.shape[1]
    num_kept = min(num_kept, frames)
    centre = (frames - 1) // 2
    index = TokenPruningCluster(num_kept, k, keep_centre=True).select(features)
    score = density_peaks(features, k).score
    for row_score, row_index in zip(score, index, strict=True):
        others = [i for i in row_index.tolist() if i != centre]
        assert len(others) == num_kept - 1
        rest = [i for i in range(frames) if i != centre and i not in others]
        if others and rest:
            assert row_score[others].min() >= row_score[rest].max()


def test_cluster_scores_half_precision_in_float32():
    tokens, _ = repeated_segments(3)
    cluster = TokenPruningCluster(3)
    assert torch.equal(cluster.select(tokens.half()), cluster.select(tokens.half().float()))
    assert cluster(tokens.half()).tokens.dtype == torch.float16


def test_cluster_passes_gradient_to_kept_tokens_only():
    tokens, _ = repeated_segments(2)
    tokens.requires_grad_(True)
    pruned = TokenPruningCluster(4)(tokens)
    pruned.tokens.sum().backward()
    per_frame = tokens.grad.abs().sum(dim=(0, 2, 3))
    assert set(per_frame.nonzero().flatten().tolist()) == set(pruned.kept_idx[0].tolist())


def test_cluster_uses_a_given_index_and_edge_sizes():
    tokens = torch.randn(2, 5, 3, 4)
    index = torch.tensor([[0, 4], [1, 2]])
    pruned = TokenPruningCluster(2)(tokens, index)
    assert torch.equal(pruned.tokens, torch.stack([tokens[0, [0, 4]], tokens[1, [1, 2]]]))
    assert TokenPruningCluster(1)(torch.randn(2, 1, 4)).kept_idx.tolist() == [[0], [0]]
    assert TokenPruningCluster(5)(tokens).kept_idx.tolist() == [[0, 1, 2, 3, 4]] * 2
    assert TokenPruningCluster(1, keep_centre=True)(tokens).kept_idx.tolist() == [[2], [2]]
    empty = TokenPruningCluster(2)(torch.randn(0, 5, 4))
    assert empty.tokens.shape == (0, 2, 4) and empty.kept_idx.shape == (0, 2)


def test_cluster_bad_input():
    with pytest.raises(ValueError, match="num_kept"):
        TokenPruningCluster(0)
    with pytest.raises(TypeError, match="keep_centre"):
        TokenPruningCluster(2, keep_centre=1)
    with pytest.raises(ValueError, match="num_kept=6"):
        TokenPruningCluster(6)(torch.randn(1, 5, 4))
    with pytest.raises(ValueError, match=r"tokens must be \[B, T, \.\.\., D\]"):
        TokenPruningCluster(2)(torch.randn(5, 4))
    with pytest.raises(TypeError, match="tokens"):
        TokenPruningCluster(2)(torch.ones(1, 5, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="kept_idx must lie in"):
        TokenPruningCluster(2)(torch.randn(1, 5, 4), torch.tensor([[0, 5]]))
    with pytest.raises(ValueError, match="kept_idx must be"):
        TokenPruningCluster(2)(torch.randn(1, 5, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"kept_idx must be \[B, num_kept\] = \[1, 2\]"):
        TokenPruningCluster(2)(torch.randn(1, 5, 4), torch.tensor([[0, 1, 2]]))
    kept = TokenPruningCluster(2)(torch.randn(1, 5, 4), torch.tensor([[0, 3]], dtype=torch.int32))
    assert kept.kept_idx.dtype == torch.int64
    with pytest.raises(ValueError, match="tie_break"):
        TokenPruningCluster(2, tie_break="random")
    with pytest.raises(ValueError, match="k must be"):
        density_peaks(torch.randn(1, 3, 2), k=4)


def test_pool_frames_averages_the_middle_axes():
    tokens = torch.randn(2, 3, 4, 5, 6)
    torch.testing.assert_close(pool_frames(tokens), tokens.mean(dim=(2, 3)))
    flat = torch.randn(2, 3, 6)
    assert pool_frames(flat) is flat


# -- recovery -----------------------------------------------------------------------------------
