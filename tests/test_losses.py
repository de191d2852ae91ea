"""KL losses and GTPT's Global Perceived loss against their formulas."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenprune import (
    bin_kl_divergence,
    global_perceived_loss,
    kept_attention_distillation_loss,
    keypoint_kl_loss,
    token_feature_distillation_loss,
)


def _kl_by_hand(logits, target):
    """mean over bins of target * (log target - log softmax(logits)), 0 log 0 = 0."""
    log_z = math.log(sum(math.exp(v) for v in logits))
    terms = [
        (t * (math.log(t) - (v - log_z)) if t > 0 else 0.0)
        for v, t in zip(logits, target, strict=True)
    ]
    return sum(terms) / len(terms)


def test_bin_kl_by_hand():
    logits = torch.tensor([[0.5, -1.0, 2.0, 0.0]])
    target = torch.tensor([[0.1, 0.0, 0.7, 0.2]])
    expected = _kl_by_hand(logits[0].tolist(), target[0].tolist())
    assert bin_kl_divergence(logits, target).item() == pytest.approx(expected, rel=1e-6)
    # a target equal to the prediction costs nothing
    probs = torch.softmax(logits, dim=-1)
    assert bin_kl_divergence(logits, probs).abs().item() < 1e-7


def test_keypoint_kl_loss_weights_and_averages():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 3, 5, generator=gen), torch.randn(2, 3, 4, generator=gen)
    tx, ty = torch.rand(2, 3, 5, generator=gen), torch.rand(2, 3, 4, generator=gen)
    weight = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.5]])
    expected = 0.0
    for k in range(3):
        per_batch = [
            weight[b, k].item()
            * (_kl_by_hand(x[b, k].tolist(), tx[b, k].tolist())
               + _kl_by_hand(y[b, k].tolist(), ty[b, k].tolist()))
            for b in range(2)
        ]  # fmt: skip
        expected += sum(per_batch) / 2
    expected /= 3
    got = keypoint_kl_loss((x, y), (tx, ty), weight)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_global_perceived_loss_is_three_terms_with_a_detached_teacher():
    gen = torch.Generator().manual_seed(1)
    pruned = [torch.randn(2, 4, 6, generator=gen, requires_grad=True) for _ in range(2)]
    entire = [torch.randn(2, 4, 6, generator=gen, requires_grad=True) for _ in range(2)]
    targets = [torch.rand(2, 4, 6, generator=gen) for _ in range(2)]
    weight = torch.ones(2, 4)
    loss = global_perceived_loss(pruned, entire, targets, weight)
    teacher = [torch.softmax(z.detach(), dim=-1) for z in entire]
    expected = (
        keypoint_kl_loss(entire, targets, weight)
        + keypoint_kl_loss(pruned, targets, weight)
        + keypoint_kl_loss(pruned, teacher, weight)
    )
    torch.testing.assert_close(loss, expected)
    # the entire pass gets gradients only from its own fit to the targets
    loss.backward()
    own = [z.detach().clone().requires_grad_(True) for z in entire]
    keypoint_kl_loss(own, targets, weight).backward()
    for z, reference in zip(entire, own, strict=True):
        torch.testing.assert_close(z.grad, reference.grad)


def test_loss_shape_errors():
    with pytest.raises(ValueError, match="one shape"):
        bin_kl_divergence(torch.randn(2, 5), torch.rand(2, 4))
    with pytest.raises(ValueError, match="weight must have shape"):
        keypoint_kl_loss([torch.randn(2, 3, 4)], [torch.rand(2, 3, 4)], torch.ones(3))


def test_global_perceived_loss_against_torch_kl_div():
    # the formula written out with torch's KLDivLoss, as GTPT's training code states it
    gen = torch.Generator().manual_seed(2)
    b, k = 3, 5
    pruned = [torch.randn(b, k, 8, generator=gen), torch.randn(b, k, 6, generator=gen)]
    entire = [torch.randn(b, k, 8, generator=gen), torch.randn(b, k, 6, generator=gen)]
    targets = [torch.rand(b, k, 8, generator=gen), torch.rand(b, k, 6, generator=gen)]
    weight = torch.rand(b, k, generator=gen)

    def kl(logits, target):  # per [b, k]: KLDivLoss(reduction='none') averaged over bins
        return torch.nn.functional.kl_div(
            torch.log_softmax(logits, -1), target, reduction="none"
        ).mean(-1)

    expected = 0.0
    for j in range(k):
        for zp, ze, y in zip(pruned, entire, targets, strict=True):
            teacher = torch.softmax(ze, -1)
            terms = kl(ze, y) + kl(zp, y) + kl(zp, teacher)
            expected += (terms[:, j] * weight[:, j]).mean()
    expected /= k
    got = global_perceived_loss(pruned, entire, targets, weight)
    torch.testing.assert_close(got, expected)


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
