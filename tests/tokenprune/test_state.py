"""TokenState and GroupTokenPruner.prune: every aligned tensor follows one selection."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.oracles.cases import prune_cases
from tokenprune import GroupTokenPruner, TokenState


def _reference_prune(pruner, state, scores, num_protected):
    """The step written out by hand: prune the tokens, then the side tensors one by one."""
    step = pruner(state.tokens, scores, num_shared=state.num_shared,
                  num_protected=num_protected, key_mask=state.key_mask)  # fmt: skip
    batch = torch.arange(state.ids.shape[0])[:, None, None]
    group = torch.arange(state.ids.shape[1])[None, :, None]
    pos = state.pos.expand(*state.ids.shape, -1)[batch, group, step.kept_idx]
    ids = state.ids[batch, group, step.kept_idx]
    return step, pos, ids


@given(prune_cases(), st.booleans())
def test_prune_equals_the_step_written_by_hand(case, positions_per_batch):
    pruner, x, scores, num_shared, num_protected, key_mask = case
    batch, groups, tokens, dim = x.shape
    num_private = tokens - num_shared
    pos = torch.randn(batch if positions_per_batch else 1, 1, num_private, dim)
    ids = torch.randperm(max(num_private, 1))[:num_private].expand(batch, groups, -1)
    state = TokenState(x, num_shared, pos, ids, key_mask)

    pruned = pruner.prune(state, scores, num_protected=num_protected)
    step, want_pos, want_ids = _reference_prune(pruner, state, scores, num_protected)
    assert torch.equal(pruned.tokens, step.tokens)
    assert pruned.num_shared == num_shared
    assert torch.equal(pruned.pos, want_pos)
    assert torch.equal(pruned.ids, want_ids)
    if key_mask is None:
        assert pruned.key_mask is None
    else:
        assert torch.equal(pruned.key_mask, step.key_mask)
    # positions still describe the private slots of the pruned tokens
    assert pruned.pos.shape[-2] == pruned.num_private == pruned.tokens.shape[2] - num_shared


@given(prune_cases())
def test_positioned_adds_positions_to_the_private_slots_only(case):
    _, x, _, num_shared, _, _ = case
    pos = torch.randn(1, x.shape[1], x.shape[2] - num_shared, x.shape[3])
    out = TokenState(x, num_shared, pos).positioned()
    assert torch.equal(out[:, :, :num_shared], x[:, :, :num_shared])
    assert torch.equal(out[:, :, num_shared:], x[:, :, num_shared:] + pos)
    assert TokenState(x, num_shared).positioned() is x


def test_ungrouped_state_and_state_without_side_tensors():
    x = torch.randn(2, 1 + 6, 4)
    scores = torch.arange(12.0).reshape(2, 6)
    pruned = GroupTokenPruner(0.5).prune(TokenState(x, 1), scores)
    assert pruned.tokens.shape == (2, 1 + 3, 4)
    assert pruned.pos is None and pruned.ids is None and pruned.key_mask is None
    ids = torch.arange(6).expand(2, -1)
    kept = GroupTokenPruner(0.5).prune(TokenState(x, 1, ids=ids), scores)
    assert kept.ids.tolist() == [[3, 4, 5]] * 2
    assert torch.equal(kept.tokens[:, 1:], x[:, 4:])


def test_fused_token_has_fused_position_and_no_id():
    x = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [4.0, 0.0]]])
    scores = torch.tensor([[0.1, 0.4, 0.3, 0.2]])
    pos = torch.arange(4.0).reshape(1, 4, 1).repeat(1, 1, 2)
    state = TokenState(x, 1, pos=pos, ids=torch.tensor([[10, 11, 12, 13]]))
    pruned = GroupTokenPruner(0.5, fuse_pruned=True).prune(state, scores)
    assert pruned.ids.tolist() == [[11, 12, -1]]
    torch.testing.assert_close(pruned.pos[0, :, 0], torch.tensor([1.0, 2.0, 0.1 * 0 + 0.2 * 3]))
    assert pruned.key_mask.tolist() == [[True] * 4]


@pytest.mark.parametrize("num_private", [0, 1, 5])
def test_edge_sizes(num_private):
    x = torch.randn(1, 2, 3 + num_private, 4)
    ids = torch.arange(num_private).expand(1, 2, -1)
    state = TokenState(x, 3, pos=torch.zeros(1, 1, num_private, 4), ids=ids)
    pruned = GroupTokenPruner(1.0).prune(state, torch.zeros(1, 2, num_private))
    assert torch.equal(pruned.tokens, x) and torch.equal(pruned.ids, ids)


def test_with_tokens_keeps_the_private_slots():
    state = TokenState(torch.randn(2, 1 + 5, 4), 1, ids=torch.arange(5).expand(2, -1))
    grown = state.with_tokens(torch.randn(2, 17 + 5, 4), num_shared=17)
    assert grown.num_shared == 17 and grown.num_private == 5 and grown.ids is state.ids
    with pytest.raises(ValueError, match="must keep the 5 private slots"):
        state.with_tokens(torch.randn(2, 4, 4))
    masked = TokenState(torch.randn(2, 6, 4), 1, key_mask=torch.ones(2, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="key mask"):
        masked.with_tokens(torch.randn(2, 7, 4), num_shared=2)


def test_prune_rejects_a_foreign_state():
    with pytest.raises(TypeError, match="state must be a TokenState"):
        GroupTokenPruner(0.5).prune(torch.randn(1, 4, 2), torch.zeros(1, 4))



def test_state_checks_the_tensors_aligned_with_its_tokens():
    x = torch.randn(1, 5, 2)
    with pytest.raises(ValueError, match=r"pos must cover the 4 private slots"):
        TokenState(x, 1, pos=torch.zeros(1, 5, 2))  # all slots: ambiguous, refused
    with pytest.raises(ValueError, match=r"ids must have shape \(1, 4\)"):
        TokenState(x, 1, ids=torch.arange(5)[None])
    with pytest.raises(TypeError, match="ids must be an int64 or int32"):
        TokenState(x, 1, ids=torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"num_shared must be <= 5"):
        TokenState(x, 6)
    with pytest.raises(ValueError, match="key_mask must have shape"):
        TokenState(x, 1, key_mask=torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="tokens must be a floating-point"):
        TokenState(torch.zeros(1, 5, 2, dtype=torch.long))
