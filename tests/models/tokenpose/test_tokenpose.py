"""TokenPose-S-v1/B and PPT-S/B from tokenprune: official equivalence, published counts,
errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.oracles.fixtures import load_fixture
from tokenprune import count_flops
from tokenprune.flops.paper import paper_macs
from tokenprune_models.common.heatmap import HeatmapCodec
from tokenprune_models.ppt import (
    build_tokenpose,
    convert_official_state_dict,
    load_official_checkpoint,
)
from tokenprune_models.tokenpose import PRESETS, TokenPose, TokenPoseConfig
from tokenprune_models.tokenpose.hrnet import HRNetStem
from tokenprune_models.tokenpose.train import TokenPoseTask, make_task


@pytest.fixture(scope="module")
def official():
    return load_fixture("ppt_s_coco")


def test_ppt_s_reproduces_the_official_outputs_and_kept_tokens(official):
    state_dict, io = official
    model = build_tokenpose("ppt_s", backend="torch")
    model.load_state_dict(convert_official_state_dict(state_dict), strict=True)
    with torch.no_grad():
        out = model.eval().forward_tokens(torch.from_numpy(io["input"]))
    torch.testing.assert_close(out.heatmaps, torch.from_numpy(io["out_heatmap"]), atol=1e-5,
                               rtol=0)  # fmt: skip
    assert len(out.kept) == 3
    for step, kept in enumerate(out.kept, start=1):
        assert torch.equal(kept.sort(-1).values, torch.from_numpy(io[f"kept_stage{step}"]))


def test_released_checkpoint_files_load_with_weights_only(official, tmp_path):
    state_dict, io = official
    path = tmp_path / "ppt_s.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state_dict.items()}}, path)
    model = load_official_checkpoint(path, build_tokenpose("ppt_s", backend="torch"))
    with torch.no_grad():
        heatmaps = model(torch.from_numpy(io["input"]))
    torch.testing.assert_close(heatmaps, torch.from_numpy(io["out_heatmap"]), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="sine table"):
        load_official_checkpoint(path, build_tokenpose("ppt_s", image_size=(128, 96)))


@pytest.mark.parametrize(
    ("preset", "published_params", "published_gmacs", "exact_macs"),
    [("tokenpose_s", 6.6, 2.4, 2_413_691_136), ("ppt_s", 6.6, 2.0, 2_024_217_600)],
)
def test_counts_match_the_published_tables(preset, published_params, published_gmacs,
                                           exact_macs):  # fmt: skip
    report = count_flops(build_tokenpose(preset).eval(), torch.randn(1, 3, 256, 192))
    assert report.params == 6_620_736  # the official implementation's count (fixture meta)
    assert abs(report.params / 1e6 / published_params - 1) < 0.02
    assert abs(report.paper_macs / 1e9 / published_gmacs - 1) < 0.02
    assert report.paper_macs == exact_macs  # thop's count of the official implementation
    assert report.macs > report.paper_macs  # attention products come on top


@pytest.mark.parametrize(("preset", "published_gmacs"), [("tokenpose_b", 6.0), ("ppt_b", 5.6)])
def test_b_counts_match_the_published_tables(preset, published_gmacs):
    model = build_tokenpose(preset).eval()
    # 13.51 M in the official count, whose fixed sine table (256 x 192) is a Parameter
    params = sum(p.numel() for p in model.parameters())
    assert params == 13_465_216 and params + 256 * 192 == 13_514_368
    assert abs(params / 1e6 / 13.5 - 1) < 0.02
    macs = paper_macs(model, (torch.randn(1, 3, 256, 192),)).total
    assert abs(macs / 1e9 / published_gmacs - 1) < 0.02
    assert model.blocks[0].attn.scale == pytest.approx((192 // 8) ** -0.5)
    assert build_tokenpose("tokenpose_s").blocks[0].attn.scale == pytest.approx(192**-0.5)


def test_hrnet_stem_shapes_and_multi_resolution_fusion():
    stem = HRNetStem().eval()
    assert stem(torch.randn(2, 3, 64, 48)).shape == (2, 32, 16, 12)
    module = stem.stage3[0]
    xs = [torch.randn(1, c, 16 // 2**i, 12 // 2**i) for i, c in enumerate((32, 64, 128))]
    outs = module(xs)
    assert [tuple(o.shape) for o in outs] == [tuple(x.shape) for x in xs]
    assert len(stem.stage3[-1].fuse_layers) == 1  # the last module feeds the 1/4 branch only
    # every output branch hears every input branch: perturb the lowest resolution only
    xs2 = [xs[0], xs[1], xs[2] + 1.0]
    changed = [not torch.allclose(a, b) for a, b in zip(module(xs2), outs, strict=True)]
    assert all(changed)


#: Our names inside a TransformerBlock -> the official TokenPose layer names.
OFFICIAL_LAYER = {"norm1": "0.fn.norm", "attn.qkv": "0.fn.fn.to_qkv",
                  "attn.proj": "0.fn.fn.to_out.0", "norm2": "1.fn.norm",
                  "mlp.fc1": "1.fn.fn.net.0", "mlp.fc2": "1.fn.fn.net.3"}  # fmt: skip
OFFICIAL_TOP = {"patch_embed": "patch_to_embedding", "head": "mlp_head",
                "keypoint_tokens": "keypoint_token"}  # fmt: skip


def official_b_name(name: str) -> str:
    """Our TokenPose-B entry's name in the official B layout (HRNet under ``pre_feature``,
    TokenPose_TB_base under ``transformer``), spelled out independently of the converter."""
    if name.startswith("stem."):
        return "pre_feature." + name.removeprefix("stem.")
    if name.startswith("blocks."):
        _, index, rest = name.split(".", 2)
        module, param = rest.rsplit(".", 1)
        return f"transformer.transformer.layers.{index}.{OFFICIAL_LAYER[module]}.{param}"
    top, _, rest = name.partition(".")
    return "transformer." + OFFICIAL_TOP[top] + ("." + rest if rest else "")


def test_b_official_layout_maps_onto_ours():
    model = build_tokenpose("ppt_b")
    ours = model.state_dict()
    official = {official_b_name(name): value for name, value in ours.items()}
    official["transformer.pos_embedding"] = model.pos_embedding  # dropped: the model builds it
    converted = convert_official_state_dict(official)
    assert set(converted) == set(ours)
    assert all(converted[name] is value for name, value in ours.items())


def test_ppt_keeps_the_ceiling_of_the_ratio_at_each_step():
    model = build_tokenpose("ppt_s", backend="torch").eval()
    with torch.no_grad():
        out = model.forward_tokens(torch.randn(1, 3, 256, 192))
    assert [k.shape[1] for k in out.kept] == [180, 126, 89]
    for earlier, later in zip(out.kept, out.kept[1:], strict=False):
        assert set(later.tolist()[0]) <= set(earlier.tolist()[0])


@settings(max_examples=6, deadline=None)
@given(ratio=st.floats(0.05, 1.0), batch=st.integers(1, 2))
def test_small_models_prune_consistently(ratio, batch):
    torch.manual_seed(0)
    config = TokenPoseConfig(image_size=(64, 48), dim=32, depth=4, num_heads=2,
                             prune_after=(3, 1), keep_rate=ratio)  # fmt: skip
    model = TokenPose(config, backend="torch").eval()
    with torch.no_grad():
        out = model.forward_tokens(torch.randn(batch, 3, 64, 48))
    assert out.heatmaps.shape == (batch, 17, 16, 12)
    counts, present = [], model.num_visual  # 16 visual tokens
    for _ in model.prune_after:
        kept = model.pruner.num_kept(present, ratio)
        if kept < present:
            counts.append(kept)
        present = kept
    assert [k.shape[1] for k in out.kept] == counts
    for kept in out.kept:
        assert all(len(set(row.tolist())) == len(row) for row in kept)


def test_ratio_one_is_tokenpose():
    torch.manual_seed(0)
    pruned = build_tokenpose("ppt_s", backend="torch").eval()
    unpruned = build_tokenpose("tokenpose_s", backend="torch").eval()
    assert unpruned.config == pruned.config.unpruned() == PRESETS["tokenpose_s"]
    unpruned.load_state_dict(pruned.state_dict())
    pruned.keep_rate = 1.0
    images = torch.randn(1, 3, 256, 192)
    with torch.no_grad():
        out = pruned.forward_tokens(images)
        torch.testing.assert_close(out.heatmaps, unpruned(images))
    assert out.kept == ()


def test_presets_and_the_shared_codec():
    assert sorted(PRESETS) == ["ppt_b", "ppt_s", "tokenpose_b", "tokenpose_s"]
    assert PRESETS["ppt_s"] == TokenPoseConfig(prune_after=(4, 7, 10), keep_rate=0.7)
    assert PRESETS["ppt_b"].unpruned() == PRESETS["tokenpose_b"]
    assert (PRESETS["tokenpose_b"].stem, PRESETS["tokenpose_b"].scale_with_head) == (
        "hrnet_w32", True)  # fmt: skip
    model = build_tokenpose("ppt_s", num_keypoints=133, image_size=[128, 96], keep_rate=0.5)
    assert model.config.image_size == (128, 96) and model.keep_rate == 0.5
    assert model.codec == HeatmapCodec((128, 96), (32, 24))
    # one codec: the config's, sigma included (a config field), shared by task and model
    task = make_task({"model": {"preset": "tokenpose_s", "image_size": [64, 48], "sigma": 3.0,
                                "dim": 32}})  # fmt: skip
    assert task.codec == HeatmapCodec((64, 48), (16, 12), sigma=3.0) == task.config.codec
    assert TokenPose(task.config, backend="torch").codec == task.codec
    assert TokenPoseConfig().sigma == HeatmapCodec((8, 8), (2, 2)).sigma == 2.0
    with pytest.raises(ValueError, match=r"config section 'model' has unknown keys \['sigm'\]; "
                                         r"valid keys: preset, stem, .*, sigma$"):  # fmt: skip
        make_task({"model": {"preset": "tokenpose_s", "sigm": 3.0}})
    assert task.config.dim == 32 and task.config.prune_after == ()
    assert TokenPoseTask(PRESETS["ppt_b"]).codec == PRESETS["ppt_b"].codec


def test_bad_input_is_rejected():
    model = build_tokenpose("ppt_s", backend="torch")
    with pytest.raises(ValueError, match=r"images must have shape \[B, 3, 256, 192\]"):
        model(torch.randn(1, 3, 128, 96))
    with pytest.raises(TypeError, match="images"):
        model(torch.zeros(1, 3, 256, 192, dtype=torch.long))
    with pytest.raises(ValueError, match="keep_rate"):
        model.keep_rate = 0.0
    with pytest.raises(ValueError, match=r"config must be one of \['ppt_b', 'ppt_s'"):
        build_tokenpose("ppt_l")
    with pytest.raises(ValueError, match=r"TokenPoseConfig has unknown fields \['variant'\]; "
                                         r"valid fields: stem, "):  # fmt: skip
        build_tokenpose("ppt_s", variant="s")
    with pytest.raises(ValueError, match="stem"):
        TokenPose(TokenPoseConfig(stem="resnet"))
    with pytest.raises(ValueError, match="multiples of"):
        build_tokenpose(image_size=(250, 192))
    with pytest.raises(TypeError, match=r"image_size must be a \(height, width\) pair"):
        TokenPoseConfig(image_size=(256, 192, 3))
    with pytest.raises(ValueError, match="prune_after"):
        build_tokenpose(prune_after=(12,))
    with pytest.raises(TypeError, match="config must be a TokenPoseConfig"):
        TokenPose("ppt_s")
    with pytest.raises(ValueError, match=r"config\.num_keypoints must be 17 or 133"):
        TokenPoseTask(TokenPoseConfig(num_keypoints=16))
    with pytest.raises(TypeError, match="mapping"):
        convert_official_state_dict([1, 2])
    with pytest.raises(ValueError, match="not in the official"):
        convert_official_state_dict({"features.transformer.layers.0.2.weight": torch.zeros(1)})


def test_config_checks_name_the_field():
    for fields, error, message in (
        ({"prune_after": 4}, TypeError, "prune_after must be a sequence of layer numbers"),
        ({"prune_after": (4, 12)}, ValueError, r"prune_after\[1\] must be <= 11"),
        ({"prune_after": (4, "7")}, TypeError, r"prune_after\[1\] must be an int"),
        ({"keep_rate": 2.0}, ValueError, r"keep_rate must be in \(0, 1\]"),
        ({"stem": "resnet"}, ValueError, "stem must be one of"),
        ({"dim": "a"}, TypeError, "dim must be an int"),
        ({"dim": 100}, ValueError, "dim must be a multiple of num_heads"),
        ({"scale_with_head": 1}, TypeError, "scale_with_head must be a bool"),
        ({"sigma": 0}, ValueError, "sigma must be > 0"),
        ({"image_size": (250, 192)}, ValueError, "image_size must be multiples of"),
    ):
        with pytest.raises(error, match=message):
            TokenPoseConfig(**fields)
