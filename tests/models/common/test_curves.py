"""Learning curves read from metrics.jsonl and plotted."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tokenprune_models.common.curves import _running_mean, plot_learning_curve, read_learning_curve


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_read_places_evaluations_at_their_step_or_the_last_logged_one(tmp_path):
    path = _write(tmp_path / "metrics.jsonl", [
        {"step": 10, "loss": 0.5}, {"step": 20, "loss": 0.4},
        {"eval_epoch": 1, "AP": 0.1},                     # written before evaluations had steps
        {"step": 30, "loss": 0.3}, {"eval_epoch": 2, "step": 35, "AP": 0.2},
    ])  # fmt: skip
    curve = read_learning_curve(path, "AP", step_offset=100)
    assert curve.loss == [(110, 0.5), (120, 0.4), (130, 0.3)]
    assert curve.metric == [(120, 0.1), (135, 0.2)]
    assert read_learning_curve(path, "MPJPE").metric == []


def test_read_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        read_learning_curve(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1, "loss": 1.0}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl.* line 2"):
        read_learning_curve(bad)
    bad.write_text("[1, 2]\n")
    with pytest.raises(ValueError, match="line 1 is not a JSON object"):
        read_learning_curve(bad)


def test_running_mean():
    assert _running_mean([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert _running_mean([2.0, 4.0], 1) == [2.0, 4.0]
    assert _running_mean([], 3) == []


def test_plot_writes_a_png(tmp_path):
    path = _write(tmp_path / "metrics.jsonl", [{"step": s, "loss": 1 / s} for s in range(1, 30)]
                  + [{"step": 29, "AP": 0.3}])  # fmt: skip
    curve = read_learning_curve(path)
    out = plot_learning_curve([("stage 1", curve), ("stage 2", curve)], tmp_path / "c.png",
                              title="t")  # fmt: skip
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 100
    with pytest.raises(ValueError, match="smooth"):
        plot_learning_curve([("x", curve)], tmp_path / "d.png", smooth=0)
