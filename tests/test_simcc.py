"""SimCC targets, decoding and flip testing on constructed inputs."""

from __future__ import annotations

import math

import pytest
import torch

from models.common.keypoints import COCO_FLIP_PAIRS, WHOLEBODY_FLIP_PAIRS, flip_permutation
from models.common.simcc import decode_simcc, flip_back_simcc, flip_test, simcc_targets


def test_targets_are_gaussians_centred_at_split_coordinates():
    keypoints = torch.tensor([[[10.0, 20.0], [-5.0, 3.0], [50.0, 299.0], [-14.0, 5.0]]])
    visible = torch.tensor([[2, 2, 0, 2]])
    tx, ty, weight = simcc_targets(keypoints, visible, (192, 256), split_ratio=2.0, sigma=4.0)
    assert tx.shape == (1, 4, 384) and ty.shape == (1, 4, 512)
    assert tx[0, 0].argmax().item() == 20 and ty[0, 0].argmax().item() == 40
    peak = 1 / (4.0 * math.sqrt(2 * math.pi))
    assert tx[0, 0, 20].item() == pytest.approx(peak)
    assert tx[0, 0, 24].item() == pytest.approx(peak * math.exp(-0.5))  # one sigma away
    # SimCC keeps a keypoint just outside the input (its 3-sigma window overlaps the input),
    # drops one whose whole window is outside, and unlabelled ones
    assert weight.tolist() == [[1.0, 1.0, 0.0, 0.0]]
    with pytest.raises(TypeError, match="image_size must be a"):
        simcc_targets(keypoints, visible, 192)


def test_decode_on_constructed_logits():
    x = torch.full((1, 2, 384), -10.0)
    y = torch.full((1, 2, 512), -10.0)
    x[0, 0, 101], y[0, 0, 40] = 10.0, 10.0
    x[0, 1, 7], y[0, 1, 500] = 2.0, 8.0
    coords, scores = decode_simcc(x, y, split_ratio=2.0)
    assert coords.tolist() == [[[50.5, 20.0], [3.5, 250.0]]]
    px = torch.softmax(x[0, 1], 0).max()
    py = torch.softmax(y[0, 1], 0).max()
    assert scores[0, 1].item() == pytest.approx(min(px, py).item())


def test_flip_pairs():
    assert flip_permutation(17, COCO_FLIP_PAIRS)[:7] == [0, 2, 1, 4, 3, 6, 5]
    perm = flip_permutation(133, WHOLEBODY_FLIP_PAIRS)
    assert sorted(perm) == list(range(133))  # a permutation
    assert all(perm[perm[i]] == i for i in range(133))  # an involution
    assert perm[17] == 20 and perm[23] == 39 and perm[23 + 30] == 23 + 30  # toe, jaw, nose
    assert perm[91] == 112 and perm[132] == 111  # hands


def test_flip_and_decode_check_their_inputs():
    x, y = torch.randn(1, 17, 384), torch.randn(1, 17, 512)
    with pytest.raises(ValueError, match="x_logits must have 3 dimensions"):
        flip_back_simcc(x[0], y[0], COCO_FLIP_PAIRS)
    with pytest.raises(ValueError, match="one B and K"):
        decode_simcc(x, y[:, :5])
    with pytest.raises(ValueError, match=r"flip pair \(17, 20\) is out of range for 17"):
        flip_back_simcc(x, y, WHOLEBODY_FLIP_PAIRS)


def test_flip_back_reverses_x_and_swaps_sides():
    x = torch.arange(3 * 4.0).reshape(1, 3, 4)
    y = torch.arange(3 * 2.0).reshape(1, 3, 2)
    fx, fy = flip_back_simcc(x, y, [(1, 2)])
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
    avg_x, avg_y = flip_test(model, images, COCO_FLIP_PAIRS)
    assert torch.equal(calls[1], images.flip(-1))
    torch.testing.assert_close(avg_x[..., :-1], x[..., :-1])  # the last bin has no right neighbour
    torch.testing.assert_close(avg_y, y)
