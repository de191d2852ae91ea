"""The options of the synthetic GTPT recipe: keypoint-embedding init, cosine learning rate,
progressive resolution (``init_from`` with resized SimCC classifiers), the EMA readiness rule
and evaluation of weights-only files."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from tokenprune_models.common.ema import ModelEMA
from tokenprune_models.common.engine import evaluation_weights, load_weights
from tokenprune_models.common.simcc import resize_simcc_bins
from tokenprune_models.gtpt import build_gtpt
from tokenprune_models.gtpt.train import build_trainer, main
from tokenprune_models.pose.cli import load_config
from tokenprune_models.pose.engine import PoseTrainConfig

ROOT = Path(__file__).resolve().parents[3]
STAGE_1 = ROOT / "models" / "gtpt" / "configs" / "synthetic_t_64x48.yaml"
STAGE_2 = ROOT / "models" / "gtpt" / "configs" / "synthetic_t_128x96.yaml"
TINY = [
    "train.epochs=1", "train.batch_size=4", "train.workers=0", "train.flip_test=false",
    "train.progress=false", "train.log_every=1", "train.max_steps=2", "train.warmup_steps=1",
]  # fmt: skip


# -- resize_simcc_bins --------------------------------------------------------------------------


def _reference_positions(old_bins: int, bins: int, split_ratio: float) -> torch.Tensor:
    """Where each new bin lies among the old ones: ``(b - r (s - 1) / 2) / s``, clamped."""
    s = bins / old_bins
    return torch.tensor(
        [min(max((b - split_ratio * (s - 1) / 2) / s, 0.0), old_bins - 1.0) for b in range(bins)],
        dtype=torch.float64,
    )


@given(
    old_bins=st.integers(1, 64),
    bins=st.integers(1, 160),
    split_ratio=st.sampled_from([1.0, 2.0, 3.0]),
    trailing=st.sampled_from([(), (1,), (3, 2)]),
)
def test_resize_bins_interpolates_rows_at_the_same_image_point(
    old_bins, bins, split_ratio, trailing
):
    # rows that are an affine function of the bin position are reproduced exactly
    position = torch.arange(old_bins, dtype=torch.float64)
    rows = (2.5 * position - 1.0).reshape(-1, *([1] * len(trailing))).expand(-1, *trailing)
    resized = resize_simcc_bins(rows, bins, split_ratio)
    expected = 2.5 * _reference_positions(old_bins, bins, split_ratio) - 1.0
    assert resized.shape == (bins, *trailing)
    expected = expected.reshape(-1, *[1] * len(trailing)).expand_as(resized)
    torch.testing.assert_close(resized, expected)


def test_resize_bins_identity_doubling_and_errors():
    rows = torch.randn(96, 5)
    assert torch.equal(resize_simcc_bins(rows, 96, 2.0), rows)
    doubled = resize_simcc_bins(rows, 192, split_ratio=2.0)
    # pixel-centred doubling: new bin 2k + 1 is old bin k, new bin 2k + 2 halfway to k + 1
    torch.testing.assert_close(doubled[1::2], rows)
    torch.testing.assert_close(doubled[2::2], (rows[:-1] + rows[1:]) / 2)
    assert resize_simcc_bins(torch.randn(1, 3), 4, 2.0).shape == (4, 3)  # one old bin: copied
    with pytest.raises(ValueError, match="bins"):
        resize_simcc_bins(rows, 0, 2.0)
    with pytest.raises(ValueError, match="rows"):
        resize_simcc_bins(torch.randn(0, 3), 8, 2.0)
    with pytest.raises(ValueError, match="split_ratio"):
        resize_simcc_bins(rows, 8, split_ratio=float("nan"))


def test_gtpt_weights_carry_to_another_input_size():
    """A 64x48 model's weights in a 128x96 model: everything but the SimCC classifiers is
    copied; their logits at the same image point agree (pixel-centred doubling)."""
    small = build_gtpt("gtpt_t_coco", keep_rates=(1.0,) * 4, image_size=(64, 48),
                       keypoint_init_std=1.0).eval()
    config = load_config(STAGE_2)
    from tokenprune_models.gtpt.train import make_task

    task = make_task(config)
    large = task.build_model().eval()
    task.load_initial_weights(large, small.state_dict())
    for name, value in small.state_dict().items():
        if not name.startswith(("head.x.1", "head.y.1")):
            assert torch.equal(large.state_dict()[name], value), name
    tokens = torch.randn(2, 17, small.dim)
    small_x, _ = small.head(tokens)
    large_x, _ = large.head(tokens)
    torch.testing.assert_close(large_x[..., 1::2], small_x)


# -- keypoint_init_std --------------------------------------------------------------------------


def test_keypoint_init_std_sets_the_keypoint_embedding_scale_only():
    torch.manual_seed(0)
    published = build_gtpt("gtpt_t_coco", image_size=(64, 48))
    torch.manual_seed(0)
    wide = build_gtpt("gtpt_t_coco", image_size=(64, 48), keypoint_init_std=1.0)
    assert published.keypoint_tokens.std().item() == pytest.approx(0.02, rel=0.2)
    assert wide.keypoint_tokens.std().item() == pytest.approx(0.88, rel=0.2)  # truncated at 2 std
    assert wide.keypoint_tokens.abs().max().item() <= 2.0
    assert published.human_token.std().item() == pytest.approx(0.02, rel=0.5)
    assert wide.human_token.std().item() == pytest.approx(0.02, rel=0.5)
    assert published.state_dict().keys() == wide.state_dict().keys()
    wholebody = build_gtpt("gtpt_t_wholebody", keypoint_init_std=0.5)
    for name in ("keypoint_tokens", "part_tokens", "dense_tokens"):
        assert getattr(wholebody, name).std().item() > 0.3, name
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="keypoint_init_std"):
            build_gtpt("gtpt_t_coco", keypoint_init_std=bad)


# -- learning-rate schedule ---------------------------------------------------------------------


def test_cosine_schedule_warms_up_then_decays_to_zero(synthetic_pose_data, tmp_path):
    extra = ["train.lr_schedule=cosine", "train.warmup_steps=4", "train.max_steps=20",
             "train.epochs=100"]  # fmt: skip
    config = load_config(STAGE_1, [*TINY, *extra])
    trainer = build_trainer(config, synthetic_pose_data, tmp_path)
    factors = [trainer._lr_factor(step) for step in range(24)]
    assert factors[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    for step in range(4, 20):
        expected = 0.5 * (1 + math.cos(math.pi * (step - 4) / 16))
        assert factors[step] == pytest.approx(expected)
    assert factors[20:] == pytest.approx([0.0] * 4)
    with pytest.raises(ValueError, match="lr_schedule"):
        PoseTrainConfig(output=str(tmp_path), lr_schedule="linear")
    with pytest.raises(ValueError, match="max_steps"):
        PoseTrainConfig(output=str(tmp_path), max_steps=0)
    with pytest.raises(ValueError, match="warmup_steps"):
        PoseTrainConfig(output=str(tmp_path), warmup_steps=-1)


# -- progressive resolution through the CLI and weights-only files ------------------------------


def test_two_stage_training_and_eval_only_of_weights_only_files(synthetic_pose_data, tmp_path,
                                                                capsys):  # fmt: skip
    data = synthetic_pose_data
    stage_1 = tmp_path / "stage1"
    argv = ["--config", str(STAGE_1), "--data", str(data), "--output", str(stage_1)]
    for item in TINY:
        argv += ["--set", item]
    assert main(argv) == 0
    assert (stage_1 / "learning_curve.png").is_file()
    first = load_weights(stage_1 / "last.pt")

    stage_2 = tmp_path / "stage2"
    overrides = [*TINY, f"train.init_from={stage_1 / 'last.pt'}", "train.max_steps=1"]
    config = load_config(STAGE_2, overrides)
    trainer = build_trainer(config, data, stage_2)
    assert trainer.model.head.x[1].out_features == 192  # 96 px x split 2
    assert torch.equal(trainer.model.patch_embed.weight, first["patch_embed.weight"])
    trainer.fit()

    # shipped-style weights: fp16, weights only; --eval-only loads them like a checkpoint
    shipped = tmp_path / "weights.pt"
    torch.save({k: v.half() for k, v in trainer.model.state_dict().items()}, shipped)
    argv = ["--config", str(STAGE_2), "--data", str(data), "--output", str(tmp_path / "eval"),
            "--eval-only", "--checkpoint", str(shipped)]  # fmt: skip
    for item in TINY:
        argv += ["--set", item]
    assert main(argv) == 0
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert len(results) > 0

    with pytest.raises(FileNotFoundError, match="missing"):
        build_trainer(load_config(STAGE_2, [*TINY, "train.init_from=missing.pt"]), data,
                      tmp_path / "x")  # fmt: skip
    bad = {k: v.half() for k, v in trainer.model.state_dict().items()}
    bad["patch_embed.weight"] = bad["patch_embed.weight"][:, :-1]
    torch.save(bad, tmp_path / "misshaped.pt")
    argv[argv.index(str(shipped))] = str(tmp_path / "misshaped.pt")
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:  # the CLI: one line naming file and entry, status 2
        main(argv)
    assert stop.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert re.search(r": error: .*misshaped\.pt.*'patch_embed\.weight'", line), line
    junk = tmp_path / "junk.pt"
    torch.save([1, 2], junk)
    with pytest.raises(ValueError, match=r"junk\.pt"):
        load_weights(junk)


# -- EMA readiness ------------------------------------------------------------------------------


def test_ema_initial_weight_is_the_product_of_momenta():
    ema = ModelEMA(nn.Linear(1, 1), total_steps=50, momentum_start=0.9, momentum_end=0.99)
    for steps in (0, 1, 7, 50, 51, 80):
        expected = math.prod(ema.momentum(s) for s in range(steps))
        assert ema.initial_weight(steps) == pytest.approx(expected, rel=1e-9), steps
    assert ModelEMA(nn.Linear(1, 1), 600).initial_weight(600) == pytest.approx(0.30, abs=0.01)
    assert not ModelEMA(nn.Linear(1, 1), 600).has_moved(600)  # a short run: the EMA is stale
    assert ModelEMA(nn.Linear(1, 1), 175_000).has_moved(175_000)  # GTPT's recipe
    with pytest.raises(ValueError, match="steps"):
        ema.initial_weight(-1)


def test_a_short_run_evaluates_its_trained_weights_not_a_stale_ema(synthetic_pose_data, tmp_path):
    config = load_config(STAGE_1, [*TINY, "train.ema=true"])
    trainer = build_trainer(config, synthetic_pose_data, tmp_path)
    trainer.fit()
    assert trainer.ema is not None and trainer.eval_model() is trainer.model
    state = trainer.checkpoint_state()
    assert state["eval_weights"] == "model"
    assert evaluation_weights(state) is state["model"]
    legacy = {k: v for k, v in state.items() if k != "eval_weights"}
    assert evaluation_weights(legacy) is legacy["ema"]  # older checkpoints: their EMA
    with pytest.raises(ValueError, match="'ema'"):
        evaluation_weights({**state, "eval_weights": "ema", "ema": None})
