"""GTPT: official-output equivalence, parity with the published tables, token flow, API."""

from __future__ import annotations

import pickle

import pytest
import torch

from tests.oracles.fixtures import load_fixture
from tokenprune import count_flops
from tokenprune.flops.paper import paper_macs
from tokenprune_models.common.simcc import SimCCCodec
from tokenprune_models.gtpt import (
    GTPT,
    PRESETS,
    GTPTConfig,
    build_gtpt,
    convert_official_state_dict,
    load_official_checkpoint,
)
from tokenprune_models.gtpt.train import GTPTTask, keep_rate_schedule, make_task

IMAGE = (3, 256, 192)


def _kept_visual_sets(kept: torch.Tensor) -> list[list[int]]:
    """Rows of original patch ids without the dense slots (-1), sorted."""
    return [sorted(i for i in row.tolist() if i >= 0) for row in kept]


@pytest.fixture(scope="module", params=["coco", "wholebody"])
def official(request):
    dataset = request.param
    state_dict, io = load_fixture(f"gtpt_t_{dataset}")
    model = build_gtpt(f"gtpt_t_{dataset}")
    model.load_state_dict(convert_official_state_dict(state_dict), strict=True)
    return dataset, state_dict, io, model.eval()


def test_reproduces_official_outputs_and_kept_tokens(official):
    dataset, _, io, model = official
    with torch.no_grad():
        out = model.forward_tokens(torch.from_numpy(io["input"]))
    torch.testing.assert_close(out.x_logits, torch.from_numpy(io["out_x"]), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.y_logits, torch.from_numpy(io["out_y"]), atol=1e-5, rtol=0)
    assert _kept_visual_sets(out.kept_coarse) == io["kept_stage1"].tolist()
    for g in range(3):
        if dataset == "coco":
            expected2, expected3 = io["kept_stage2"][:, g], io["kept_stage3"][:, g]
        else:
            expected2, expected3 = io[f"kept_stage2_g{g}"], io[f"kept_stage3_g{g}"]
        assert _kept_visual_sets(out.kept_groups[:, g]) == expected2.tolist()
        assert _kept_visual_sets(out.kept_fine[:, g]) == expected3.tolist()


def test_sine_table_equals_official(official):
    _, state_dict, _, model = official
    torch.testing.assert_close(model.pos_embedding, state_dict["ema_features.pos_embedding"])


def test_eval_uses_the_ema_branch(official):
    dataset, state_dict, io, _ = official
    raw = build_gtpt(f"gtpt_t_{dataset}").eval()
    raw.load_state_dict(convert_official_state_dict(state_dict, branch="raw"), strict=True)
    with torch.no_grad():
        x_logits, _ = raw(torch.from_numpy(io["input"]))
    assert not torch.allclose(x_logits, torch.from_numpy(io["out_x"]), atol=1e-3)


def test_loads_a_released_checkpoint_file(official, tmp_path):
    dataset, state_dict, io, _ = official
    path = tmp_path / "gtpt.pth"
    torch.save({"epoch": 300, "state_dict": {f"module.{k}": v for k, v in state_dict.items()}},
               path)  # fmt: skip
    model = load_official_checkpoint(path, f"gtpt_t_{dataset}")
    with torch.no_grad():
        x_logits, _ = model(torch.from_numpy(io["input"]))
    torch.testing.assert_close(x_logits, torch.from_numpy(io["out_x"]), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"positional table .* differs"):
        load_official_checkpoint(path, PRESETS[f"gtpt_s_{dataset}"])


class _NotATensor:
    pass


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_official_checkpoint(tmp_path / "missing.pth", "gtpt_t_coco")
    code = tmp_path / "code.pth"
    code.write_bytes(pickle.dumps({"state_dict": _NotATensor()}))
    with pytest.raises(ValueError, match="weights-only"):
        load_official_checkpoint(code, "gtpt_t_coco")
    good = tmp_path / "good.pth"
    torch.save({"w": torch.zeros(3)}, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:40])
    with pytest.raises(ValueError, match="weights-only"):
        load_official_checkpoint(truncated, "gtpt_t_coco")
    with pytest.raises(ValueError, match="not in the official GTPT layout"):
        load_official_checkpoint(good, "gtpt_t_coco")


def test_converter_rejects_foreign_state_dicts():
    with pytest.raises(ValueError, match="not in the official GTPT layout"):
        convert_official_state_dict({"blocks.0.attn.qkv.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="no entries of the 'ema' branch"):
        convert_official_state_dict({"features.human_token": torch.zeros(1, 1, 8)})
    with pytest.raises(ValueError, match="branch must be"):
        convert_official_state_dict({}, branch="best")


# Published (GTPT README) params in M (COCO models only) and "GFLOPs" (thop MACs), and the
# counts measured on the official implementation: exact for GTPT-T (fixture meta files;
# parameters without the fixed positional table), rounded for S and B (reference notes, which
# include the 0.05 M table).
PUBLISHED = {
    ("t", "coco"): (2.4, 0.7), ("t", "wholebody"): (None, 0.8),
    ("s", "coco"): (5.4, 1.6), ("s", "wholebody"): (None, 2.0),
    ("b", "coco"): (8.3, 3.6), ("b", "wholebody"): (None, 4.0),
}  # fmt: skip
OFFICIAL_EXACT = {
    ("t", "coco"): (2_372_864, 663_179_264),
    ("t", "wholebody"): (2_388_352, 831_771_648),
}
OFFICIAL_ROUNDED = {  # params in M with the 256 x dim sine table (COCO models only), GMACs
    ("s", "coco"): (5.48, 1.63), ("s", "wholebody"): (None, 1.99),
    ("b", "coco"): (8.37, 3.65), ("b", "wholebody"): (None, 4.02),
}  # fmt: skip


@pytest.mark.parametrize("variant, dataset", sorted(PUBLISHED))
def test_parameter_and_flop_parity(variant, dataset):
    model = build_gtpt(f"gtpt_{variant}_{dataset}")
    params = sum(p.numel() for p in model.parameters())
    macs = paper_macs(model, (torch.randn(1, *IMAGE),)).total
    published_params, published_gmacs = PUBLISHED[(variant, dataset)]
    if published_params is not None:
        assert abs(params / 1e6 - published_params) <= 0.02 * published_params
        # the published figures have one decimal: ours must round to them
        assert round(params / 1e6, 1) == published_params
    assert round(macs / 1e9, 1) == published_gmacs
    if (variant, dataset) in OFFICIAL_EXACT:
        assert (params, macs) == OFFICIAL_EXACT[(variant, dataset)]
    else:
        official_params, official_gmacs = OFFICIAL_ROUNDED[(variant, dataset)]
        if official_params is not None:
            with_table = params + model.pos_embedding.numel()
            assert abs(with_table / 1e6 - official_params) <= 0.005 + 0.002 * official_params
        assert abs(macs / 1e9 - official_gmacs) <= 0.005 + 0.002 * official_gmacs


def test_full_flops_include_attention():
    report = count_flops(build_gtpt("gtpt_t_coco"), torch.randn(1, *IMAGE))
    assert report.unknown_ops == {}
    # attention adds 10-17 % to the Linear and Conv multiply-adds
    assert 1.08 < report.macs / report.linear_conv_macs < 1.2


@pytest.mark.parametrize(
    "dataset, rates, coarse, groups, fine",
    [
        ("coco", None, 179, [76, 76, 76], [25, 25, 25]),
        ("coco", (1.0, 1.0, 1.0, 1.0), 256, [256, 256, 256], [256, 256, 256]),
        ("coco", (1.0, 1.0, 0.5, 0.5), 256, [128, 128, 128], [128, 128, 128]),
        ("wholebody", None, 179, [60, 86, 122], [8, 34, 70]),
        # the entire pass: dense tokens still come out of the 256-token budget
        ("wholebody", (1.0, 1.0, 1.0, 1.0), 256, [188, 214, 250], [188, 214, 250]),
    ],
)
def test_token_flow(dataset, rates, coarse, groups, fine):
    overrides = {} if rates is None else {"keep_rates": rates}
    model = build_gtpt(f"gtpt_t_{dataset}", **overrides).eval()
    with torch.no_grad():
        out = model.forward_tokens(torch.randn(2, *IMAGE))
    num_keypoints = 17 if dataset == "coco" else 133
    assert out.x_logits.shape == (2, num_keypoints, 384)
    assert out.y_logits.shape == (2, num_keypoints, 512)
    assert out.kept_coarse.shape == (2, coarse)
    for g in range(3):
        assert {len(s) for s in _kept_visual_sets(out.kept_groups[:, g])} == {groups[g]}
        assert {len(s) for s in _kept_visual_sets(out.kept_fine[:, g])} == {fine[g]}
        # the fine stage keeps a subset of the group's tokens
        for before, after in zip(out.kept_groups[:, g], out.kept_fine[:, g], strict=True):
            assert set(after.tolist()) <= set(before.tolist())


def test_training_step_with_global_perceived_loss():
    torch.manual_seed(0)
    task = GTPTTask(PRESETS["gtpt_t_coco"])
    model = task.build_model()
    images = torch.randn(2, *IMAGE)
    keypoints = torch.rand(2, 17, 2) * torch.tensor([192.0, 256.0])
    batch = {"image": images, **task.codec.encode(keypoints, torch.ones(2, 17))}
    pruned, entire = task.training_module(model)(images)
    assert pruned.kept_coarse.shape[1] == 179 and entire.kept_coarse.shape[1] == 256
    loss = task.loss((pruned, entire), batch, epoch=0.0)
    # the Global Perceived loss: the codec's loss of the pruned pass against the targets, with
    # the entire pass as the other pass and the teacher
    expected = task.codec.loss((pruned.x_logits, pruned.y_logits), batch,
                               entire=(entire.x_logits, entire.y_logits))  # fmt: skip
    assert torch.equal(loss, expected)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.keypoint_tokens.grad is not None and model.stem.conv1[0].weight.grad is not None


def test_the_model_the_data_and_the_task_share_one_codec():
    config = PRESETS["gtpt_t_coco"]
    model, task = GTPT(config), GTPTTask(config)
    assert model.codec == task.codec == config.codec == SimCCCodec((256, 192))
    assert model.head.x[1].out_features == 384 and model.head.y[1].out_features == 512
    section = {"preset": "gtpt_t_wholebody", "image_size": [192, 144], "keep_rates": [1.0] * 4}
    small = make_task({"model": section, "curriculum": {"kind": "linear"}})
    assert small.codec == SimCCCodec((192, 144)) and small.image_size == (192, 144)
    assert small.num_keypoints == 133 and small.config.keep_rates == (1.0,) * 4
    assert small.config.dim == 128 and small.curriculum == "linear"
    assert small.build_model().head.y[1].out_features == 384
    # decoding the model's own targets gives back the keypoints (to half a bin)
    keypoints = torch.tensor([[[20.0, 30.5], [100.25, 7.0]]])
    targets = model.codec.encode(keypoints, torch.ones(1, 2))
    coords, _ = model.codec.decode((targets["target_x"], targets["target_y"]))
    assert (coords - keypoints).abs().max() <= 0.25


def test_presets_are_the_published_models():
    assert sorted(PRESETS) == [f"gtpt_{v}_{d}" for v in "bst" for d in ("coco", "wholebody")]
    assert {PRESETS[f"gtpt_{v}_coco"].dim for v in "tsb"} == {128, 192}
    assert PRESETS["gtpt_b_coco"].stem == "ushaped" and PRESETS["gtpt_s_coco"].stem == "shuffle"
    assert PRESETS["gtpt_t_coco"].num_keypoints == 17
    assert PRESETS["gtpt_t_wholebody"].num_keypoints == 133
    assert PRESETS["gtpt_t_wholebody"].dense_per_group == (68, 42, 6)
    for config in PRESETS.values():
        assert (config.image_size, config.patch_size, config.num_heads) == ((256, 192), (4, 3), 8)
    # a config is frozen and hashable; overrides go through dataclasses.replace
    with pytest.raises(AttributeError):
        PRESETS["gtpt_t_coco"].dim = 64
    model = build_gtpt(PRESETS["gtpt_t_coco"], image_size=(128, 96), keep_rates=[1.0] * 4)
    assert model.config == GTPTConfig(128, "shuffle", 128, (1.0,) * 4,
                                      PRESETS["gtpt_t_coco"].flip_pairs, image_size=(128, 96))


def test_keep_rate_curriculum():
    model = build_gtpt("gtpt_t_coco")
    schedule = keep_rate_schedule(model.config.keep_rates, "linear", 10, 100)
    model.keep_rates = schedule(0)
    assert model.keep_rates == (1.0, 1.0, 1.0, 1.0)
    model.keep_rates = schedule(55)
    assert model.keep_rates == pytest.approx((1.0, 0.85, 0.65, 0.55))
    model.keep_rates = schedule(100)
    assert model.keep_rates == (1.0, 0.7, 0.3, 0.1)
    assert keep_rate_schedule((1.0, 0.7, 0.3, 0.1))(0) == (1.0, 0.7, 0.3, 0.1)
    with pytest.raises(ValueError, match="kind must be"):
        keep_rate_schedule((1.0,) * 4, "step")


def test_bad_arguments_get_clear_errors():
    with pytest.raises(ValueError, match=r"config must be one of \['gtpt_b_coco'"):
        build_gtpt("gtpt_l_coco")
    with pytest.raises(TypeError, match="config must be a preset name or a GTPTConfig"):
        build_gtpt(17)
    with pytest.raises(ValueError, match=r"GTPTConfig has unknown fields \['dataset'\]; valid "
                                         r"fields: dim, "):  # fmt: skip
        build_gtpt("gtpt_t_coco", dataset="mpii")
    with pytest.raises(ValueError, match="keep_rates must have 4 entries"):
        build_gtpt("gtpt_t_coco", keep_rates=(1.0, 0.5))
    with pytest.raises(TypeError, match="keep_rates must be a sequence of 4 floats"):
        build_gtpt("gtpt_t_coco", keep_rates=0.5)
    with pytest.raises(ValueError, match="must not increase"):
        build_gtpt("gtpt_t_coco", keep_rates=(1.0, 0.5, 0.7, 0.1))
    with pytest.raises(ValueError, match=r"keep_rates\[1\] must be in"):
        build_gtpt("gtpt_t_coco", keep_rates=(1.0, 0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="fewer than the 68 dense keypoint tokens"):
        build_gtpt("gtpt_t_wholebody", keep_rates=(1.0, 0.7, 0.3, 0.1))
    with pytest.raises(ValueError, match="stem must be one of"):
        build_gtpt("gtpt_t_coco", stem="resnet")
    with pytest.raises(ValueError, match="height a multiple of 16"):
        build_gtpt("gtpt_t_coco", image_size=(250, 192))
    with pytest.raises(TypeError, match=r"image_size must be a \(height, width\) pair"):
        build_gtpt("gtpt_t_coco", image_size=256)
    with pytest.raises(ValueError, match=r"config section 'model' has unknown keys \['dataset', "
                                         r"'variant'\]; valid keys: preset, dim, "):  # fmt: skip
        make_task({"model": {"variant": "t", "dataset": "coco"}})
    with pytest.raises(ValueError, match=r"config section 'model' needs a 'preset'"):
        make_task({"model": {"dim": 128}})
    # a typo in the curriculum section: the same one-line error, every valid key listed
    with pytest.raises(ValueError, match=r"config section 'curriculum' has unknown keys "
                                         r"\['warmup'\]; valid keys: kind, warmup_epochs, "
                                         r"end_epoch$"):  # fmt: skip
        make_task({"model": {"preset": "gtpt_t_coco"}, "curriculum": {"warmup": 5}})
    task = make_task({"model": {"preset": "gtpt_t_coco"},
                      "curriculum": {"kind": "linear", "warmup_epochs": 5}})  # fmt: skip
    assert (task.curriculum, task.warmup_epochs, task.end_epoch) == ("linear", 5, 100)
    with pytest.raises(TypeError, match="config must be a GTPTConfig"):
        GTPT("gtpt_t_coco")
    model = build_gtpt("gtpt_t_coco").eval()
    with pytest.raises(ValueError, match=r"images must have shape \[B, 3, 256, 192\]"):
        model(torch.randn(1, 3, 224, 224))
    with pytest.raises(ValueError, match=r"images must have shape"):
        model(torch.randn(1, 1, 256, 192))
    with pytest.raises(ValueError, match="images must have 4 dimensions"):
        model(torch.randn(3, 256, 192))
    with pytest.raises(ValueError, match="must match the model's parameters"):
        model(torch.randn(1, *IMAGE, dtype=torch.float64))
    with pytest.raises(TypeError, match="images must be a floating-point tensor"):
        model(torch.zeros(1, *IMAGE, dtype=torch.uint8))


def test_is_assembled_from_tokenprune():
    from tokenprune import GroupTokenPruner, MultiHeadGroupAttention

    model = build_gtpt("gtpt_s_wholebody")
    assert isinstance(model, GTPT)
    attentions = [m for m in model.modules() if isinstance(m, MultiHeadGroupAttention)]
    assert len(attentions) == 12
    assert sum(isinstance(m, GroupTokenPruner) for m in model.modules()) == 3
    assert not [m for m in model.modules() if isinstance(m, torch.nn.MultiheadAttention)]


@pytest.mark.slow
def test_compiles(tmp_path):
    model = build_gtpt("gtpt_t_coco").eval()
    images = torch.randn(1, *IMAGE)
    with torch.no_grad():
        expected = model(images)
        got = torch.compile(model)(images)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_onnx_export_matches_pytorch(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="ONNX checks need the 'onnx' extra")
    from tokenprune_models.gtpt import export_onnx

    model = build_gtpt("gtpt_t_coco").eval()
    path = export_onnx(model, tmp_path / "gtpt.onnx")
    session = ort.InferenceSession(str(path))
    for batch in (1, 3):
        images = torch.randn(batch, *IMAGE)
        x_onnx, y_onnx = session.run(None, {"images": images.numpy()})
        with torch.no_grad():
            x_torch, y_torch = model(images)
        torch.testing.assert_close(torch.from_numpy(x_onnx), x_torch, atol=1e-4, rtol=0)
        torch.testing.assert_close(torch.from_numpy(y_onnx), y_torch, atol=1e-4, rtol=0)


def test_batchnorm_folding_keeps_outputs(official):
    from tokenprune_models.gtpt import fuse_batchnorm

    _, _, io, model = official
    fused = fuse_batchnorm(model)
    assert not [m for m in fused.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    images = torch.from_numpy(io["input"])
    with torch.no_grad():
        expected, got = model.forward_tokens(images), fused.forward_tokens(images)
    torch.testing.assert_close(got.x_logits, expected.x_logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(got.y_logits, expected.y_logits, atol=1e-4, rtol=0)
    assert torch.equal(got.kept_fine, expected.kept_fine)


def test_inference_optimisation_of_every_variant():
    from tokenprune_models.gtpt import fuse_batchnorm, optimize_for_inference

    torch.manual_seed(0)
    for variant in ("s", "b"):
        model = build_gtpt(f"gtpt_{variant}_coco").eval()
        for module in model.modules():  # non-trivial statistics
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        images = torch.randn(1, *IMAGE)
        with torch.no_grad():
            expected = model(images)
            for prepared in (fuse_batchnorm(model), optimize_for_inference(model)):
                for a, b in zip(prepared(images), expected, strict=True):
                    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_gtpt_b_stem_has_the_official_layout():
    # entries of the official GTPT-B stem (lib/models/pose_gtpt_b_human.py, ShuffleNetV2)
    stem = build_gtpt("gtpt_b_coco").stem
    shapes = {k: tuple(v.shape) for k, v in stem.state_dict().items()}
    assert shapes["conv1.0.weight"] == (64, 3, 3, 3)
    assert shapes["down_layer1.0.branch1.0.weight"] == (64, 1, 3, 3)
    assert shapes["down_layer2.0.branch2.0.weight"] == (192, 256, 1, 1)
    assert shapes["down_layer3.3.branch2.5.weight"] == (256, 256, 1, 1)
    assert shapes["upsample1.0.weight"] == (4 * 384, 512, 1, 1)
    assert shapes["upsample2.2.running_var"] == (256,)
    assert shapes["up_layer1.0.0.weight"] == (384, 768, 1, 1)
    assert shapes["up_layer2.2.branch2.3.weight"] == (128, 1, 3, 3)
    # the fuse convolution sees the skip connection first, then the upsampled map
    captured = {}
    stem.up_layer1.register_forward_hook(lambda m, args, out: captured.update(up_in=args[0]))
    stem.down_layer2.register_forward_hook(lambda m, args, out: captured.update(skip=out))
    stem.eval()(torch.randn(1, *IMAGE))
    assert torch.equal(captured["up_in"][:, :384], captured["skip"])


def test_config_checks_name_the_field():
    from dataclasses import replace

    from tokenprune_models.gtpt import PRESETS

    coco, wholebody = PRESETS["gtpt_t_coco"], PRESETS["gtpt_t_wholebody"]
    for base, fields, error, message in (
        (coco, {"group_parts": ((5,), (), ())}, ValueError, r"group_parts\[0\]"),
        (wholebody, {"group_parts": ((0,), (1,), (3, 4))}, ValueError,
         "each of the 5 parts of dense_per_part in exactly one group"),
        (coco, {"dim": "a"}, TypeError, "dim must be an int"),
        (coco, {"dim": 100}, ValueError, "dim must be a multiple of num_heads"),
        (coco, {"flip_pairs": ((0, 40),)}, ValueError, r"flip_pairs\[0\]\[1\] must be <= 16"),
        (coco, {"flip_pairs": ((0, 1, 2),)}, ValueError, r"flip_pairs\[0\] must be a \(left"),
        (wholebody, {"output_groups": (0, 0, 1)}, ValueError, "output_groups must order"),
        (coco, {"mlp_ratio": -1.0}, ValueError, "mlp_ratio must be > 0"),
    ):  # fmt: skip
        with pytest.raises(error, match=message):
            replace(base, **fields)
