"""The shared training engine and CLI with the 2-D pose task (GTPT): exact resume,
interruption, DDP, checkpoints, evaluation, config errors. The 3-D lifting task:
``test_hot_training.py``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.oracles.fixtures import load_fixture
from tokenprune_models.common.engine import load_training_checkpoint
from tokenprune_models.gtpt.train import build_trainer, main
from tokenprune_models.pose.cli import load_config

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "models" / "gtpt" / "configs" / "synthetic_demo.yaml"
TINY = [
    "model.image_size=[64, 48]", "train.epochs=2", "train.batch_size=4", "train.workers=0",
    "train.milestones=[1]", "train.flip_test=false", "train.progress=false", "train.log_every=1",
    "train.eval_every=1", "train.ema=true", "train.max_steps=null", "train.warmup_steps=2",
]  # fmt: skip


@pytest.fixture(scope="module")
def data(synthetic_pose_data):
    return synthetic_pose_data  # tests/conftest.py


def _trainer(data, output, extra=()):
    config = load_config(CONFIG, [*TINY, *extra])
    return build_trainer(config, data, output)


def _weights(trainer):
    ema = {f"ema.{k}": v for k, v in trainer.ema.state_dict().items()}
    return {**trainer.model.state_dict(), **ema}


def test_resumed_run_equals_uninterrupted_run(data, tmp_path):
    torch.set_num_threads(1)
    full = _trainer(data, tmp_path / "full")
    full.fit()
    interrupted = _trainer(data, tmp_path / "part")
    original_step = interrupted._step
    steps = []

    def step_then_stop(batch):  # behave as if SIGTERM arrived during the third step
        loss = original_step(batch)
        steps.append(loss)
        if len(steps) == 3:
            interrupted._stop_signal = signal.SIGTERM
        return loss

    interrupted._step = step_then_stop
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        interrupted.fit()
    saved = load_training_checkpoint(tmp_path / "part" / "last.pt")
    assert saved["position"]["global_step"] == 3 and saved["position"]["step_in_epoch"] > 0
    resumed = _trainer(data, tmp_path / "part")
    resumed.resume(tmp_path / "part" / "last.pt")
    resumed.fit()
    expected, got = _weights(full), _weights(resumed)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert resumed.position.global_step == full.position.global_step


def test_checkpoints_metrics_and_eval_only(data, tmp_path):
    output = tmp_path / "run"
    config = load_config(CONFIG, TINY)
    trainer = build_trainer(config, data, output)
    metrics = trainer.fit()
    assert set(metrics) >= {"AP", "AR"} and 0.0 <= metrics["AP"] <= 1.0
    assert (output / "last.pt").is_file() and (output / "best.pt").is_file()
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in records) and any("eval_epoch" in r for r in records)
    argv = ["--config", str(CONFIG), "--data", str(data), "--output", str(output / "eval"),
            "--eval-only", "--checkpoint", str(output / "best.pt")]  # fmt: skip
    for item in TINY:
        argv += ["--set", item]
    assert main(argv) == 0
    results = json.loads((output / "eval" / "results.json").read_text())
    assert len(results) == len(trainer.val_set) and len(results[0]["keypoints"]) == 17 * 3


def test_eval_only_with_an_official_checkpoint(data, tmp_path):
    state_dict, _ = load_fixture("gtpt_t_coco")
    path = tmp_path / "official.pth"
    torch.save(state_dict, path)
    argv = ["--config", str(CONFIG), "--data", str(data), "--output", str(tmp_path / "eval"),
            "--eval-only", "--official-checkpoint", str(path),
            "--set", "model.image_size=[256, 192]", "--set", "train.flip_test=false",
            "--set", "train.workers=0"]  # fmt: skip
    assert main(argv) == 0
    assert (tmp_path / "eval" / "results.json").is_file()


def test_corrupt_checkpoints_get_clear_errors(data, tmp_path):
    trainer = _trainer(data, tmp_path / "run")
    trainer.save()
    good = (tmp_path / "run" / "last.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=r"truncated\.pt.* weights-only"):
        trainer.resume(truncated)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(1)}, other)
    with pytest.raises(ValueError, match="not a training checkpoint"):
        trainer.resume(other)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        trainer.resume(tmp_path / "missing.pt")


def test_bad_configuration_errors(data, tmp_path):
    config = load_config(CONFIG, TINY)
    with pytest.raises(FileNotFoundError, match=r"data folder .*nowhere"):
        build_trainer(config, tmp_path / "nowhere", tmp_path / "out")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed")
    with pytest.raises(ValueError, match=r"broken\.yaml.* not valid YAML"):
        load_config(broken)
    with pytest.raises(ValueError, match=r"section\.key=value"):
        load_config(CONFIG, ["epochs=3"])
    for override, section in (("train.epoch=3", "train"), ("data.val_images_dir=x", "data"),
                              ("augmentation.rotate=0", "augmentation")):  # fmt: skip
        key = override.split(".")[1].split("=")[0]
        with pytest.raises(ValueError, match=rf"^config section '{section}' has unknown keys "
                                             rf"\['{key}'\]; valid keys: \w+, "):  # fmt: skip
            build_trainer(load_config(CONFIG, [*TINY, override]), data, tmp_path / "out")
    with pytest.raises(ValueError, match=r"valid keys: .*\bmilestones, warmup_steps$"):
        build_trainer(load_config(CONFIG, [*TINY, "train.warmup=2"]), data, tmp_path / "out")


def _cli(data, output, *extra, epochs=40):
    args = [sys.executable, "-m", "tokenprune_models.gtpt.train", "--config", str(CONFIG), "--data",
            str(data), "--output", str(output)]  # fmt: skip
    for item in [*TINY, f"train.epochs={epochs}"]:
        args += ["--set", item]
    return args + list(extra)


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_that_resumes(data, tmp_path):
    output = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(_cli(data, output), cwd=ROOT, env=env, stderr=subprocess.PIPE,
                               text=True)  # fmt: skip
    metrics = output / "metrics.jsonl"
    deadline = time.time() + 120

    def steps_logged() -> int:
        return len(metrics.read_text().splitlines()) if metrics.is_file() else 0

    while time.time() < deadline and steps_logged() < 2:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "stopped by SIGTERM" in stderr
    state = load_training_checkpoint(output / "last.pt")
    stopped_at = state["position"]["global_step"]
    assert stopped_at >= 2
    args = _cli(data, output, "--resume", str(output / "last.pt"), "--set", "train.epochs=3")
    resumed = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    final = load_training_checkpoint(output / "last.pt")
    assert final["position"]["global_step"] >= stopped_at and final["position"]["epoch"] == 3


@pytest.mark.slow
def test_two_process_ddp_on_gloo(data, tmp_path):
    output = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", str(29500 + os.getpid() % 1000)]  # fmt: skip
    args = launcher + _cli(data, output, epochs=1)[1:]
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    state = load_training_checkpoint(output / "last.pt")
    # each of the 2 processes sees half the training people per epoch
    people = len(_trainer(data, tmp_path / "probe").train_set)
    assert state["position"]["global_step"] == (people + 1) // 2 // 4
    assert np.isfinite(json.loads(result.stdout[result.stdout.index("{") :])["AP"])
