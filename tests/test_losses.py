"""KL losses and GTPT's Global Perceived loss against their formulas."""

from __future__ import annotations

import math

import pytest
import torch

from tokenprune import bin_kl_divergence, global_perceived_loss, keypoint_kl_loss


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
