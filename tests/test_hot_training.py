"""HoT's loss, the 3-D lifting trainer (exact resume, seq2frame) and evaluation.

The shipped weights and the demo: ``test_hot_pretrained.py``."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from models.common.checkpoint import load_state_dict_file
from models.hot.evaluation import evaluate, predict_sequence
from models.hot.loss import H36M_JOINT_WEIGHTS, lifting_loss
from models.hot.train import LiftingConfig, LiftingTrainer
from models.hot.train import main as train_main
from models.pose3d.h36m import load_split
from models.pose3d.synthetic import write_dataset

TINY = LiftingConfig(frames=9, dim=16, num_kept=3, prune_loop=1, epochs=1, batch_size=4,
                     max_steps=None)  # fmt: skip


@pytest.fixture(scope="module")
def motion(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion")
    write_dataset(root, frames=24, seed=3, actions=("Walking", "Waving"))
    train = load_split(root, "train", "synthetic", "noisy")
    test = load_split(root, "test", "synthetic", "noisy")
    # a few sequences are enough for the trainer's tests (both actions in the test part)
    return root, train[:3], [s for s in test if s.camera == 0 and s.subject == "S9"]


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


def test_resumed_training_equals_uninterrupted(motion, tmp_path):
    _, train, test = motion
    config = replace(TINY, epochs=2)
    straight = LiftingTrainer(config, train, test, tmp_path / "straight")
    straight.fit()
    first = LiftingTrainer(replace(config, epochs=1), train, test, tmp_path / "first")
    first.fit()
    resumed = LiftingTrainer(config, train, test, tmp_path / "first")
    with pytest.raises(ValueError, match="another configuration"):
        resumed.resume(tmp_path / "first" / "last.pt")  # epochs differ: refused
    state = torch.load(tmp_path / "first" / "last.pt", weights_only=True)
    state["config"]["epochs"] = 2
    torch.save(state, tmp_path / "first" / "edited.pt")
    resumed.resume(tmp_path / "first" / "edited.pt")
    resumed.fit()
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_seq2frame_trains_and_scores(motion, tmp_path):
    _, train, test = motion
    config = replace(TINY, variant="tpc", prune_loop=7, max_steps=2)
    trainer = LiftingTrainer(config, train, test, tmp_path)
    metrics = trainer.fit()
    assert metrics["MPJPE"] > 0 and metrics["P-MPJPE"] > 0
    assert set(metrics["per_action"]) == {"Walking", "Waving"}


def test_evaluation_of_a_perfect_model_is_zero(motion):
    _, _, test = motion
    model = TINY.build_model()

    class Oracle(torch.nn.Module):  # returns the targets of the clip it is given
        def __init__(self):
            super().__init__()
            self.config, self.cluster, self.recovery = model.config, None, None
            self.lookup = {s.inputs_2d.tobytes(): s.targets_3d for s in test}

        def forward(self, inputs, kept_frames=None):
            out = torch.stack([self._targets(clip) for clip in inputs])
            return type("Out", (), {"poses": out, "kept_frames": None})()

        def _targets(self, clip):
            for sequence in test:
                frames = torch.from_numpy(sequence.inputs_2d)
                for start in range(len(frames)):
                    rows = torch.arange(start, start + len(clip)).clamp(max=len(frames) - 1)
                    if torch.equal(frames[rows], clip):
                        return torch.from_numpy(sequence.targets_3d)[rows]
            raise AssertionError("clip not found")

    metrics = evaluate(Oracle(), test, flip=False)
    assert metrics["MPJPE"] < 1e-3 and metrics["P-MPJPE"] < 1e-3


@pytest.mark.parametrize("variant", ["hot", "tpc"])
def test_every_frame_is_predicted(motion, variant):
    _, _, test = motion
    sizes = {"prune_loop": 7, "num_kept": 4} if variant == "tpc" else {}
    model = replace(TINY, variant=variant, **sizes).build_model()
    for length in (5, 9, 23):  # shorter than a clip, one clip, clips plus an overlapping one
        inputs = torch.from_numpy(test[0].inputs_2d[:length])
        pred = predict_sequence(model, inputs, flip=True, batch_size=4)
        assert pred.shape == (length, 17, 3) and not pred.isnan().any()
        assert (pred[:, 0] == 0).all()


def test_trainer_and_cli_errors(motion, tmp_path):
    root, train, test = motion
    trainer = LiftingTrainer(replace(TINY, batch_size=10_000), train, test, tmp_path)
    with pytest.raises(ValueError, match="batch_size=10000"):
        trainer.fit()
    with pytest.raises(ValueError, match="exactly one of --checkpoint"):
        train_main(["--data", str(root), "--frames", "9", "--dim", "16", "--eval-only"])


def test_cli_trains_and_evaluates_our_checkpoint(motion, tmp_path, capsys):
    root, _, _ = motion
    flags = ["--data", str(root), "--frames", "9", "--dim", "16", "--num-kept", "3",
             "--batch-size", "4", "--epochs", "1", "--max-steps", "2"]  # fmt: skip
    assert train_main([*flags, "--output", str(tmp_path)]) == 0
    state = load_state_dict_file(tmp_path / "best.pt")
    assert "recovery.queries" in state
    assert train_main([*flags, "--eval-only", "--checkpoint", str(tmp_path / "best.pt")]) == 0
    assert '"MPJPE"' in capsys.readouterr().out


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_log_every_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match="log_every must be a positive integer"):
        replace(TINY, log_every=bad)


def test_the_log_has_mean_losses_and_evaluations_at_their_step(motion, tmp_path):
    _, train, test = motion
    trainer = LiftingTrainer(replace(TINY, max_steps=4, log_every=2), train, test, tmp_path)
    trainer.fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    assert [r["step"] for r in losses] == [2, 4] and all(r["loss"] > 0 for r in losses)
    assert all("time" in r for r in losses)
    evaluation = next(r for r in records if "MPJPE" in r)
    assert evaluation["step"] == 4 and evaluation["MPJPE"] > 0
