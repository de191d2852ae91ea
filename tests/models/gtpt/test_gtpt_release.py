"""``python -m tokenprune_models.gtpt.release``: a tiny two-stage run from synthetic data
becomes a half-precision weights file, a learning curve and a record that loads through the
registry."""

from __future__ import annotations

import json

import torch

from tokenprune_models import registry
from tokenprune_models.common.engine import evaluation_weights, load_training_checkpoint
from tokenprune_models.gtpt import train
from tokenprune_models.gtpt.release import main as release_main

#: The shipped weights' two stages (64x48, then 128x96 starting from the first stage's weights).
STAGES = ("models/gtpt/configs/synthetic_t_64x48.yaml",
          "models/gtpt/configs/synthetic_t_128x96.yaml")
TINY = [arg for item in ("train.max_steps=2", "train.batch_size=2", "train.workers=0",
                         "train.progress=false", "train.log_every=1") for arg in ("--set", item)]


def test_release_of_a_tiny_run(synthetic_pose_data, tmp_path, monkeypatch, capsys):
    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setitem(registry.WEIGHTS_DIRS, "gtpt", weights)
    stages, init = [], []
    for index, config in enumerate(STAGES):
        output = tmp_path / f"stage{index}"
        assert train.main(["--config", config, "--data", str(synthetic_pose_data),
                           "--output", str(output), *TINY, *init]) == 0  # fmt: skip
        stages += ["--stage", config, str(output)]
        init = ["--set", f"train.init_from={output / 'last.pt'}"]
    assert release_main(["gtpt_t_synthetic", *stages]) == 0
    entry = registry.model_entry("gtpt_t_synthetic")
    assert entry.path.parent == weights
    record = json.loads(entry.path.with_suffix(".json").read_text())
    out = capsys.readouterr().out  # the training runs' reports, then the record
    assert json.loads(out[out.rindex('{\n  "name"'):]) == record
    assert [s["steps"] for s in record["stages"]] == [2, 2] and record["total_steps"] == 4
    assert (weights / record["curve"]).read_bytes()[:4] == b"\x89PNG"
    stored = torch.load(weights / record["weights"], weights_only=True)
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    expected = evaluation_weights(load_training_checkpoint(tmp_path / "stage1" / "last.pt"))
    for key, value in expected.items():
        half = value.half() if value.is_floating_point() else value
        torch.testing.assert_close(stored[key], half, rtol=0, atol=0)
    model = registry.create_model("gtpt_t_synthetic", pretrained=True)
    assert not model.training
