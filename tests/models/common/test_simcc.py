"""The SimCC codec (targets, decoding, flip testing, losses) and its KL losses on constructed
inputs and against their formulas."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenprune_models.common.keypoints import (
    COCO_FLIP_PAIRS,
    WHOLEBODY_FLIP_PAIRS,
    flip_permutation,
)
from tokenprune_models.common.simcc import (
    SimCCCodec,
    bin_kl_divergence,
    global_perceived_loss,
    keypoint_kl_loss,
)

NAN, INF = float("nan"), float("inf")
CODEC = SimCCCodec((256, 192))  # the published 256x192 input, split ratio 2, sigma 4


def test_the_published_parameters_are_the_defaults():
    assert (CODEC.split_ratio, CODEC.sigma) == (2.0, 4.0)
    assert (CODEC.bins_x, CODEC.bins_y) == (384, 512)
    assert SimCCCodec([64, 48], split_ratio=3.0).image_size == (64, 48)  # a YAML list
    assert (SimCCCodec((64, 48), split_ratio=3.0).bins_x, SimCCCodec((64, 48), 3.0).bins_y) == (
        144, 192)  # fmt: skip


def test_targets_are_gaussians_centred_at_split_coordinates():
    keypoints = torch.tensor([[[10.0, 20.0], [-5.0, 3.0], [50.0, 299.0], [-14.0, 5.0]]])
    visible = torch.tensor([[2, 2, 0, 2]])
    targets = CODEC.encode(keypoints, visible)
    tx, ty, weight = targets["target_x"], targets["target_y"], targets["target_weight"]
    assert list(targets) == ["target_x", "target_y", "target_weight"]
    assert tx.shape == (1, 4, 384) and ty.shape == (1, 4, 512)
    assert tx[0, 0].argmax().item() == 20 and ty[0, 0].argmax().item() == 40
    peak = 1 / (4.0 * math.sqrt(2 * math.pi))
    assert tx[0, 0, 20].item() == pytest.approx(peak)
    assert tx[0, 0, 24].item() == pytest.approx(peak * math.exp(-0.5))  # one sigma away
    # SimCC keeps a keypoint just outside the input (its 3-sigma window overlaps the input),
    # drops one whose whole window is outside, and unlabelled ones
    assert weight.tolist() == [[1.0, 1.0, 0.0, 0.0]]


def test_decode_on_constructed_logits():
    x = torch.full((1, 2, 384), -10.0)
    y = torch.full((1, 2, 512), -10.0)
    x[0, 0, 101], y[0, 0, 40] = 10.0, 10.0
    x[0, 1, 7], y[0, 1, 500] = 2.0, 8.0
    coords, scores = CODEC.decode((x, y))
    assert coords.tolist() == [[[50.5, 20.0], [3.5, 250.0]]]
    px = torch.softmax(x[0, 1], 0).max()
    py = torch.softmax(y[0, 1], 0).max()
    assert scores[0, 1].item() == pytest.approx(min(px, py).item())


@settings(max_examples=60, deadline=None)
@given(
    x=st.floats(0, 47), y=st.floats(0, 63), split_ratio=st.sampled_from([1.0, 2.0, 3.0]),
    sigma=st.sampled_from([1.0, 2.0, 4.0, 6.0]),
)  # fmt: skip
def test_decoding_targets_returns_the_keypoint_to_half_a_bin(x, y, split_ratio, sigma):
    codec = SimCCCodec((64, 48), split_ratio, sigma)
    point = torch.tensor([[[x, y]]])  # float32: compare against its rounded values
    targets = codec.encode(point, torch.ones(1, 1))
    assert targets["target_weight"].item() == 1.0  # inside the input
    # the Gaussian peaks on the bin nearest to coordinate * split_ratio, so decoding (softmax
    # keeps the order) recovers the keypoint to half a bin
    coords, scores = codec.decode((targets["target_x"], targets["target_y"]))
    error = (coords[0, 0] - point[0, 0]).abs().max().item()
    assert error <= 0.5 / split_ratio + 1e-5
    assert 0 < scores.item() < 1
    bins = coords[0, 0] * split_ratio  # whole bins
    assert (bins - bins.round()).abs().max().item() < 1e-4


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), wholebody=st.booleans())
def test_flip_back_is_an_involution(seed, wholebody):
    pairs, count = (WHOLEBODY_FLIP_PAIRS, 133) if wholebody else (COCO_FLIP_PAIRS, 17)
    gen = torch.Generator().manual_seed(seed)
    codec = SimCCCodec((8, 6))
    logits = torch.randn(2, count, 12, generator=gen), torch.randn(2, count, 16, generator=gen)
    back = codec.flip_back(codec.flip_back(logits, pairs), pairs)
    assert all(torch.equal(a, b) for a, b in zip(back, logits, strict=True))


def test_flip_pairs():
    assert flip_permutation(17, COCO_FLIP_PAIRS)[:7] == [0, 2, 1, 4, 3, 6, 5]
    perm = flip_permutation(133, WHOLEBODY_FLIP_PAIRS)
    assert sorted(perm) == list(range(133))  # a permutation
    assert all(perm[perm[i]] == i for i in range(133))  # an involution
    assert perm[17] == 20 and perm[23] == 39 and perm[23 + 30] == 23 + 30  # toe, jaw, nose
    assert perm[91] == 112 and perm[132] == 111  # hands
    with pytest.raises(ValueError, match=r"flip pair \(17, 20\) is out of range for 17"):
        flip_permutation(17, WHOLEBODY_FLIP_PAIRS)


def test_flip_back_reverses_x_and_swaps_sides():
    x = torch.arange(3 * 4.0).reshape(1, 3, 4)
    y = torch.arange(3 * 2.0).reshape(1, 3, 2)
    fx, fy = SimCCCodec((1, 2)).flip_back((x, y), [(1, 2)])  # 4 x bins, 2 y bins
    assert fx[0].tolist() == [[3.0, 2.0, 1.0, 0.0], [11.0, 10.0, 9.0, 8.0], [7.0, 6.0, 5.0, 4.0]]
    assert fy[0].tolist() == [[0.0, 1.0], [4.0, 5.0], [2.0, 3.0]]


def test_flip_test_recovers_logits_of_a_flip_equivariant_model():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 17, 384, generator=gen)
    y = torch.randn(2, 17, 512, generator=gen)
    perm = flip_permutation(17, COCO_FLIP_PAIRS)
    # what an ideal model outputs for the mirrored image: sides swapped, x mirrored, and the
    # one-bin misalignment that flip testing shifts back
    x_mirror = torch.cat([x[..., :1], x[..., :-1]], dim=-1).flip(-1)[:, perm]
    y_mirror = y[:, perm]
    calls = []

    def model(images):
        calls.append(images)
        return (x, y) if len(calls) == 1 else (x_mirror, y_mirror)

    images = torch.randn(2, 3, 8, 6)
    avg_x, avg_y = CODEC.flip_test(model, images, COCO_FLIP_PAIRS)
    assert torch.equal(calls[1], images.flip(-1))
    torch.testing.assert_close(avg_x[..., :-1], x[..., :-1])  # the last bin has no right neighbour
    torch.testing.assert_close(avg_y, y)
    calls.clear()
    unshifted, _ = CODEC.flip_test(model, images, COCO_FLIP_PAIRS, shift=False)
    torch.testing.assert_close(unshifted, (x + x_mirror.flip(-1)[:, perm]) * 0.5)


def test_codec_and_its_calls_check_their_inputs():
    x, y = torch.randn(1, 17, 384), torch.randn(1, 17, 512)
    with pytest.raises(ValueError, match="x_logits must have 3 dimensions"):
        CODEC.flip_back((x[0], y[0]), COCO_FLIP_PAIRS)
    with pytest.raises(ValueError, match="one B and K"):
        CODEC.decode((x, y[:, :5]))
    with pytest.raises(ValueError, match=r"flip pair \(17, 20\) is out of range for 17"):
        CODEC.flip_back((x, y), WHOLEBODY_FLIP_PAIRS)
    with pytest.raises(ValueError, match=r"x_logits must have 384 bins \(\(256, 192\) input"):
        CODEC.decode((x[..., :192], y))
    with pytest.raises(TypeError, match=r"outputs must be the pair \(x_logits, y_logits\)"):
        CODEC.decode(x)
    with pytest.raises(ValueError, match="visible must have shape"):
        CODEC.encode(torch.zeros(1, 2, 2), torch.ones(1, 3))
    with pytest.raises(TypeError, match=r"image_size must be a \(height, width\) pair"):
        SimCCCodec(192)
    with pytest.raises(TypeError, match=r"image_size must be a \(height, width\) pair"):
        SimCCCodec((256.0, 192))
    with pytest.raises(ValueError, match="image_size must be positive"):
        SimCCCodec((0, 192))
    with pytest.raises(ValueError, match="split_ratio must be > 0"):
        SimCCCodec((256, 192), split_ratio=0.0)
    with pytest.raises(ValueError, match="sigma must be finite"):
        SimCCCodec((256, 192), sigma=NAN)
    with pytest.raises(TypeError, match="targets must be a mapping"):
        CODEC.loss((x, y), [x, y])
    with pytest.raises(ValueError, match=r"targets lack \['target_weight'\]"):
        CODEC.loss((x, y), {"target_x": x, "target_y": y})


# -- losses -------------------------------------------------------------------------------------


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
    # the codec's loss is this loss of its targets (5 x bins, 4 y bins: a 2x2.5 input)
    codec = SimCCCodec((2, 5), split_ratio=1.0)
    targets = {"target_x": tx, "target_y": ty, "target_weight": weight, "image": x}
    torch.testing.assert_close(codec.loss((x, y), targets), got, rtol=0, atol=0)


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
    codec = SimCCCodec((6, 6), split_ratio=1.0)
    batch = {"target_x": targets[0], "target_y": targets[1], "target_weight": weight}
    torch.testing.assert_close(codec.loss(pruned, batch, entire=entire), loss, rtol=0, atol=0)
    # the entire pass gets gradients only from its own fit to the targets
    loss.backward()
    own = [z.detach().clone().requires_grad_(True) for z in entire]
    keypoint_kl_loss(own, targets, weight).backward()
    for z, reference in zip(entire, own, strict=True):
        torch.testing.assert_close(z.grad, reference.grad)


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


# -- the losses on bad and unusual input --------------------------------------------------------

_GEN = torch.Generator().manual_seed(16)


def _x(*shape):
    return torch.randn(*shape, generator=_GEN)


def _u(*shape):
    return torch.rand(*shape, generator=_GEN)


def _meta(t):
    return t.to("meta")


def _strided(t):
    """The same values in a non-contiguous view."""
    buffer = torch.zeros(*t.shape, 2, dtype=t.dtype)
    buffer[..., 0] = t
    return buffer[..., 0]


BAD = [
    (lambda: bin_kl_divergence(_x(2, 3), torch.tensor([[NAN, 0.5, 0.5]] * 2)), ValueError,
     "target must be finite"),
    (lambda: bin_kl_divergence(_x(2, 3), torch.tensor([[-0.5, 1.0, 0.5]] * 2)), ValueError,
     "target must be >= 0"),
    (lambda: bin_kl_divergence(_x(2, 0), _x(2, 0)), ValueError,
     "logits must have a last .bin. axis with at least one bin"),
    (lambda: bin_kl_divergence(torch.tensor(1.0), torch.tensor(1.0)), ValueError,
     "logits must have a last .bin. axis"),
    (lambda: bin_kl_divergence(_x(2, 3), _u(2, 4)), ValueError,
     "logits and target must have one shape"),
    (lambda: bin_kl_divergence(_x(2, 3), [[0.5] * 3] * 2), TypeError,
     r"target must be a torch\.Tensor"),
    (lambda: bin_kl_divergence(_x(2, 3), _meta(_u(2, 3))), ValueError, "same device"),
    (lambda: keypoint_kl_loss(None, [_u(1, 2, 3)], torch.ones(1, 2)), TypeError,
     "logits must be a list or tuple of tensors"),
    (lambda: keypoint_kl_loss([_x(1, 2, 3)], [_u(1, 2, 3)], [[1.0, 1.0]]), TypeError,
     r"weight must be a torch\.Tensor"),
    (lambda: keypoint_kl_loss([_x(1, 2, 3)], [_u(1, 2, 3)], torch.tensor([[1.0, NAN]])),
     ValueError, "weight must be finite"),
    (lambda: keypoint_kl_loss([_x(1, 2, 3)], [_u(1, 2, 3)], torch.tensor([[1.0, -1.0]])),
     ValueError, "weight must be >= 0"),
    (lambda: keypoint_kl_loss([_x(1, 2, 3)], [_u(1, 2, 3)], torch.ones(2, 1)), ValueError,
     r"weight must have shape \(1, 2\)"),
    (lambda: keypoint_kl_loss([_x(1, 2, 3), _x(1, 3)], [_u(1, 2, 3), _u(1, 3)],
                              torch.ones(1, 2)), ValueError,
     r"logits\[1\] must have the leading shape \(1, 2\)"),
    (lambda: keypoint_kl_loss([], [], torch.ones(1, 2)), ValueError,
     "logits must hold at least one tensor"),
    (lambda: keypoint_kl_loss([_x(1, 2, 3)], [_u(1, 2, 3)], _meta(torch.ones(1, 2))),
     ValueError, "same device"),
    (lambda: keypoint_kl_loss([_x(1, 2, 3)] * 2, [_u(1, 2, 3), -_u(1, 2, 3) - 1],
                              torch.ones(1, 2)), ValueError, r"targets\[1\] must be >= 0"),
    (lambda: global_perceived_loss(None, [_x(1, 2, 3)], [_u(1, 2, 3)], torch.ones(1, 2)),
     TypeError, "pruned must be a list or tuple of tensors"),
    (lambda: global_perceived_loss([_x(1, 2, 3)], _x(1, 2, 3), [_u(1, 2, 3)], torch.ones(1, 2)),
     TypeError, "entire must be a list or tuple of tensors"),
    (lambda: global_perceived_loss([_x(1, 2, 3)], [_x(1, 2, 3)], [None], torch.ones(1, 2)),
     TypeError, r"targets\[0\] must be a torch\.Tensor"),
    (lambda: global_perceived_loss([_x(1, 2, 3)], [_x(1, 2, 3)] * 2, [_u(1, 2, 3)],
                                   torch.ones(1, 2)), ValueError,
     "pruned, entire and targets need one tensor per axis"),
    (lambda: global_perceived_loss([_x(1, 2, 3)], [_x(1, 2, 4)], [_u(1, 2, 3)],
                                   torch.ones(1, 2)), ValueError,
     r"pruned\[0\] and entire\[0\] must have one shape"),
    (lambda: global_perceived_loss([_x(1, 2, 3)], [_x(1, 2, 3)], [torch.full((1, 2, 3), INF)],
                                   torch.ones(1, 2)), ValueError, r"targets\[0\] must be finite"),
    (lambda: global_perceived_loss([_x(1, 2, 3)], [_x(1, 2, 3)], [_u(1, 2, 3)],
                                   _meta(torch.ones(1, 2))), ValueError, "same device"),
    (lambda: global_perceived_loss((), (), (), torch.ones(1, 2)), ValueError,
     "pruned must hold at least one tensor"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "match"), BAD)
def test_losses_refuse_bad_input_naming_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_losses_on_unusual_but_valid_input():
    # -inf logits where the target is 0 contribute nothing
    logits = torch.tensor([[0.0, -INF, 1.0, -INF]])
    target = torch.tensor([[0.5, 0.0, 0.5, 0.0]])
    real, t = logits[:, [0, 2]].double(), target[:, [0, 2]].double()
    expected = ((torch.xlogy(t, t) - t * torch.log_softmax(real, dim=-1)).sum(-1) / 4).float()
    torch.testing.assert_close(bin_kl_divergence(logits, target), expected)
    # non-contiguous views give the contiguous result
    z, y = _x(2, 3, 5), _u(2, 3, 5)
    torch.testing.assert_close(bin_kl_divergence(_strided(z), _strided(y)),
                               bin_kl_divergence(z, y))  # fmt: skip
    weight = _u(2, 3)
    torch.testing.assert_close(keypoint_kl_loss([_strided(z)], [_strided(y)], _strided(weight)),
                               keypoint_kl_loss([z], [y], weight))  # fmt: skip
    # no sample or no keypoint: 0, not NaN
    assert keypoint_kl_loss([_x(0, 3, 5)], [_x(0, 3, 5)], torch.ones(0, 3)).item() == 0.0
    empty = [_x(2, 0, 5)]
    assert global_perceived_loss(empty, empty, [_u(2, 0, 5)], torch.ones(2, 0)).item() == 0.0


def test_nan_logits_reach_the_losses():
    poisoned = _x(1, 2, 3)
    poisoned[0, 0, 0] = NAN
    assert torch.isnan(bin_kl_divergence(poisoned, _u(1, 2, 3))).any()
    assert torch.isnan(keypoint_kl_loss([poisoned], [_u(1, 2, 3)], torch.ones(1, 2)))
    assert torch.isnan(global_perceived_loss([_x(1, 2, 3)], [poisoned], [_u(1, 2, 3)],
                                             torch.ones(1, 2)))  # fmt: skip


def test_bin_kl_divergence_value_checks_are_skipped_while_tracing():
    logits, target = torch.zeros(2, 3), torch.tensor([[-1.0, 0.5, 0.5], [0.2, 0.3, 0.5]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(bin_kl_divergence, (logits, target.abs()))
        out = traced(logits, target)  # recorded without the check: it runs, no ValueError
    assert out.shape == (2,)
