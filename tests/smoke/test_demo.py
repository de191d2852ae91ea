"""The `make demo` entry point, in its smoke-run mode."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tokenprune_models.gtpt.demo import main, mean_pose, pck
from tokenprune_models.pose.data import Person


def _person(points, box=(10.0, 20.0, 40.0, 80.0)) -> Person:
    keypoints = np.concatenate([np.asarray(points, float), np.full((len(points), 1), 2.0)], 1)
    return Person(1, 1, None, box, box[2] * box[3], keypoints)


def test_mean_pose_is_box_relative_and_ignores_unlabelled_points():
    people = [_person([[10, 20], [50, 100]]), _person([[30, 60], [30, 60]])]
    people[1].keypoints[1, 2] = 0  # unlabelled: must not pull the mean
    np.testing.assert_allclose(mean_pose(people), [[0.25, 0.25], [1.0, 1.0]])


def test_pck_counts_points_within_a_tenth_of_the_longer_side():
    person = _person([[10, 20], [50, 100]])  # longer side 80 -> radius 8
    assert pck(np.array([[[17.9, 20], [50, 108.1]]]), [person]) == 0.5
    assert pck(np.array([[[10, 20], [50, 100]]]), [person]) == 1.0


@pytest.mark.slow
def test_quick_demo_writes_table_plot_and_picture(tmp_path):
    output = tmp_path / "run"
    assert main(["--quick", "--data", str(tmp_path / "data"), "--output", str(output)]) == 0
    table = (output / "results.md").read_text()
    assert "chance" in table and "published [1.0, 0.7, 0.3, 0.1]" in table
    assert "Fine-tune from the shipped weights (2 steps" in table
    results = json.loads((output / "results.json").read_text())
    assert results["checkpoint"] == "models/gtpt/weights/gtpt_t_synthetic_128x96.pt"
    assert results["config"] == "models/gtpt/configs/synthetic_t_128x96.yaml"
    assert set(results["chance"]) >= {"AP", "AP50", "AR", "PCK"}
    names = [row["name"] for row in results["rows"]]
    assert names == ["unpruned", "mild", "published", "aggressive"]
    macs = [row["gmacs"] for row in results["rows"]]
    assert macs == sorted(macs, reverse=True) and macs[0] > macs[-1]
    assert all(row["latency_ms"] > 0 for row in results["rows"])
    assert results["finetune"]["steps"] == 2
    assert (output / "accuracy_vs_flops.png").stat().st_size > 0
    assert (output / "predictions.png").stat().st_size > 0


@pytest.mark.slow
def test_quick_demo_from_scratch(tmp_path):
    output = tmp_path / "run"
    args = ["--quick", "--from-scratch", "--data", str(tmp_path / "data"), "--output",
            str(output)]  # fmt: skip
    assert main(args) == 0
    results = json.loads((output / "results.json").read_text())
    assert results["config"] == "models/gtpt/configs/synthetic_demo.yaml"
    assert results["finetune"] is None and len(results["rows"]) == 4


def test_demo_rejects_contradictory_flags(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--steps", "10", "--output", str(tmp_path)])
    assert "--from-scratch" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--finetune-steps", "-1", "--output", str(tmp_path)])
