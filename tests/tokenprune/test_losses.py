"""The distillation losses of a pruned student against their formulas (the SimCC losses are
tested with their codec, tests/models/common/test_simcc.py)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenprune.losses import kept_attention_distillation_loss, token_feature_distillation_loss


def _kept_attention_kl_by_hand(student, teacher, kept):
    """Loops over b, h, q: restrict the teacher's probabilities to the kept columns, renormalise,
    and take KL against the student's softmax."""
    total, rows = 0.0, 0
    batch, heads, queries, _ = student.shape
    for b in range(batch):
        for h in range(heads):
            for q in range(queries):
                p_teacher = torch.softmax(teacher[b, h, q].double(), 0)[kept[b]]
                p_teacher = p_teacher / p_teacher.sum()
                p_student = torch.softmax(student[b, h, q].double(), 0)
                total += sum(
                    float(t * (math.log(t) - math.log(s)))
                    for t, s in zip(p_teacher, p_student, strict=True)
                    if t > 0
                )
                rows += 1
    return total / rows


def test_kept_attention_distillation_by_hand():
    student = torch.tensor([[[[0.0, 1.0, -1.0]]]])  # B = H = Q = 1, n = 3
    teacher = torch.tensor([[[[2.0, 0.5, 0.0, -3.0, 1.0]]]])  # N = 5
    kept = torch.tensor([[4, 0, 2]])
    # teacher restricted to columns 4, 0, 2 and renormalised: softmax([1, 2, 0])
    p_t = torch.softmax(torch.tensor([1.0, 2.0, 0.0]), 0)
    p_s = torch.softmax(student[0, 0, 0], 0)
    expected = float((p_t * (p_t.log() - p_s.log())).sum())
    loss = kept_attention_distillation_loss(student, teacher, kept)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # a student that reproduces the restricted teacher costs nothing
    assert kept_attention_distillation_loss(teacher[..., [4, 0, 2]], teacher, kept).item() < 1e-7


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 3), heads=st.integers(1, 3), queries=st.integers(1, 4),
    total=st.integers(1, 9), data=st.data(),
)  # fmt: skip
def test_kept_attention_distillation_matches_loops(batch, heads, queries, total, data):
    num_kept = data.draw(st.integers(1, total))
    seed = data.draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    student = torch.randn(batch, heads, queries, num_kept, generator=gen) * 3
    teacher = torch.randn(batch, heads, queries, total, generator=gen) * 3
    kept = torch.stack([torch.randperm(total, generator=gen)[:num_kept] for _ in range(batch)])
    student.requires_grad_(True)
    loss = kept_attention_distillation_loss(student, teacher, kept)
    expected = _kept_attention_kl_by_hand(student.detach(), teacher, kept)
    assert loss.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    loss.backward()
    assert torch.isfinite(student.grad).all()
    if num_kept == 1:  # both distributions are one-hot
        assert loss.item() == 0.0


def test_kept_attention_distillation_edges_and_errors():
    empty = kept_attention_distillation_loss(
        torch.zeros(0, 2, 3, 4), torch.zeros(0, 2, 3, 6), torch.zeros(0, 4, dtype=torch.long)
    )
    assert empty.item() == 0.0
    student, teacher = torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 6)
    with pytest.raises(ValueError, match="kept must index"):
        kept_attention_distillation_loss(student, teacher, torch.tensor([[0, 1, 2, 6]]))
    with pytest.raises(ValueError, match="kept must have shape"):
        kept_attention_distillation_loss(student, teacher, torch.tensor([[0, 1, 2]]))
    with pytest.raises(TypeError, match="kept must be an int64 or int32"):
        kept_attention_distillation_loss(student, teacher, torch.zeros(1, 4))
    with pytest.raises(ValueError, match="teacher_logits must be"):
        kept_attention_distillation_loss(student, teacher[:, :1], torch.tensor([[0, 1, 2, 3]]))


def test_token_feature_distillation_by_hand():
    student = [torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]), torch.zeros(1, 2, 2)]
    teacher = [torch.tensor([[[0.0, 0.0], [1.0, 1.0]]]), torch.ones(1, 2, 2)]
    # layer 1: token distances 1 and 2 -> mean 1.5; layer 2: 2 and 2 -> 2; average 1.75
    assert token_feature_distillation_loss(student, teacher).item() == pytest.approx(1.75)
    with pytest.raises(ValueError, match="one \\[B, J, D\\] tensor per layer"):
        token_feature_distillation_loss(student, teacher[:1])
    with pytest.raises(ValueError, match="layer 1: student tokens"):
        token_feature_distillation_loss(student, [teacher[0], torch.ones(1, 3, 2)])
