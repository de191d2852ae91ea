"""TokenPose / PPT heatmap training and DPPT distillation through the shared training CLI."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tokenprune_models.common.engine import load_training_checkpoint
from tokenprune_models.dppt import PRESETS, DPPTLoss
from tokenprune_models.dppt.train import DPPTTask
from tokenprune_models.dppt.train import main as dppt_main
from tokenprune_models.dppt.train import make_task as make_dppt_task
from tokenprune_models.tokenpose import PRESETS as TOKENPOSE
from tokenprune_models.tokenpose import build_tokenpose
from tokenprune_models.tokenpose.train import main as tokenpose_main

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ROOT / "models" / "tokenpose" / "configs"
SMALL = {"dim": 32, "num_heads": 2, "mlp_ratio": 2.0}  # 12 layers, as PPT needs
TINY = [
    "model.image_size=[64, 48]", "model.dim=32", "model.num_heads=2", "model.mlp_ratio=2.0",
    "train.epochs=1", "train.batch_size=4", "train.workers=0", "train.milestones=[1]",
    "train.progress=false", "train.log_every=1", "train.ema=false", "train.amp=false",
]  # fmt: skip


@pytest.fixture(scope="module")
def data(synthetic_pose_data):
    return synthetic_pose_data  # tests/conftest.py


def _sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


# the synthetic configs name the generator's files: no data.* overrides
SYNTHETIC = _sets(*TINY)
DPPT_CONFIG = ROOT / "models" / "dppt" / "configs" / "synthetic_dppt_s.yaml"


def test_tokenpose_trains_and_a_dppt_student_distils_from_it(data, tmp_path, capsys):
    torch.set_num_threads(1)
    teacher_dir = tmp_path / "teacher"
    args = ["--config", str(CONFIGS / "synthetic_tokenpose_s.yaml"), "--data", str(data)]
    assert tokenpose_main([*args, "--output", str(teacher_dir), *SYNTHETIC]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0.0 <= metrics["AP"] <= 1.0
    logged = [json.loads(line) for line in (teacher_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in logged if "loss" in r)

    student_dir = tmp_path / "student"
    config = DPPT_CONFIG
    teacher = _sets(f"model.teacher_checkpoint={teacher_dir / 'last.pt'}")
    dppt_args = ["--config", str(config), "--data", str(data), "--output", str(student_dir)]
    assert dppt_main([*dppt_args, *SYNTHETIC, *teacher]) == 0
    state = load_training_checkpoint(student_dir / "last.pt")
    # the checkpoint holds the student alone, shaped like a PPT
    student = build_tokenpose(PRESETS["dppt_s"], image_size=(64, 48), **SMALL)
    student.load_state_dict(state["model"])
    assert state["position"]["global_step"] > 0
    # evaluation of the student needs no teacher
    capsys.readouterr()
    ckpt = ["--eval-only", "--checkpoint", str(student_dir / "last.pt")]
    config_args = ["--config", str(config), "--data", str(data), "--output", str(tmp_path)]
    assert dppt_main([*config_args, *SYNTHETIC, *ckpt]) == 0
    assert "AP" in json.loads(capsys.readouterr().out)


def test_dppt_training_without_a_teacher_says_so(data, tmp_path, capsys):
    args = ["--config", str(DPPT_CONFIG), "--data", str(data), "--output", str(tmp_path)]
    for teacher in ("null", str(tmp_path / "missing.pt")):
        with pytest.raises(SystemExit) as stop:
            dppt_main([*args, *SYNTHETIC, *_sets(f"model.teacher_checkpoint={teacher}")])
        assert stop.value.code == 2
        [line] = capsys.readouterr().err.splitlines()  # one line, no traceback
        expected = r"needs model\.teacher_checkpoint" if teacher == "null" else r"missing\.pt"
        assert re.match(rf"\S+: error: .*{expected}", line), line


def test_dppt_loss_of_a_student_sharing_the_teachers_weights():
    torch.manual_seed(0)
    teacher = build_tokenpose("tokenpose_s", image_size=(64, 48), **SMALL).eval()
    student = build_tokenpose("ppt_s", image_size=(64, 48), **SMALL).eval()
    student.load_state_dict(teacher.state_dict())
    images = torch.randn(2, 3, 64, 48)
    loss = DPPTLoss(layers=(3, 4, 7))
    s, t = (m.forward_tokens(images, record=(3, 4, 7)) for m in (student, teacher))
    targets, weight = torch.rand_like(s.heatmaps), torch.ones(2, 17)
    terms = loss(s, t, targets, weight)
    # up to layer 4 the two networks see the same tokens: the first record (layer 3) and the
    # second (layer 4's attention is taken before its pruning) agree
    first = DPPTLoss(layers=(3, 4))
    early = first(*(m.forward_tokens(images, record=(3, 4)) for m in (student, teacher)),
                  targets, weight)  # fmt: skip
    assert early.attention.item() < 1e-6 and early.feature.item() < 1e-9
    # after the first pruning the student differs
    assert terms.attention.item() > 1e-6 and terms.feature.item() > 1e-6
    assert terms.output.item() > 0
    expected = (terms.ground_truth + terms.output + 1e-4 * terms.attention
                + 5e-6 * terms.feature)  # fmt: skip
    assert terms.total.item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="teacher must be unpruned"):
        loss(s, s, targets, weight)
    with pytest.raises(ValueError, match="records of the 2 layers"):
        first(s, t, targets, weight)
    with pytest.raises(ValueError, match="attention_weight must be a non-negative"):
        DPPTLoss(attention_weight=-1.0)


def test_dppt_task_of_a_config_section():
    assert set(PRESETS) == {"dppt_s", "dppt_b"}
    assert (PRESETS["dppt_s"], PRESETS["dppt_b"]) == (TOKENPOSE["ppt_s"], TOKENPOSE["ppt_b"])
    task = make_dppt_task({"model": {"preset": "dppt_b", "image_size": [64, 48], "dim": 32,
                                     "num_heads": 2, "feature_weight": 1e-3, "sigma": 3.0}})
    assert isinstance(task, DPPTTask) and task.config.stem == "hrnet_w32"
    assert task.config.image_size == (64, 48) and task.codec.sigma == 3.0
    assert task.criterion == DPPTLoss(feature_weight=1e-3)
    # the teacher is the student's network, unpruned
    assert task.config.unpruned() == replace(TOKENPOSE["tokenpose_b"], image_size=(64, 48),
                                             dim=32, num_heads=2, sigma=3.0)  # fmt: skip
    # a typo in the model section lists every valid key: the network's and the task's own
    with pytest.raises(ValueError, match=r"config section 'model' has unknown keys "
                                         r"\['teacher_chekpoint'\]; valid keys: preset, stem, "
                                         r".*, sigma, teacher_checkpoint, teacher_format, "
                                         ):  # fmt: skip
        make_dppt_task({"model": {"preset": "dppt_s", "teacher_chekpoint": "t.pt"}})
    with pytest.raises(ValueError, match="DPPT's student is a PPT"):
        make_dppt_task({"model": {"preset": "dppt_s", "prune_after": []}})
    with pytest.raises(ValueError, match=r"config must be one of \['dppt_b', 'dppt_s'\]"):
        make_dppt_task({"model": {"preset": "ppt_s"}})
