"""HEViTPose: published parameter and GFLOP parity of our configurations, shapes, PEOW."""

from __future__ import annotations

import warnings
from dataclasses import replace

import pytest
import torch

from tokenprune import count_flops
from tokenprune_models.hevitpose import (
    PRESETS,
    PUBLISHED,
    HEViTPose,
    OverlapPatchEmbed,
    build_hevitpose,
)


@pytest.mark.parametrize("preset", ["hevitpose_t", "hevitpose_s", "hevitpose_b"])
def test_params_and_gflops_within_five_percent_of_the_published_table(preset):
    model = build_hevitpose(preset).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's import and tracer warnings
        report = count_flops(model, torch.randn(1, 3, 256, 256))
    params, gflops = PUBLISHED[preset]
    assert report.params == sum(p.numel() for p in model.parameters())
    assert abs(report.params / params - 1) < 0.05
    assert abs(report.macs / gflops - 1) < 0.05


def test_heatmaps_at_a_quarter_of_the_input_and_gradients_reach_every_parameter():
    model = build_hevitpose("hevitpose_t", num_keypoints=17, image_size=(64, 48))
    assert model.config == replace(PRESETS["hevitpose_t"], num_keypoints=17, image_size=(64, 48))
    heatmaps = model(torch.randn(2, 3, 64, 48))
    assert heatmaps.shape == (2, 17, 16, 12)
    heatmaps.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    stages = model.features(torch.randn(1, 3, 64, 48))
    assert [tuple(s.shape[-2:]) for s in stages] == [(16, 12), (8, 6), (4, 3)]


@pytest.mark.parametrize("stride", [2, 4])
@pytest.mark.parametrize("overlap", [0, 1, 2, 3])
def test_overlapping_patch_embedding_reaches_overlap_pixels_into_its_neighbours(stride, overlap):
    embed = OverlapPatchEmbed(1, 1, stride, overlap)
    assert embed.conv.kernel_size == (stride + overlap,) * 2
    assert embed(torch.randn(1, 1, 32, 32)).shape[-2:] == (32 // stride, 32 // stride)
    # the receptive field of one output pixel spans stride + overlap input pixels per side
    image = torch.zeros(1, 1, 32, 32, requires_grad=True)
    embed.eval()
    embed(image)[0, 0, 3, 3].backward()
    rows = image.grad[0, 0].abs().sum(dim=1).nonzero().flatten()
    assert len(rows) == stride + overlap


def test_bad_inputs_get_clear_errors():
    assert sorted(PRESETS) == sorted(PUBLISHED) == ["hevitpose_b", "hevitpose_s", "hevitpose_t"]
    with pytest.raises(ValueError, match=r"config must be one of \['hevitpose_b'"):
        build_hevitpose("hevitpose_xl")
    with pytest.raises(ValueError, match=r"HEViTPoseConfig has unknown fields \['variant'\]"):
        build_hevitpose("hevitpose_t", variant="t")
    with pytest.raises(ValueError, match="multiples of 16"):
        build_hevitpose("hevitpose_t", image_size=(250, 250))
    with pytest.raises(TypeError, match="config must be a HEViTPoseConfig"):
        HEViTPose("hevitpose_t")
    model = build_hevitpose("hevitpose_t", image_size=(64, 64))
    with pytest.raises(ValueError, match=r"images must have shape \[B, 3, 64, 64\]"):
        model(torch.randn(1, 3, 64, 48))


def test_config_checks_name_the_field():
    from dataclasses import replace

    base = PRESETS["hevitpose_t"]
    for fields, error, message in (
        ({"widths": (48, 160)}, ValueError, "widths must have 3 entries"),
        ({"depths": 2}, TypeError, "depths must be 3 ints"),
        ({"depths": (1, 0, 3)}, ValueError, r"depths\[1\] must be >= 1"),
        ({"overlaps": (3, -1, 1)}, ValueError, r"overlaps\[1\] must be >= 0"),
        ({"groups": (4, 3, 4)}, ValueError, r"widths\[1\]=160 must split into groups\[1\]=3"),
        ({"key_dim": "16"}, TypeError, "key_dim must be an int"),
        ({"ffn_ratio": 0}, ValueError, "ffn_ratio must be > 0"),
        ({"image_size": (250, 256)}, ValueError, "image_size must be multiples of 16"),
    ):
        with pytest.raises(error, match=message):
            replace(base, **fields)
