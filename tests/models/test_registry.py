"""The model registry: every name, its network, and the one checkpoint filter per family that
create_model loads weights through (ours, shipped and official)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

import tokenprune_models
from tests.oracles.fixtures import load_fixture
from tokenprune_models import create_model, list_models, model_entry
from tokenprune_models.common.checkpoint import save_checkpoint
from tokenprune_models.common.presets import config_from_section
from tokenprune_models.dppt import PRESETS as DPPT
from tokenprune_models.gtpt import GTPT, build_gtpt
from tokenprune_models.gtpt import PRESETS as GTPT_PRESETS
from tokenprune_models.gtpt import load_official_checkpoint as gtpt_official
from tokenprune_models.gtpt.pretrained import load_pretrained as gtpt_pretrained
from tokenprune_models.hevitpose import PRESETS as HEVITPOSE
from tokenprune_models.hot import PRESETS as HOT
from tokenprune_models.hot import MixSTE, build_hot_mixste
from tokenprune_models.hot import load_official_checkpoint as hot_official
from tokenprune_models.hot.pretrained import load_pretrained as hot_pretrained
from tokenprune_models.registry import FAMILIES, MODELS
from tokenprune_models.tokenpose import PRESETS as TOKENPOSE
from tokenprune_models.tokenpose import TokenPose, build_tokenpose
from tokenprune_models.tokenpose import load_official_checkpoint as tokenpose_official

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ["gtpt_t_synthetic", "hot_mixste_synthetic", "mixste_synthetic"]
#: MixSTE / HoT at the size of the official fixture and the shipped weights
SMALL_HOT = {"num_frames": 27, "dim": 64, "num_kept": 9, "prune_loop": 1}


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        torch.testing.assert_close(sa[name], sb[name], rtol=0, atol=0, msg=name)


def test_every_preset_of_every_family_has_a_name():
    expected = {*GTPT_PRESETS, *TOKENPOSE, *DPPT, *HEVITPOSE, "mixste", "hot_mixste",
                "tpc_mixste", *SHIPPED}  # fmt: skip
    assert set(list_models()) == expected == set(MODELS)
    assert list_models() == sorted(expected)
    assert {"gtpt_t_coco", "gtpt_b_wholebody", "ppt_b", "dppt_s", "hevitpose_t"} <= expected
    assert list_models(pretrained=True) == SHIPPED
    assert list_models("gtpt_*", pretrained=True) == ["gtpt_t_synthetic"]
    assert list_models("ppt_?") == ["ppt_b", "ppt_s"]
    assert list_models("nothing*") == []


def test_a_preset_name_is_the_family_preset():
    for presets in (GTPT_PRESETS, TOKENPOSE, DPPT, HEVITPOSE, HOT):
        for name, config in presets.items():
            assert model_entry(name).model_config() == config, name
    # DPPT's students are the PPT presets themselves, mapped by name (one definition)
    assert {name: model_entry(name).base for name in DPPT} == {"dppt_s": "ppt_s", "dppt_b": "ppt_b"}
    assert set(FAMILIES["tokenpose"].presets) == set(TOKENPOSE)
    assert not any(model_entry(name).pretrained for name in list_models() if name not in SHIPPED)


def test_the_shipped_networks_are_those_of_their_training_configs():
    for name in SHIPPED:
        entry = model_entry(name)
        section = yaml.safe_load(entry.config_path.read_text())["model"]
        trained, _ = config_from_section(section, GTPT_PRESETS if entry.family == "gtpt" else HOT)
        assert entry.model_config() == trained, name
        assert entry.path.is_file() and entry.card_path.is_file() and entry.record_path.is_file()


def test_create_model_builds_the_family_network_in_train_mode():
    model = create_model("gtpt_t_coco", keep_rates=[1.0] * 4, image_size=(128, 96))
    assert isinstance(model, GTPT) and model.training
    assert model.config == build_gtpt("gtpt_t_coco", keep_rates=[1.0] * 4,
                                      image_size=(128, 96)).config  # fmt: skip
    ppt = create_model("dppt_s", backend="torch", image_size=(128, 96))  # backend: no field
    assert isinstance(ppt, TokenPose) and ppt.config == replace(DPPT["dppt_s"],
                                                                image_size=(128, 96))
    hot = create_model("hot_mixste", **SMALL_HOT)
    assert isinstance(hot, MixSTE)
    assert hot.config == build_hot_mixste("hot_mixste", **SMALL_HOT).config
    assert type(create_model("hevitpose_t")).__name__ == "HEViTPose"


def test_pretrained_loads_the_shipped_weights():
    torch.manual_seed(0)
    model = create_model("gtpt_t_synthetic", pretrained=True)
    assert not model.training and all(p.dtype == torch.float32 for p in model.parameters())
    _same_weights(model, gtpt_pretrained("gtpt_t_synthetic"))
    unpruned = create_model("gtpt_t_synthetic", pretrained=True, keep_rates=[1.0] * 4)
    assert unpruned.keep_rates == (1.0,) * 4
    _same_weights(unpruned, model)
    hot = create_model("hot_mixste_synthetic", pretrained=True)
    _same_weights(hot, hot_pretrained("hot_mixste_synthetic"))
    x = torch.randn(1, 27, 17, 2)
    with torch.no_grad():
        assert hot(x).poses.shape == (1, 27, 17, 3)


def test_checkpoints_of_ours_load_whatever_their_wrapping(tmp_path):
    torch.manual_seed(0)
    trained = build_tokenpose("ppt_s", backend="torch", image_size=(128, 96))
    other = build_tokenpose("ppt_s", backend="torch", image_size=(128, 96))
    bare, wrapped, run = tmp_path / "bare.pt", tmp_path / "wrapped.pt", tmp_path / "last.pt"
    torch.save(trained.state_dict(), bare)
    torch.save({"state_dict": {f"module.{k}": v for k, v in trained.state_dict().items()}},
               wrapped)  # fmt: skip
    # a training checkpoint of the engine: the weights its evaluation used (here the EMA)
    save_checkpoint({"model": other.state_dict(), "ema": trained.state_dict(),
                     "eval_weights": "ema", "position": {"global_step": 3}}, run)  # fmt: skip
    for path in (bare, str(wrapped), run):
        model = create_model("ppt_s", checkpoint=path, backend="torch", image_size=(128, 96))
        assert not model.training
        _same_weights(model, trained)


def test_gtpt_checkpoints_of_another_input_size_get_their_simcc_bins_resized(tmp_path):
    path = tmp_path / "small.pt"
    torch.save(build_gtpt("gtpt_t_coco", image_size=(64, 48)).state_dict(), path)
    model = create_model("gtpt_t_coco", checkpoint=path, image_size=(128, 96))
    assert model.head.x[1].out_features == 96 * 2  # split ratio 2
    with pytest.raises(ValueError, match=r"small\.pt.* does not fit the model: 1 missing: "
                                         r"'head\.x\.1\.bias'"):  # fmt: skip
        state = build_gtpt("gtpt_t_coco", image_size=(64, 48)).state_dict()
        del state["head.x.1.bias"]
        torch.save(state, path)
        create_model("gtpt_t_coco", checkpoint=path)


def test_official_checkpoints_load_as_the_family_loaders_load_them(tmp_path):
    cases = [
        ("gtpt_t_coco", {}, lambda p: gtpt_official(p, "gtpt_t_coco")),
        ("ppt_s", {"backend": "torch"},
         lambda p: tokenpose_official(p, build_tokenpose("ppt_s", backend="torch"))),
        ("hot_mixste", SMALL_HOT, lambda p: hot_official(p, "hot_mixste", **SMALL_HOT)),
    ]  # fmt: skip
    fixtures = {"gtpt_t_coco": "gtpt_t_coco", "ppt_s": "ppt_s_coco",
                "hot_mixste": "hot_mixste_small"}  # fmt: skip
    for name, overrides, family_loader in cases:
        state_dict, _ = load_fixture(fixtures[name])
        path = tmp_path / f"{name}.pth"
        torch.save({"state_dict": state_dict}, path)
        model = create_model(name, official_checkpoint=path, **overrides)
        assert not model.training
        _same_weights(model, family_loader(path))
        with pytest.raises(ValueError, match=rf"{name}\.pth.* does not fit the model"):
            create_model(name, checkpoint=path, **overrides)  # not ours: named, not loaded


def test_errors_name_the_argument(tmp_path):
    with pytest.raises(ValueError, match=r"unknown model name 'gtpt_t_cocoo'; did you mean "
                                         r"'gtpt_t_coco'.*tokenpose_s"):  # fmt: skip
        create_model("gtpt_t_cocoo")
    with pytest.raises(ValueError, match=r"GTPTConfig has unknown fields \['keep_rate'\]; valid "
                                         r"fields: dim, stem, .*keep_rates, "):  # fmt: skip
        create_model("gtpt_t_coco", keep_rate=0.5)
    with pytest.raises(ValueError, match=r"MixSTEConfig has unknown fields \['backend'\]"):
        create_model("mixste", backend="torch")
    with pytest.raises(ValueError, match="at most one source of weights, got pretrained and "
                                         "official_checkpoint"):  # fmt: skip
        create_model("gtpt_t_synthetic", pretrained=True, official_checkpoint="x.pth")
    with pytest.raises(ValueError, match=r"no weights are shipped for 'ppt_s'.*gtpt_t_synthetic"):
        create_model("ppt_s", pretrained=True)
    with pytest.raises(TypeError, match="pretrained must be a bool, got str"):
        create_model("gtpt_t_synthetic", pretrained="yes")
    with pytest.raises(TypeError, match="checkpoint must be a file path, got dict"):
        create_model("gtpt_t_coco", checkpoint={})
    with pytest.raises(TypeError, match="name must be a model name"):
        model_entry(GTPT_PRESETS["gtpt_t_coco"])
    with pytest.raises(FileNotFoundError, match=r"missing\.pt"):
        create_model("gtpt_t_coco", checkpoint=tmp_path / "missing.pt")
    path, saved = tmp_path / "hevitpose.pt", create_model("hevitpose_t")
    torch.save(saved.state_dict(), path)
    with pytest.raises(ValueError, match="HEViTPose has no official checkpoints"):
        create_model("hevitpose_t", official_checkpoint=path)
    _same_weights(create_model("hevitpose_t", checkpoint=path), saved)
    with pytest.raises(ValueError, match="names no training config"):
        _ = model_entry("ppt_s").config_path


def test_every_family_has_one_checkpoint_filter():
    for family in FAMILIES.values():
        module = sys.modules[family.checkpoint_filter.__module__]
        assert module.__name__.startswith(f"tokenprune_models.{family.name}.")
        assert family.checkpoint_filter.__name__ == "checkpoint_filter"


def test_the_zoo_is_imported_under_one_name():
    """tokenprune_models is the checkout's models/ folder (the editable install maps it), and no
    module of the folder is imported a second time as models.* (its classes would differ)."""
    assert Path(tokenprune_models.__file__).resolve() == ROOT / "models" / "__init__.py"
    twice = [name for name, module in sys.modules.items()
             if (name == "models" or name.startswith("models."))
             and str(getattr(module, "__file__", "") or "").startswith(str(ROOT / "models"))]
    assert twice == []  # fmt: skip
