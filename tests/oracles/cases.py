"""Hypothesis strategies shared by tests of several modules."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

from tokenprune import GroupTokenPruner


@st.composite
def prune_cases(draw):
    """A pruner and a random pruning step for it: ``(pruner, x [B, G, N, 3], scores
    [B, G, N - S] with frequent ties, num_shared, num_protected, key_mask or None)``, edge
    sizes included (N = 0, S = N, k = 0)."""
    batch = draw(st.integers(1, 2))
    groups = draw(st.integers(1, 3))
    tokens = draw(st.integers(0, 10))
    num_shared = draw(st.integers(0, tokens))
    num_private = tokens - num_shared
    rate = draw(st.floats(0.05, 1.0))
    budget = draw(st.sampled_from(["current", "original"]))
    num_original = draw(st.integers(max(num_private, 1), 2 * max(num_private, 1)))
    pruner = GroupTokenPruner(rate, budget=budget, num_original=num_original)
    k = pruner.num_kept(num_private)
    num_protected = draw(st.integers(0, k))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, groups, tokens, 3, generator=gen)
    # few distinct values, so ties are common
    scores = torch.randint(0, 4, (batch, groups, num_private), generator=gen).float()
    key_mask = None
    if draw(st.booleans()):
        key_mask = torch.rand(batch, groups, tokens, generator=gen) < 0.8
    return pruner, x, scores, num_shared, num_protected, key_mask
