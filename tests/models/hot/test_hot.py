"""HoT on MixSTE: official-output equivalence, published sizes, pruning and recovery."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from tests.oracles.fixtures import fixture_dir, load_fixture
from tokenprune.flops.paper import paper_macs
from tokenprune.temporal import TokenPruningCluster, density_peaks
from tokenprune_models.hot import (
    PRESETS,
    MixSTEConfig,
    build_hot_mixste,
    convert_official_state_dict,
)

SMALL = {"num_frames": 27, "dim": 64, "num_kept": 9, "prune_loop": 1}


def small_official_model():
    state_dict, io = load_fixture("hot_mixste_small")
    model = build_hot_mixste("hot_mixste", **SMALL, tie_break="none").eval()
    model.load_state_dict(convert_official_state_dict(state_dict), strict=True)
    return model, {k: torch.from_numpy(v) for k, v in io.items()}


def test_official_clustering_is_reproduced_to_the_last_bit():
    _, io = small_official_model()
    features = io["dbg_tpc_input"]
    peaks = density_peaks(features, k=2, tie_break="none")
    # float32 exp and distances may differ by one unit in the last place between CPUs (vector
    # widths): the densities (< 1) agree to one unit, the scores (density x distance) to two,
    # and the kept frames exactly
    eps = torch.finfo(torch.float32).eps
    torch.testing.assert_close(peaks.density, io["dbg_tpc_density"], rtol=0, atol=eps / 2)
    torch.testing.assert_close(peaks.score, io["dbg_tpc_score"], rtol=eps, atol=0)
    kept = TokenPruningCluster(9, tie_break="none").select(features)
    assert torch.equal(kept, io["kept_frames"])


def test_official_outputs_are_reproduced():
    # the official selection is decided by ties broken at the last bit of the pooled features
    # (see the fixture's meta file): the network around it is compared with the official kept
    # frames given, and the features it pools against the official ones
    model, io = small_official_model()
    pooled = []
    hook = model.cluster.register_forward_hook(lambda m, args, out: pooled.append(args[0]))
    with torch.no_grad():
        out = model(io["input"], kept_idx=io["kept_frames"])
    hook.remove()
    torch.testing.assert_close(pooled[0].mean(dim=2), io["dbg_tpc_input"], rtol=0, atol=1e-5)
    assert torch.equal(out.kept_idx, io["kept_frames"])
    torch.testing.assert_close(out.poses, io["out_pose3d"], rtol=0, atol=1e-5)


def test_parameter_count_matches_the_official_small_model():
    model, _ = small_official_model()
    meta = json.loads((fixture_dir() / "hot_mixste_small.meta.json").read_text())
    assert sum(p.numel() for p in model.parameters()) == meta["params"]["total"]


def test_published_sizes():
    """Parameters as the official constructors give them and thop-convention FLOPs
    (multiply-adds x 2, attention products not counted) within 3% of the published 278 G /
    168 G at 243 frames."""
    published = {"mixste": (33_783_811, 278e9), "hot_mixste": (35_000_323, 168e9)}
    for preset, (params, flops) in published.items():
        model = build_hot_mixste(preset).eval()
        assert sum(p.numel() for p in model.parameters()) == params
        counted = 2 * paper_macs(model, (torch.randn(1, 243, 17, 2),)).total
        assert abs(counted / flops - 1) < 0.03, (preset, counted)


def test_seq2frame_keeps_the_centre_and_returns_the_kept_frames():
    torch.manual_seed(0)
    model = build_hot_mixste("tpc_mixste", num_frames=15, dim=32, num_kept=5, prune_loop=2).eval()
    clip = torch.randn(2, 15, 17, 2)
    out = model(clip)
    assert out.poses.shape == (2, 5, 17, 3)
    assert (out.kept_idx == 7).any(dim=1).all()
    # the flip test reuses the unflipped clip's frames
    again = model(clip.flip(-1), kept_idx=out.kept_idx)
    assert torch.equal(again.kept_idx, out.kept_idx)


def test_seq2seq_recovers_every_frame_and_trains_end_to_end():
    torch.manual_seed(0)
    model = build_hot_mixste("hot_mixste", num_frames=12, dim=32, num_kept=4, prune_loop=2).train()
    for param in (model.temporal_pos, model.spatial_pos, model.slot_pos, model.recovery.queries):
        torch.nn.init.normal_(param, std=0.1)  # zero-initialised in HoT, as here
    out = model(torch.randn(2, 12, 17, 2))
    assert out.poses.shape == (2, 12, 17, 3) and out.kept_idx.shape == (2, 4)
    out.poses.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def test_unpruned_mixste_has_no_pruning_parts():
    model = build_hot_mixste("mixste", num_frames=9, dim=16, num_heads=2, depth=2)
    assert model.cluster is None and model.recovery is None and model.slot_pos is None
    out = model(torch.randn(1, 9, 17, 2))
    assert out.poses.shape == (1, 9, 17, 3) and out.kept_idx is None


def test_configs_and_bad_input():
    assert PRESETS["hot_mixste"].prune_loop == 3 and PRESETS["hot_mixste"].num_kept == 81
    assert PRESETS["tpc_mixste"].prune_loop == 7 and PRESETS["tpc_mixste"].num_kept == 61
    assert not PRESETS["tpc_mixste"].recover and PRESETS["mixste"].prune_loop is None
    with pytest.raises(ValueError, match=r"config must be one of \['hot_mixste', 'mixste', "
                                         r"'tpc_mixste'\], got 'hourglass'"):  # fmt: skip
        build_hot_mixste("hourglass")
    with pytest.raises(ValueError, match="prune_loop and num_kept"):
        build_hot_mixste("mixste", prune_loop=2)
    with pytest.raises(ValueError, match="prune_loop must be in"):
        build_hot_mixste("hot_mixste", prune_loop=0)
    with pytest.raises(ValueError, match="num_kept must be in"):
        build_hot_mixste("hot_mixste", num_frames=27, num_kept=30)
    with pytest.raises(ValueError, match="divisible"):
        build_hot_mixste("mixste", dim=30)
    with pytest.raises(ValueError, match=r"MixSTEConfig has unknown fields \['frames'\]; valid "
                                         r"fields: num_frames, "):  # fmt: skip
        build_hot_mixste("hot_mixste", frames=27)
    assert build_hot_mixste("tpc_mixste", dim=64).config == replace(PRESETS["tpc_mixste"], dim=64)
    assert build_hot_mixste(PRESETS["mixste"], dim=64).config == MixSTEConfig(dim=64)
    model = build_hot_mixste("mixste", num_frames=9, dim=16, num_heads=2, depth=2)
    with pytest.raises(ValueError, match=r"keypoints must be \[B, T=9, J=17, 2\]"):
        model(torch.randn(1, 10, 17, 2))
    with pytest.raises(TypeError, match="floating"):
        model(torch.ones(1, 9, 17, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="official MixSTE/HoT layout"):
        convert_official_state_dict({"backbone.weight": torch.zeros(1)})
    with pytest.raises(TypeError, match="mapping"):
        convert_official_state_dict([("x_token", torch.zeros(1))])


def test_config_checks_name_the_field():
    for fields, error, message in (
        ({"dim": "a"}, TypeError, "dim must be an int"),
        ({"num_frames": 0}, ValueError, "num_frames must be >= 1"),
        ({"prune_loop": "3", "num_kept": 9}, TypeError, "prune_loop must be an int"),
        ({"prune_loop": 1, "num_kept": 2.5}, TypeError, "num_kept must be an int"),
        ({"mlp_ratio": 0}, ValueError, "mlp_ratio must be > 0"),
        ({"drop_path_rate": 1.5}, ValueError, "drop_path_rate must be in"),
        ({"recover": "yes"}, TypeError, "recover must be a bool"),
        ({"tie_break": "first"}, ValueError, "tie_break must be one of"),
    ):
        with pytest.raises(error, match=message):
            MixSTEConfig(**fields)
