"""Ship the weights of a finished MixSTE / HoT training run: half-precision weights only, a
learning-curve plot and a JSON record of how they were made.

    python -m tokenprune_models.hot.release hot_mixste_synthetic runs/hot_synthetic/hot \\
        --data data/synthetic3d_1500

The run's ``last.pt`` (the final weights, not ``best.pt``: that one is chosen on the test split)
becomes the entry's weights file (:data:`tokenprune_models.hot.pretrained.PRETRAINED`);
``<file>_curve.png`` plots the training loss and the test MPJPE against the step;
``<file>.json`` records the training config (the network's and the engine's settings), seed,
steps, training wall time, the last evaluation and the software versions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from ..common.atomic import write_text_atomic
from ..common.cli import USER_ERRORS, HelpFormatter, exit_with_error
from ..common.curves import plot_learning_curve, read_learning_curve
from ..common.engine import evaluation_weights, load_training_checkpoint
from ..common.release import save_half_precision, software, training_seconds
from .pretrained import PRETRAINED


def _last_evaluation(metrics: Path) -> dict:
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    evaluations = [r for r in records if "MPJPE" in r]
    return evaluations[-1] if evaluations else {}


def release(name: str, run: str | os.PathLike, data: str | os.PathLike | None = None) -> dict:
    """Write the weights file, curve and record of :data:`PRETRAINED` entry ``name`` from the
    training output folder ``run`` (its ``last.pt`` and ``metrics.jsonl``); ``data`` is the
    training data folder, recorded. Returns the record.

    Raises:
        ValueError: an unknown name, or a run whose model settings differ from the entry's.
        FileNotFoundError: ``last.pt`` or ``metrics.jsonl`` is missing.
    """
    if name not in PRETRAINED:
        raise ValueError(f"name must be one of {sorted(PRETRAINED)}, got {name!r}")
    entry, run = PRETRAINED[name], Path(run)
    metrics = run / "metrics.jsonl"
    if not metrics.is_file():
        raise FileNotFoundError(f"{str(metrics)!r} does not exist: not a training output folder")
    state = load_training_checkpoint(run / "last.pt")
    trained, wanted = state.get("task") or {}, asdict(entry.model_config())
    if not isinstance(trained, dict) or "num_frames" not in trained:
        raise ValueError(f"{str(run / 'last.pt')!r} is not a checkpoint of a lifting run")
    wrong = {k: trained.get(k) for k in wanted if trained.get(k) != wanted[k]}
    if wrong:
        raise ValueError(f"the run {str(run)!r} trained {wrong}, the entry {name!r} is "
                         f"{ {k: wanted[k] for k in wrong} }")  # fmt: skip
    save_half_precision(evaluation_weights(state), entry.path)
    curve = entry.path.with_name(entry.path.stem + "_curve.png")
    plot_learning_curve([(name, read_learning_curve(metrics, "MPJPE"))], curve, "MPJPE (mm)",
                        f"{name}: training loss and test MPJPE")  # fmt: skip
    record = {
        "name": name, "weights": entry.path.name, "curve": curve.name,
        "output": run.as_posix(), "data": None if data is None else Path(data).as_posix(),
        "config": {"model": trained, "train": state["config"]},
        "seed": state["config"]["seed"], "steps": state["position"]["global_step"],
        "epochs": state["position"]["epoch"],
        "training_seconds": round(training_seconds(metrics), 1),
        "last_evaluation": _last_evaluation(metrics), **software(),
    }  # fmt: skip
    write_text_atomic(entry.record_path, json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)  # fmt: skip
    parser.add_argument("name", choices=sorted(PRETRAINED), help="the PRETRAINED entry")
    parser.add_argument("run", type=Path, help="the training output folder (last.pt, "
                        "metrics.jsonl)")  # fmt: skip
    parser.add_argument("--data", type=Path, help="the training data folder, for the record "
                        "(default: none, recorded as null)")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        record = release(args.name, args.run, args.data)
    except USER_ERRORS as error:  # a missing or foreign run folder, checkpoint or metrics file
        exit_with_error(parser, error)
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
