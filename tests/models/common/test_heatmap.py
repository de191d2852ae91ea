"""The heatmap codec: targets, MSE loss, decoding and flip testing on constructed inputs."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tokenprune_models.common.heatmap import HeatmapCodec, heatmap_mse_loss
from tokenprune_models.common.keypoints import COCO_FLIP_PAIRS

CODEC = HeatmapCodec((256, 192), (64, 48))  # TokenPose's: stride 4, sigma 2


def test_targets_are_unit_gaussians_on_the_nearest_cell():
    keypoints = torch.tensor([[[41.0, 22.0], [-30.0, 5.0], [10.0, 10.0], [-25.0, 5.0]]])
    visible = torch.tensor([[2, 2, 0, 1]])
    targets = CODEC.encode(keypoints, visible)
    maps, weight = targets["target_heatmaps"], targets["target_weight"]
    assert list(targets) == ["target_heatmaps", "target_weight"]
    assert CODEC.sigma == 2.0 and CODEC.stride == (4.0, 4.0)
    assert maps.shape == (1, 4, 64, 48)
    # (41, 22) / 4 = (10.25, 5.5): nearest cell (10, 6) (halves round up)
    assert maps[0, 0].argmax().item() == 6 * 48 + 10
    assert maps[0, 0, 6, 10].item() == 1.0
    assert maps[0, 0, 6, 11].item() == pytest.approx(math.exp(-1 / 8))
    assert maps[0, 0, 7, 12].item() == pytest.approx(math.exp(-5 / 8))
    assert maps[0, 0, 6, 16].item() == pytest.approx(math.exp(-36 / 8))  # 3 sigma: still in
    assert maps[0, 0, 6, 17].item() == 0.0 and maps[0, 0, 13, 10].item() == 0.0  # beyond
    # (-30 / 4 -> cell -7): its window (-13..-1) misses the map; (-25 / 4 -> -6) reaches cell 0;
    # unlabelled keypoints get weight 0 and an empty map
    assert weight.tolist() == [[1.0, 0.0, 0.0, 1.0]]
    assert maps[0, 1].sum().item() == 0.0 and maps[0, 2].sum().item() == 0.0
    assert maps[0, 3, 1, 0].item() == pytest.approx(math.exp(-36 / 8))


@settings(max_examples=60, deadline=None)
@given(
    x=st.floats(0, 191), y=st.floats(0, 255), sigma=st.sampled_from([1.0, 2.0, 3.0]),
    stride=st.sampled_from([1, 2, 4]),
)  # fmt: skip
@example(x=0.0, y=1.9999999999999716, sigma=1.0, stride=4)  # float32 rounds it to 2.0
@example(x=191.0, y=253.99999999999997, sigma=1.0, stride=4)  # nearest cell past the map
def test_decoding_a_target_returns_its_cell(x, y, sigma, stride):
    codec = HeatmapCodec((256, 192), (256 // stride, 192 // stride), sigma)
    size = (192 // stride, 256 // stride)  # (x, y) cells
    point = torch.tensor([[[x, y]]])  # float32: the expectations below use its rounded values
    x, y = point[0, 0].tolist()
    coords, scores = codec.decode(codec.encode(point, torch.ones(1, 1))["target_heatmaps"])
    # the nearest cell; a keypoint in the last half cell of the input rounds to one past the
    # map, whose Gaussian then peaks on the last cell
    nearest = [math.floor(x / stride + 0.5), math.floor(y / stride + 0.5)]
    cell = [min(nearest[0], size[0] - 1), min(nearest[1], size[1] - 1)]
    assert coords[0, 0].tolist() == [cell[0] * stride, cell[1] * stride]
    reach = stride / 2 if cell == nearest else stride
    assert abs(coords[0, 0, 0].item() - x) <= reach
    assert abs(coords[0, 0, 1].item() - y) <= reach
    off_map = sum((n - c) ** 2 for n, c in zip(nearest, cell, strict=True))
    assert scores.item() == pytest.approx(math.exp(-off_map / (2 * sigma**2)))


def test_decode_moves_a_quarter_cell_towards_the_higher_neighbour():
    maps = torch.zeros(1, 3, 5, 6)
    maps[0, 0, 2, 3], maps[0, 0, 2, 4], maps[0, 0, 1, 3] = 1.0, 0.5, 0.2  # right, up
    maps[0, 1, 0, 0], maps[0, 1, 0, 1] = 0.9, 0.8  # a corner: no neighbour on the left/top
    maps[0, 2] = -1.0  # an all-negative map: arg-max is the first cell, score the maximum
    maps[0, 2, 4, 5] = -0.5
    coords, scores = HeatmapCodec((10, 24), (5, 6)).decode(maps)  # stride (x, y) = (4, 2)
    assert coords[0].tolist() == [[3.25 * 4, 1.75 * 2], [0.0, 0.0], [5 * 4, 4 * 2]]
    assert scores[0].tolist() == [1.0, pytest.approx(0.9), -0.5]


def test_mse_loss_against_hand_computed_values():
    pred = torch.zeros(2, 2, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]], [[0.5, 0.5]]], [[[0.0, 2.0]], [[1.0, 1.0]]]])
    weight = torch.tensor([[1.0, 0.0], [1.0, 2.0]])
    # squared weighted errors: (1 + 0) + 0 + (0 + 4) + 4 * (1 + 1) = 13 over 8 cells, halved
    assert heatmap_mse_loss(pred, target, weight).item() == pytest.approx(0.5 * 13 / 8)
    codec = HeatmapCodec((4, 8), (1, 2))
    targets = {"target_heatmaps": target, "target_weight": weight, "keypoints": pred}
    assert codec.loss(pred, targets).item() == pytest.approx(0.5 * 13 / 8)
    with pytest.raises(ValueError, match="weight must have shape"):
        heatmap_mse_loss(pred, target, weight[:, :1])
    with pytest.raises(ValueError, match="targets must match"):
        heatmap_mse_loss(pred, target[:1], weight)


def test_flip_back_and_flip_test():
    codec = HeatmapCodec((16, 24), (4, 6))
    maps = torch.rand(2, 17, 4, 6)
    back = codec.flip_back(maps, COCO_FLIP_PAIRS)
    assert torch.equal(back[:, 0], maps[:, 0].flip(-1))  # the nose stays the nose
    assert torch.equal(back[:, 1], maps[:, 2].flip(-1))  # left eye <- mirrored right eye
    assert torch.equal(codec.flip_back(back, COCO_FLIP_PAIRS), maps)

    # A stride-4 "detector" that puts a dot at input column u on cell round(u / 4): the dot at
    # column 8 (cell 2) mirrors to column 15 (cell 4), which flips back to cell 1; the shift
    # puts it back on cell 2.
    def detector(images):
        column = images[0, 0, 0].argmax().item()
        maps = torch.zeros(1, 1, 1, 6)
        maps[..., math.floor(column / 4 + 0.5)] = 1.0
        return maps

    image = torch.zeros(1, 1, 1, 24)
    image[..., 8] = 1.0
    codec = HeatmapCodec((4, 24), (1, 6))
    assert codec.flip_test(detector, image, [], shift=True)[0, 0, 0].tolist() == [
        0, 0, 1, 0, 0, 0
    ]  # fmt: skip
    assert codec.flip_test(detector, image, [], shift=False)[0, 0, 0].tolist() == [
        0, 0.5, 0.5, 0, 0, 0
    ]  # fmt: skip


def test_bad_inputs_get_clear_errors():
    points, visible = torch.zeros(1, 2, 2), torch.ones(1, 2)
    with pytest.raises(TypeError, match=r"heatmap_size must be a \(height, width\) pair"):
        HeatmapCodec((256, 192), 48)
    with pytest.raises(ValueError, match="image_size must be positive"):
        HeatmapCodec((256, -192), (64, 48))
    with pytest.raises(ValueError, match="sigma must be positive"):
        HeatmapCodec((256, 192), (64, 48), sigma=0.0)
    with pytest.raises(TypeError, match="sigma must be a real number"):
        HeatmapCodec((256, 192), (64, 48), sigma="2")
    with pytest.raises(ValueError, match="visible must have shape"):
        CODEC.encode(points, visible[:, :1])
    with pytest.raises(ValueError, match="heatmaps must have 4 dimensions"):
        CODEC.decode(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match=r"heatmaps must be \[B, K, 64, 48\]"):
        CODEC.decode(torch.zeros(1, 2, 48, 64))
    with pytest.raises(ValueError, match=r"flip pair \(1, 2\) is out of range for 2"):
        CODEC.flip_back(torch.zeros(1, 2, 3, 3), COCO_FLIP_PAIRS)
    with pytest.raises(ValueError, match=r"targets lack \['target_weight'\]"):
        CODEC.loss(torch.zeros(1, 2, 64, 48), {"target_heatmaps": torch.zeros(1, 2, 64, 48)})
