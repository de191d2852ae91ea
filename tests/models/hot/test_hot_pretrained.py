"""Shipped MixSTE / HoT weights: the release command that writes them, their loader, the
shipped files themselves, and the demo that evaluates them.

The accuracy of the shipped weights is measured by ``python -m tokenprune_models.hot.demo``
(README); here a cheap check on a few sequences of another seed."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch

from tokenprune_models import registry
from tokenprune_models.common.engine import load_config
from tokenprune_models.common.release import save_half_precision, training_seconds
from tokenprune_models.hot.demo import CONFIGS_DIR, mean_pose_baseline
from tokenprune_models.hot.demo import main as demo_main
from tokenprune_models.hot.evaluation import evaluate
from tokenprune_models.hot.model import MixSTE, MixSTEConfig
from tokenprune_models.hot.pretrained import PRETRAINED, load_pretrained, read_record, record_config
from tokenprune_models.hot.release import release
from tokenprune_models.hot.train import FAMILY, build_trainer, make_task
from tokenprune_models.pose3d.h36m import load_split
from tokenprune_models.pose3d.synthetic import write_dataset


@pytest.fixture(scope="module")
def motion(tmp_path_factory):
    """Another seed than the shipped weights' data: subjects, cameras and motions unseen."""
    root = tmp_path_factory.mktemp("motion")
    write_dataset(root, frames=60, seed=7, actions=("Walking", "Squatting"))
    train = load_split(root, "train", "synthetic", "noisy")
    test = load_split(root, "test", "synthetic", "noisy")
    return root, train, [s for s in test if s.camera in (0, 2)]


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setitem(registry.WEIGHTS_DIRS, "hot", folder)
    return folder


def short_run(motion, output, *overrides):
    """Three steps of the shipped HoT's training config (``overrides``: ``--set`` items)."""
    settings = ["train.batch_size=4", "train.epochs=1", "train.max_steps=3", "train.log_every=1",
                "train.progress=false", *overrides]  # fmt: skip
    config = load_config(CONFIGS_DIR / "synthetic_hot.yaml", settings, FAMILY.sections)
    trainer = build_trainer(make_task(config), config, motion[0], output)
    trainer.fit()
    return trainer


def test_release_ships_the_final_weights_in_half_precision(motion, tmp_path, weights_dir):
    trainer = short_run(motion, tmp_path / "run")
    record = release("hot_mixste_synthetic", tmp_path / "run", data=motion[0])
    entry = PRETRAINED["hot_mixste_synthetic"]
    assert entry.path.parent == weights_dir
    stored = torch.load(entry.path, weights_only=True)
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    model = load_pretrained("hot_mixste_synthetic")
    assert not model.training and model.config.num_kept == 9 and model.config.prune_loop == 1
    for (name, ours), theirs in zip(model.state_dict().items(),
                                    trainer.model.state_dict().values(), strict=True):  # fmt: skip
        assert ours.dtype == theirs.dtype, name
        torch.testing.assert_close(ours, theirs.half().to(theirs.dtype), rtol=0, atol=0)
    # 3 steps: inside the first epoch, none completed
    assert record["steps"] == 3 and record["epochs"] == 0 and record["seed"] == 1126
    assert record["config"]["model"] == asdict(entry.model_config())
    assert record["config"]["train"]["max_steps"] == 3
    assert record["last_evaluation"]["step"] == 3 and record["last_evaluation"]["MPJPE"] > 0
    assert record["training_seconds"] > 0 and record["data"] == motion[0].as_posix()
    assert json.loads(entry.record_path.read_text()) == record
    assert (weights_dir / record["curve"]).read_bytes()[:4] == b"\x89PNG"


def test_release_rejects_a_run_of_another_model(motion, tmp_path, weights_dir):
    short_run(motion, tmp_path / "run", "model.dim=16")
    with pytest.raises(ValueError, match=r"trained \{'dim': 16\}, the entry .* is \{'dim': 64\}"):
        release("hot_mixste_synthetic", tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="not a training output folder"):
        release("hot_mixste_synthetic", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="must be one of"):
        release("hot", tmp_path / "run")
    assert not list(weights_dir.iterdir())  # nothing written


def test_load_pretrained_names_what_is_wrong(weights_dir):
    with pytest.raises(ValueError, match="hot_mixste_synthetic"):
        load_pretrained("hot_mixste")
    with pytest.raises(FileNotFoundError, match=r"hot_mixste_synthetic_27f\.pt"):
        load_pretrained("hot_mixste_synthetic")
    wrong = MixSTE(PRETRAINED["mixste_synthetic"].model_config()).state_dict()
    save_half_precision(wrong, PRETRAINED["hot_mixste_synthetic"].path)  # no recovery entries
    with pytest.raises(ValueError, match=r"missing.*recovery"):
        load_pretrained("hot_mixste_synthetic")


def test_training_seconds_leave_out_pauses(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    times = [0, 10, 20, 30, 5000, 5010]  # a pause between 30 and 5000 (resumed later)
    records = [{"step": i, "loss": 1.0, "time": t} for i, t in enumerate(times)]
    records.insert(2, {"step": 2, "MPJPE": 90.0, "time": 25})  # evaluations do not count
    metrics.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert training_seconds(metrics) == 40.0
    with pytest.raises(TypeError, match="'step' is a int"):
        save_half_precision({"step": 3}, tmp_path / "w.pt")


def test_every_shipped_entry_has_its_files():
    for entry in PRETRAINED.values():
        for path in (entry.path, entry.card_path, entry.record_path):
            assert path.is_file(), path
        record, network = read_record(entry.name)
        assert (entry.path.parent / record["curve"]).is_file()
        assert entry.path.stat().st_size < 10 * 2**20  # weights only, half precision
        # the shipped records predate the engine (variant and flat sizes, "frames"): translated
        assert "variant" in record["config"] and network == entry.model_config()


def test_records_of_both_layouts_name_the_network():
    entry = PRETRAINED["hot_mixste_synthetic"]
    new = {"config": {"model": asdict(entry.model_config()), "train": {"seed": 0}}}
    assert record_config(new) == entry.model_config()  # tokenprune_models.hot.release's layout
    old = {"config": {"variant": "tpc", "frames": 27, "dim": 64, "num_kept": 9, "prune_loop": 7}}
    assert record_config(old) == MixSTEConfig(num_frames=27, dim=64, num_kept=9, prune_loop=7,
                                              recover=False)  # fmt: skip
    with pytest.raises(ValueError, match=r"config\.model or config\.variant"):
        record_config({"config": {"variant": "hourglass"}})


def test_shipped_weights_are_far_below_the_mean_pose_on_unseen_subjects(motion):
    _, train, test = motion
    chance = mean_pose_baseline(train, test)["MPJPE"]
    for name in PRETRAINED:
        error = evaluate(load_pretrained(name), test)["MPJPE"]
        assert error < 0.5 * chance, (name, error, chance)


@pytest.mark.parametrize("mode", [[], ["--from-scratch"]])
def test_demo_quick(tmp_path, mode):
    assert demo_main(["--quick", *mode, "--data", str(tmp_path / "data"),
                      "--output", str(tmp_path / "out")]) == 0  # fmt: skip
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| HoT w. MixSTE | 27 -> 9 after loop 1 |" in table
    assert "| mean training pose |" in table
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["chance"]["MPJPE"] > 0
    assert [r["name"] for r in results["rows"]] == ["MixSTE", "HoT w. MixSTE"]
    for row in results["rows"]:
        assert row["MPJPE"] > 0 and row["gflops"] > 0 and row["latency_ms"] > 0
        if mode:
            assert row["checkpoint"] is None and row["steps"] == 2
        else:
            assert row["checkpoint"].endswith("_27f.pt") and row["steps"] > 1000
    assert results["rows"][1]["gflops"] < results["rows"][0]["gflops"]
    assert results["finetune"]["steps"] == 2 and "fine-tune" in table
