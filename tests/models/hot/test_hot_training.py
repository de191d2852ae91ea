"""HoT's loss, evaluation and training as the 3-D lifting task of the shared engine (exact
mid-epoch resume, the recipe, seq2frame, the command line).

The engine's checkpoint checks: ``test_silent_data.py``; the 2-D task: ``test_pose_training.py``;
the shipped weights and the demo: ``test_hot_pretrained.py``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tokenprune_models.common import engine
from tokenprune_models.common.engine import Trainer, load_config, load_training_checkpoint
from tokenprune_models.hot.build import build_hot_mixste
from tokenprune_models.hot.evaluation import evaluate, predict_sequence
from tokenprune_models.hot.loss import H36M_JOINT_WEIGHTS, lifting_loss
from tokenprune_models.hot.train import (
    FAMILY,
    LiftingTask,
    LiftingTrainConfig,
    build_trainer,
    main,
    make_task,
)  # fmt: skip
from tokenprune_models.pose3d.synthetic import write_dataset

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "models" / "hot" / "configs" / "synthetic_hot.yaml"
TINY = [
    "model.num_frames=9", "model.dim=16", "model.num_kept=3", "train.epochs=1",
    "train.batch_size=8", "train.workers=0", "train.progress=false", "train.log_every=1",
]  # fmt: skip


@pytest.fixture(scope="module")
def motion(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion")
    write_dataset(root, frames=12, seed=3, actions=("Walking", "Waving"))
    return root


def _trainer(root: Path, output: Path, *extra: str) -> Trainer:
    config = load_config(CONFIG, [*TINY, *extra], FAMILY.sections)
    return build_trainer(make_task(config), config, root, output)


def test_lifting_loss_by_hand():
    pred = torch.zeros(1, 2, 17, 3)
    target = torch.zeros(1, 2, 17, 3)
    target[0, 1, 12, 0] = 0.3  # joint 12 (weight 4) off by 0.3 in frame 1
    pred[0, 1, 3, 1] = 0.2  # joint 3 (weight 2.5) moves by 0.2 between the frames
    terms = lifting_loss(pred, target)
    assert H36M_JOINT_WEIGHTS[12] == 4 and H36M_JOINT_WEIGHTS[3] == 2.5
    want_mpjpe = (4 * 0.3 + 2.5 * 0.2) / 34
    want_consistency = 2.5 * 0.2**2 / (17 * 3)
    # one step: joint 3's predicted velocity 0.2, joint 12's target velocity 0.3
    want_velocity = (0.2 + 0.3) / 17
    torch.testing.assert_close(terms.weighted_mpjpe, torch.tensor(want_mpjpe))
    torch.testing.assert_close(terms.temporal_consistency, torch.tensor(want_consistency))
    torch.testing.assert_close(terms.velocity, torch.tensor(want_velocity))
    total = want_mpjpe + 0.5 * want_consistency + 2.0 * want_velocity
    torch.testing.assert_close(terms.total, torch.tensor(total))
    single = lifting_loss(pred[:, :1], target[:, :1])
    assert single.temporal_consistency == 0 and single.velocity == 0
    with pytest.raises(ValueError, match="pred and target"):
        lifting_loss(pred, target[:, :1])


def test_resumed_mid_epoch_equals_uninterrupted(motion, tmp_path):
    torch.set_num_threads(1)
    probe = _trainer(motion, tmp_path / "probe")
    budget = f"train.max_steps={probe.steps_per_epoch + 2}"  # into the second epoch
    extra = ("train.epochs=2", budget, "train.eval_every=2")
    full = _trainer(motion, tmp_path / "full", *extra)
    assert full.model.config.drop_path_rate > 0  # stochastic depth draws from torch's RNG
    full.fit()
    interrupted = _trainer(motion, tmp_path / "part", *extra)
    original_step, steps = interrupted._step, []

    def step_then_stop(batch):  # behave as if SIGTERM arrived during the third step
        steps.append(original_step(batch))
        if len(steps) == 3:
            interrupted._stop_signal = signal.SIGTERM
        return steps[-1]

    interrupted._step = step_then_stop
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        interrupted.fit()
    saved = load_training_checkpoint(tmp_path / "part" / "last.pt")
    assert saved["position"]["global_step"] == 3 and saved["position"]["step_in_epoch"] == 3
    resumed = _trainer(motion, tmp_path / "part", *extra)
    resumed.resume(tmp_path / "part" / "last.pt")
    resumed.fit()
    assert resumed.position.global_step == full.position.global_step == probe.steps_per_epoch + 2
    for name, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    for group, other in zip(full.optimizer.param_groups, resumed.optimizer.param_groups,
                            strict=True):  # fmt: skip
        assert group["lr"] == other["lr"]


def test_the_recipe_is_hots(motion, tmp_path):
    trainer = _trainer(motion, tmp_path, "train.epochs=3")
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    assert trainer.optimizer.param_groups[0]["weight_decay"] == 0.1
    per_epoch = trainer.steps_per_epoch
    factors = [trainer._lr_factor(s) for s in (0, per_epoch - 1, per_epoch, 2 * per_epoch)]
    assert factors == pytest.approx([1.0, 1.0, 0.99, 0.99**2])
    assert trainer.train_set.flip_prob == 0.5 and trainer.config.flip_test
    assert _trainer(motion, tmp_path, "data.flip=false").train_set.flip_prob == 0.0
    assert trainer.train_set.stride == 3  # a third of the 9-frame clip

    # best.pt follows the lowest MPJPE
    for mpjpe, best in ((50.0, 50.0), (60.0, 50.0), (40.0, 40.0), (45.0, 40.0)):
        trainer._record_evaluation({"MPJPE": mpjpe, "P-MPJPE": 1.0})
        assert load_training_checkpoint(tmp_path / "best.pt")["position"]["best"] == best
    assert trainer.position.best == 40.0


def test_seq2frame_trains_and_scores(motion, tmp_path):
    trainer = _trainer(motion, tmp_path, "model.preset=tpc_mixste", "model.prune_loop=7",
                       "train.max_steps=2")  # fmt: skip
    metrics = trainer.fit()
    assert trainer.model.recovery is None and trainer.position.global_step == 2
    assert metrics["MPJPE"] > 0 and metrics["P-MPJPE"] > 0
    assert set(metrics["per_action"]) == {"Walking", "Waving"}
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "learning_curve.png").is_file()


def test_the_log_has_mean_losses_and_evaluations_at_their_step(motion, tmp_path, monkeypatch):
    totals = []

    class Bar:  # records what the engine's progress bar is told
        def __init__(self, total, **kwargs):
            totals.append(total)

        update = set_postfix = close = lambda self, *args, **kwargs: None

    monkeypatch.setattr(engine, "tqdm", Bar)
    trainer = _trainer(motion, tmp_path, "train.max_steps=4", "train.log_every=2")
    assert trainer.steps_per_epoch > 4
    losses, original_step = [], trainer._step
    trainer._step = lambda batch: losses.append(original_step(batch)) or losses[-1]
    trainer.fit()
    assert totals == [4]  # the bar ends at the budget, not at the end of the epoch
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if "loss" in r]
    assert [r["step"] for r in logged] == [2, 4] and all("time" in r for r in logged)
    assert [r["loss"] for r in logged] == pytest.approx([sum(losses[:2]) / 2, sum(losses[2:]) / 2])
    evaluation = next(r for r in records if "MPJPE" in r)
    assert evaluation["step"] == 4 and evaluation["MPJPE"] > 0


def test_evaluation_of_a_perfect_model_is_zero(motion):
    from tokenprune_models.pose3d.h36m import load_split

    test = load_split(motion, "test", "synthetic", "noisy")
    config = build_hot_mixste("hot_mixste", num_frames=9, dim=16, num_kept=3, prune_loop=1).config

    class Oracle(torch.nn.Module):  # returns the targets of the clip it is given
        def __init__(self):
            super().__init__()
            self.config, self.cluster, self.recovery = config, None, None

        def forward(self, inputs, kept_idx=None):
            out = torch.stack([self._targets(clip) for clip in inputs])
            return type("Out", (), {"poses": out, "kept_idx": None})()

        def _targets(self, clip):
            for sequence in test:
                frames = torch.from_numpy(sequence.inputs_2d)
                for start in range(len(frames)):
                    rows = torch.arange(start, start + len(clip)).clamp(max=len(frames) - 1)
                    if torch.equal(frames[rows], clip):
                        return torch.from_numpy(sequence.targets_3d)[rows]
            raise AssertionError("clip not found")

    metrics = evaluate(Oracle(), test[:4], flip=False)
    assert metrics["MPJPE"] < 1e-3 and metrics["P-MPJPE"] < 1e-3


@pytest.mark.parametrize("preset", ["hot_mixste", "tpc_mixste"])
def test_every_frame_is_predicted(motion, preset):
    from tokenprune_models.pose3d.h36m import load_split

    sequence = load_split(motion, "test", "synthetic", "noisy")[0]
    sizes = {"prune_loop": 7, "num_kept": 4} if preset == "tpc_mixste" else {"prune_loop": 1,
                                                                        "num_kept": 3}
    model = build_hot_mixste(preset, num_frames=9, dim=16, **sizes)
    for length in (5, 9, len(sequence)):  # shorter than a clip, one clip, clips and an overlap
        inputs = torch.from_numpy(sequence.inputs_2d[:length])
        pred = predict_sequence(model, inputs, flip=True, batch_size=4)
        assert pred.shape == (length, 17, 3) and not pred.isnan().any()
        assert (pred[:, 0] == 0).all()


def test_config_errors_name_the_key_and_list_the_valid_ones(motion, tmp_path):
    for override, section in (("train.epoch=3", "train"), ("model.frames=9", "model"),
                              ("data.stride=3", "data")):  # fmt: skip
        with pytest.raises(ValueError, match=rf"section '{section}' has unknown keys "
                                             rf"\['{override.split('.')[1].split('=')[0]}'\]; "
                                             r"valid keys: .*, "):  # fmt: skip
            _trainer(motion, tmp_path, override)
    with pytest.raises(ValueError, match=r"valid keys: .*\bweight_decay, lr_decay$"):
        _trainer(motion, tmp_path, "train.weight_decay_=0")
    with pytest.raises(ValueError, match="unknown sections"):
        load_config(CONFIG, ["optimizer.lr=1"], FAMILY.sections)
    with pytest.raises(ValueError, match="lr_decay must be in"):
        LiftingTrainConfig(output=str(tmp_path), lr_decay=1.5)
    with pytest.raises(ValueError, match=r"batch_size=10000 exceeds the \d+ training samples"):
        _trainer(motion, tmp_path, "train.batch_size=10000")
    with pytest.raises(TypeError, match="config must be a LiftingTrainConfig"):
        Trainer(LiftingTask(), engine.TrainConfig(output=str(tmp_path)), None)


def test_evaluation_uses_its_own_batch_size(motion, tmp_path, monkeypatch):
    """HoT trains 4 clips per batch (h36m_hot.yaml) but evaluates 64 (``eval_batch_size``)."""
    import tokenprune_models.hot.train as hot_train

    seen = []
    monkeypatch.setattr(hot_train, "evaluate", lambda model, data, flip, batch_size:
                        seen.append(batch_size) or {"MPJPE": 1.0})  # fmt: skip
    _trainer(motion, tmp_path, "train.eval_batch_size=5").evaluate()
    _trainer(motion, tmp_path / "default").evaluate()
    assert seen == [5, 64]
    train = load_config(ROOT / "models" / "hot" / "configs" / "h36m_hot.yaml")["train"]
    assert train["batch_size"] == 4 and train.get("eval_batch_size", 64) == 64
    with pytest.raises(ValueError, match="eval_batch_size"):
        LiftingTrainConfig(output=str(tmp_path), eval_batch_size=0)


def test_an_old_lifting_trainer_checkpoint_is_refused_clearly(motion, tmp_path):
    trainer = _trainer(motion, tmp_path)
    old = tmp_path / "old.pt"
    torch.save({"model": trainer.model.state_dict(), "epoch": 1, "step": 3, "best": 9.0}, old)
    with pytest.raises(ValueError, match=r"old\.pt.* not a training checkpoint of this engine"):
        trainer.resume(old)


def test_eval_only_with_our_and_official_checkpoints(motion, tmp_path, capsys):
    from tests.oracles.fixtures import load_fixture

    trainer = _trainer(motion, tmp_path / "run", "train.max_steps=1")
    trainer.fit()
    flags = ["--config", str(CONFIG), "--data", str(motion), "--eval-only"]
    for item in TINY:
        flags += ["--set", item]
    assert main([*flags, "--output", str(tmp_path / "ours"),
                 "--checkpoint", str(tmp_path / "run" / "best.pt")]) == 0  # fmt: skip
    ours = json.loads((tmp_path / "ours" / "results.json").read_text())
    assert ours["MPJPE"] == pytest.approx(trainer.evaluate()["MPJPE"])
    assert '"MPJPE"' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(flags)  # neither --checkpoint nor --official-checkpoint

    official, _ = load_fixture("hot_mixste_small")  # the official layout at 27 frames, width 64
    torch.save({"model": official}, tmp_path / "hot.pth")
    base = ["--config", str(CONFIG), "--data", str(motion), "--eval-only",
            "--set", "train.batch_size=64", "--set", "train.progress=false"]  # fmt: skip
    assert main([*base, "--output", str(tmp_path / "official"),
                 "--official-checkpoint", str(tmp_path / "hot.pth")]) == 0  # fmt: skip
    assert json.loads((tmp_path / "official" / "results.json").read_text())["MPJPE"] > 0


def test_the_command_line_trains_from_synthetic_data(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

    def python(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    usage = python("tokenprune_models.hot.train", "--help").stdout
    options = usage.split("options:", 1)[1]
    for flag in ("--config", "--data", "--output", "--set", "--device", "--resume",
                 "--eval-only", "--checkpoint", "--official-checkpoint"):  # fmt: skip
        entry = options.split(f"\n  {flag}", 1)[1]  # "--flag METAVAR" or "--flag, --no-flag"
        text = " ".join(entry.split("\n  --", 1)[0].split())
        assert "(default: " in text or "(required)" in text, (flag, text)
    python("tokenprune_models.pose3d.synthetic", "--output", str(tmp_path / "data"), "--frames",
           "12")  # fmt: skip
    args = ["tokenprune_models.hot.train", "--config", str(CONFIG), "--data",
            str(tmp_path / "data"), "--output", str(tmp_path / "run")]  # fmt: skip
    for item in [*TINY, "train.max_steps=2"]:
        args += ["--set", item]
    result = python(*args)
    assert json.loads(result.stdout[result.stdout.index("{") :])["MPJPE"] > 0
    state = load_training_checkpoint(tmp_path / "run" / "last.pt")
    assert state["position"]["global_step"] == 2 and state["task"]["num_kept"] == 3
    assert state["config"]["weight_decay"] == 0.1 and "recovery.queries" in state["model"]
    assert (tmp_path / "run" / "learning_curve.png").is_file()


@pytest.mark.slow
def test_two_process_ddp_on_gloo(motion, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
            "--master_port", str(29500 + os.getpid() % 1000 + 7), "-m",
            "tokenprune_models.hot.train",
            "--config", str(CONFIG), "--data", str(motion), "--output", str(tmp_path)]
    for item in [*TINY, "train.batch_size=4"]:
        args += ["--set", item]
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    clips = len(_trainer(motion, tmp_path / "probe").train_set)
    state = load_training_checkpoint(tmp_path / "last.pt")
    assert state["position"]["global_step"] == (clips + 1) // 2 // 4  # half the clips each


def test_train_stride_zero_is_refused_naming_it():
    from tokenprune_models.hot.train import LiftingData

    with pytest.raises(ValueError, match="train_stride must be >= 1"):
        LiftingData(train_stride=0)
