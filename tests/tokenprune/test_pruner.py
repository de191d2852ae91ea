"""GroupTokenPruner and keep budgets."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given

from tests.oracles.cases import prune_cases
from tokenprune import GroupTokenPruner, keep_count


def test_keep_count_matches_published_token_flows():
    # PPT: ceil and compounding, 256 -> 180 -> 126 -> 89 at ratio 0.7
    counts = [256]
    for _ in range(3):
        counts.append(keep_count(0.7, counts[-1], budget="current"))
    assert counts == [256, 180, 126, 89]
    # GTPT COCO: int() of the original 256 at [0.7, 0.3, 0.1]
    assert [keep_count(r, 256, budget="original", num_original=256) for r in (0.7, 0.3, 0.1)] == [
        179, 76, 25
    ]
    assert keep_count(0.3, 179, budget="original", num_original=256) == 76
    # GTPT WholeBody private budgets (dense + visual) at [0.5, 0.3]
    assert keep_count(0.5, 256, budget="original", num_original=256) == 128
    # a fraction of the original never exceeds what is present
    assert keep_count(0.7, 100, budget="original", num_original=256) == 100


@pytest.mark.parametrize("rate", [0.0, -0.1, 1.01, float("nan")])
def test_keep_rate_outside_unit_interval_raises(rate):
    with pytest.raises(ValueError, match="keep_rate must be in"):
        keep_count(rate, 10)
    with pytest.raises(ValueError, match="keep_rate must be in"):
        GroupTokenPruner(rate)
    pruner = GroupTokenPruner(0.5)
    with pytest.raises(ValueError, match="keep_rate must be in"):
        pruner.keep_rate = rate


def test_budget_arguments_are_checked():
    with pytest.raises(ValueError, match="num_original is required"):
        GroupTokenPruner(0.5, budget="original")
    with pytest.raises(ValueError, match="budget must be"):
        GroupTokenPruner(0.5, budget="half")
    with pytest.raises(TypeError, match="keep_rate must be a float"):
        GroupTokenPruner("0.5")


@given(prune_cases())
def test_pruner_invariants(case):
    pruner, x, scores, num_shared, num_protected, key_mask = case
    batch, groups, tokens, _ = x.shape
    num_private = tokens - num_shared
    k = pruner.num_kept(num_private)
    result = pruner(
        x, scores, num_shared=num_shared, num_protected=num_protected, key_mask=key_mask
    )
    # counts follow the documented budget formulas
    if pruner.budget == "current":
        assert k == math.ceil(num_private * pruner.keep_rate)
    else:
        assert k == min(int(pruner.num_original * pruner.keep_rate), num_private)
    assert result.tokens.shape == (batch, groups, num_shared + k, 3)
    assert result.kept_idx.shape == (batch, groups, k)
    # shared tokens pass through unchanged
    assert torch.equal(result.tokens[:, :, :num_shared], x[:, :, :num_shared])
    valid = torch.ones(batch, groups, tokens, dtype=torch.bool) if key_mask is None else key_mask
    for b in range(batch):
        for g in range(groups):
            kept = result.kept_idx[b, g].tolist()
            assert kept == sorted(set(kept)), "ascending, unique"
            private = x[b, g, num_shared:]
            assert torch.equal(result.tokens[b, g, num_shared:], private[kept])
            private_valid = valid[b, g, num_shared:]
            protected = [i for i in range(num_protected) if private_valid[i]]
            assert set(protected) <= set(kept), "real protected tokens are always kept"
            candidates = [i for i in range(num_protected, num_private) if private_valid[i]]
            kept_c = [i for i in kept if i in candidates]
            dropped_c = [i for i in candidates if i not in kept]
            if kept_c and dropped_c:
                assert min(scores[b, g, kept_c]) >= max(scores[b, g, dropped_c])
            # padding is kept only when there are not enough real tokens
            padding_kept = [i for i in kept if not private_valid[i]]
            if padding_kept:
                assert len(protected) + len(candidates) < k
    if key_mask is not None:
        expected_mask = torch.cat(
            [key_mask[:, :, :num_shared],
             torch.gather(key_mask[:, :, num_shared:], 2, result.kept_idx)], dim=2)
        assert torch.equal(result.key_mask, expected_mask)
    else:
        assert result.key_mask is None


@given(prune_cases())
def test_side_tensors_stay_aligned(case):
    pruner, _, scores, num_shared, num_protected, key_mask = case
    batch, groups, num_private = scores.shape
    tokens = num_shared + num_private
    # tokens are a function of an aligned side tensor (a positional table shared by the batch)
    pos = torch.randn(1, groups, tokens, 3)
    x = 2 * pos.expand(batch, -1, -1, -1) + 1
    result = pruner(x, scores, num_shared=num_shared, num_protected=num_protected,
                    key_mask=key_mask)
    torch.testing.assert_close(result.tokens, 2 * result.apply(pos) + 1)
    # an index map follows the same selection
    index_map = torch.arange(tokens).expand(batch, groups, tokens)
    mapped = result.apply(index_map)
    assert torch.equal(mapped[:, :, num_shared:], result.kept_idx + num_shared)
    # a table of the private slots only gives the kept private entries
    private_pos = pos[:, :, num_shared:]
    torch.testing.assert_close(result.apply(private_pos), result.apply(pos)[:, :, num_shared:])


def test_ungrouped_input_is_one_group():
    torch.manual_seed(0)
    x = torch.randn(2, 9, 4)
    scores = torch.randn(2, 7)
    pruner = GroupTokenPruner(0.5)
    flat = pruner(x, scores, num_shared=2)
    grouped = pruner(x.unsqueeze(1), scores.unsqueeze(1), num_shared=2)
    assert torch.equal(flat.tokens, grouped.tokens.squeeze(1))
    assert torch.equal(flat.kept_idx, grouped.kept_idx.squeeze(1))
    assert flat.tokens.shape == (2, 2 + 4, 4)
    pos = torch.randn(1, 9, 4)
    assert torch.equal(flat.apply(pos), grouped.apply(pos.unsqueeze(1)).squeeze(1))


def test_keeps_the_highest_scores_in_original_order():
    x = torch.arange(6.0).reshape(1, 1, 6, 1)  # token value = slot
    scores = torch.tensor([[[0.1, 0.9, 0.5, 0.8, 0.2]]])  # private slots 1..5
    result = GroupTokenPruner(0.6)(x, scores, num_shared=1)  # ceil(5 * 0.6) = 3
    assert result.kept_idx.tolist() == [[[1, 2, 3]]]
    assert result.tokens.flatten().tolist() == [0.0, 2.0, 3.0, 4.0]


def test_protected_tokens_count_toward_the_budget():
    # GTPT WholeBody after layer 10: 76 private kept, of which the 68 dense face tokens
    # are protected, leaving 8 visual tokens
    x = torch.randn(1, 1, 6 + 128, 2)
    scores = torch.randn(1, 1, 128)
    pruner = GroupTokenPruner(0.3, budget="original", num_original=256)
    result = pruner(x, scores, num_shared=6, num_protected=68)
    kept = result.kept_idx[0, 0]
    assert kept.numel() == 76
    assert kept[:68].tolist() == list(range(68))
    visual_scores = scores[0, 0, 68:]
    assert set((kept[68:] - 68).tolist()) == set(visual_scores.topk(8).indices.tolist())


def test_too_many_protected_tokens_raise():
    pruner = GroupTokenPruner(0.25)
    with pytest.raises(ValueError, match=r"num_protected \(5\) exceeds"):
        pruner(torch.randn(1, 1, 10, 2), torch.randn(1, 1, 10), num_protected=5)


def test_zero_budget_keeps_only_shared_tokens():
    pruner = GroupTokenPruner(0.01, budget="original", num_original=50)
    result = pruner(torch.randn(2, 3, 10, 4), torch.randn(2, 3, 8), num_shared=2)
    assert result.tokens.shape == (2, 3, 2, 4) and result.kept_idx.shape == (2, 3, 0)


def test_fusion_appends_weighted_sum_of_pruned_tokens():
    x = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [4.0, 0.0]]])
    scores = torch.tensor([[0.1, 0.4, 0.3, 0.2]])  # private slots 1..4 (slot 0 is shared)
    result = GroupTokenPruner(0.5, fuse_pruned=True)(x, scores, num_shared=1)
    # kept: private 1 (0.4) and 2 (0.3); pruned: private 0 (0.1) and 3 (0.2)
    assert result.kept_idx.tolist() == [[1, 2]]
    fused = 0.1 * x[0, 1] + 0.2 * x[0, 4]
    torch.testing.assert_close(result.tokens[0, -1], fused)
    assert result.tokens.shape == (1, 1 + 2 + 1, 2)
    assert result.key_mask.tolist() == [[True, True, True, True]]
    # side tensors are fused with the same weights
    pos = torch.arange(5.0).reshape(1, 5, 1)
    torch.testing.assert_close(result.apply(pos)[0, -1], torch.tensor([0.1 * 1 + 0.2 * 4]))
    with pytest.raises(ValueError, match="cannot fuse a non-floating"):
        result.apply(torch.arange(5).reshape(1, 5))
    with pytest.raises(ValueError, match=r"side must have 5 \(all\) or 4 \(private\)"):
        result.apply(torch.zeros(1, 3, 1))


def test_fusion_rejects_logit_scores():
    pruner = GroupTokenPruner(0.5, fuse_pruned=True)
    with pytest.raises(ValueError, match="non-negative"):
        pruner(torch.randn(1, 4, 2), torch.tensor([[0.3, -1.0, 0.2, 0.1]]))


def test_bad_inputs_name_the_argument():
    pruner = GroupTokenPruner(0.5)
    x = torch.randn(2, 3, 8, 4)
    with pytest.raises(ValueError, match=r"scores must have shape \(2, 3, 6\)"):
        pruner(x, torch.randn(2, 3, 8), num_shared=2)
    with pytest.raises(ValueError, match="scores must have 3 dimensions"):
        pruner(x, torch.randn(2, 6), num_shared=2)
    with pytest.raises(ValueError, match="x must have 3 or 4 dimensions"):
        pruner(torch.randn(8, 4), torch.randn(8))
    with pytest.raises(ValueError, match="num_shared must be <= 8"):
        pruner(x, torch.randn(2, 3, 6), num_shared=9)
    with pytest.raises(ValueError, match="NaN"):
        pruner(x, torch.full((2, 3, 6), float("nan")), num_shared=2)
    with pytest.raises(TypeError, match="key_mask must be a bool tensor"):
        pruner(x, torch.randn(2, 3, 6), num_shared=2, key_mask=torch.ones(2, 3, 8))
    with pytest.raises(ValueError, match="same device"):
        pruner(x, torch.randn(2, 3, 6, device="meta"), num_shared=2)


def test_per_group_protected_counts():
    # WholeBody's fine stage: 68 / 42 / 6 protected dense tokens, 76 kept per group
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6 + 128, 4)
    scores = torch.randn(2, 3, 128)
    pruner = GroupTokenPruner(0.3, budget="original", num_original=256)
    result = pruner(x, scores, num_shared=6, num_protected=[68, 42, 6])
    for g, dense in enumerate((68, 42, 6)):
        kept = result.kept_idx[:, g]
        assert kept.shape == (2, 76)
        assert (kept[:, :dense] == torch.arange(dense)).all()
        for b in range(2):
            visual = set((kept[b, dense:] - dense).tolist())
            assert visual == set(scores[b, g, dense:].topk(76 - dense).indices.tolist())
    with pytest.raises(ValueError, match="one count per group"):
        pruner(x, scores, num_shared=6, num_protected=[68, 42])
    with pytest.raises(ValueError, match=r"num_protected \(100\) exceeds"):
        pruner(x, scores, num_shared=6, num_protected=[100, 0, 0])


def test_keep_rate_override_per_call():
    pruner = GroupTokenPruner(0.5)
    x, scores = torch.randn(1, 11, 2), torch.randn(1, 10)
    assert pruner(x, scores, num_shared=1).kept_idx.shape == (1, 5)
    assert pruner(x, scores, num_shared=1, keep_rate=1.0).kept_idx.shape == (1, 10)
    assert pruner.keep_rate == 0.5  # the module's own rate is untouched
    with pytest.raises(ValueError, match="keep_rate must be in"):
        pruner(x, scores, num_shared=1, keep_rate=0.0)


def test_apply_rejects_side_tensors_with_wrong_leading_axes():
    result = GroupTokenPruner(0.5)(torch.randn(2, 10, 4), torch.randn(2, 8), num_shared=2)
    with pytest.raises(ValueError, match="side must be"):
        result.apply(torch.randn(10, 8))  # a table without batch axis, 8 == N - S by chance
    with pytest.raises(ValueError, match="side must be"):
        result.apply(torch.randn(3, 10, 4))


@pytest.mark.parametrize("rate", [1.0, 0.01])  # k == N - S and k == 0 skip the top-k
def test_nan_scores_raise_on_every_path(rate):
    pruner = GroupTokenPruner(rate, budget="original", num_original=8)
    with pytest.raises(ValueError, match="NaN"):
        pruner(torch.randn(1, 10, 4), torch.full((1, 8), float("nan")), num_shared=2)
