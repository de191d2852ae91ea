"""Learning curves: the training loss and the evaluation metric of a run, read from the
``metrics.jsonl`` files the trainers write, plotted against the optimiser step."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import atomic_path

__all__ = ["LearningCurve", "plot_learning_curve", "read_learning_curve"]


@dataclass
class LearningCurve:
    """One run's curves: ``(step, loss)`` and ``(step, metric)`` pairs."""

    loss: list[tuple[int, float]] = field(default_factory=list)
    metric: list[tuple[int, float]] = field(default_factory=list)


def read_learning_curve(
    path: str | os.PathLike, metric: str = "AP", step_offset: int = 0
) -> LearningCurve:
    """Read a ``metrics.jsonl``: records with ``step`` and ``loss`` are training steps; records
    holding ``metric`` are evaluations, placed at their ``step`` or, in files written before
    evaluations carried one, at the last training step logged before them.

    Args:
        path: the file.
        metric: the evaluation key to follow (``"AP"``, ``"MPJPE"``, ...).
        step_offset: added to every step (a later stage of a run continues the step count).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics file {str(path)!r} does not exist")
    curve, last_step = LearningCurve(), 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{str(path)!r} line {number} is not JSON: {error}") from None
        if not isinstance(record, dict):
            raise ValueError(f"{str(path)!r} line {number} is not a JSON object")
        if "loss" in record and "step" in record:
            last_step = int(record["step"])
            curve.loss.append((last_step + step_offset, float(record["loss"])))
        elif metric in record:
            step = int(record.get("step", last_step))
            curve.metric.append((step + step_offset, float(record[metric])))
    return curve


def _running_mean(values: Sequence[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_learning_curve(
    curves: Sequence[tuple[str, LearningCurve]],
    path: str | os.PathLike,
    metric: str = "AP",
    title: str = "",
    smooth: int = 10,
) -> Path:
    """Plot the loss (left axis, a running mean over ``smooth`` logged points) and the metric
    (right axis) of one or more runs or stages against the step; written atomically as PNG.

    Args:
        curves: ``(label, curve)`` per run or stage.
        path: the PNG file.
        metric: the metric's name, for the axis.
        title: the figure title.
        smooth: window of the loss's running mean (1 = raw).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if smooth < 1:
        raise ValueError(f"smooth must be >= 1, got {smooth}")
    fig, loss_axis = plt.subplots(figsize=(6, 3.6), dpi=120)
    metric_axis = loss_axis.twinx()
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (label, curve) in enumerate(curves):
        colour = colours[index % len(colours)]
        if curve.loss:
            steps, losses = zip(*curve.loss, strict=True)
            loss_axis.plot(steps, _running_mean(losses, smooth), color=colour, alpha=0.55,
                           linewidth=1, label=f"{label}: loss")  # fmt: skip
        if curve.metric:
            steps, values = zip(*curve.metric, strict=True)
            metric_axis.plot(steps, values, "o-", color=colour, markersize=3,
                             label=f"{label}: {metric}")  # fmt: skip
    loss_axis.set_xlabel("optimiser step")
    loss_axis.set_ylabel("training loss")
    metric_axis.set_ylabel(metric)
    loss_axis.grid(alpha=0.3)
    handles = loss_axis.get_legend_handles_labels()
    more = metric_axis.get_legend_handles_labels()
    if handles[0] or more[0]:
        loss_axis.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7, loc="center right")
    if title:
        loss_axis.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
