"""Ship the weights of a finished training run: half-precision weights only, a learning-curve
plot across its stages and a JSON record of how they were made.

    python -m tokenprune_models.gtpt.release gtpt_t_synthetic \\
        --stage models/gtpt/configs/synthetic_t_64x48.yaml runs/gtpt_t_synthetic_64x48 \\
        --stage models/gtpt/configs/synthetic_t_128x96.yaml runs/gtpt_t_synthetic_128x96

The last stage's ``last.pt`` (the weights its evaluation used) becomes the entry's weights file
(:data:`tokenprune_models.gtpt.pretrained.PRETRAINED`); ``<file>_curve.png`` plots every stage's
loss and AP with the step count running on across stages; ``<file>.json`` records per stage the
config, seed, steps, training wall time and the final evaluation, plus the software versions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..common.atomic import write_text_atomic
from ..common.cli import USER_ERRORS, HelpFormatter, exit_with_error
from ..common.curves import plot_learning_curve, read_learning_curve
from ..common.engine import evaluation_weights, load_training_checkpoint
from ..common.release import save_half_precision, software, training_seconds
from .pretrained import PRETRAINED


def _last_evaluation(metrics: Path) -> dict:
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    evaluations = [r for r in records if "eval_epoch" in r]
    return evaluations[-1] if evaluations else {}


def release(name: str, stages: list[tuple[Path, Path]]) -> dict:
    """Write the weights file, curve and record of :data:`PRETRAINED` entry ``name`` from
    ``stages`` (``(config, output folder)`` pairs, in training order); returns the record."""
    if name not in PRETRAINED:
        raise ValueError(f"name must be one of {sorted(PRETRAINED)}, got {name!r}")
    if not stages:
        raise ValueError("give at least one --stage")
    entry = PRETRAINED[name]
    record_stages, curves, offset = [], [], 0
    for config, output in stages:
        state = load_training_checkpoint(output / "last.pt")
        metrics = output / "metrics.jsonl"
        steps = state["position"]["global_step"]
        curves.append((f"{config.stem}", read_learning_curve(metrics, "AP", offset)))
        record_stages.append({
            "config": config.as_posix(), "output": output.as_posix(),
            "seed": state["config"]["seed"], "steps": steps,
            "batch_size": state["config"]["batch_size"],
            "training_seconds": round(training_seconds(metrics), 1),
            "final_evaluation": _last_evaluation(metrics),
        })  # fmt: skip
        offset += steps
    save_half_precision(evaluation_weights(state), entry.path)
    curve = entry.path.with_name(entry.path.stem + "_curve.png")
    plot_learning_curve(curves, curve, "AP", f"{name}: loss and AP (published keep rates)")
    record = {
        "name": name, "weights": entry.path.name, "curve": curve.name,
        "stages": record_stages, "total_steps": offset, **software(),
    }  # fmt: skip
    write_text_atomic(entry.path.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)  # fmt: skip
    parser.add_argument("name", choices=sorted(PRETRAINED), help="the PRETRAINED entry")
    parser.add_argument(
        "--stage", nargs=2, action="append", type=Path, metavar=("CONFIG", "OUTPUT"),
        required=True, help="a training stage's config and output folder, in order; repeatable",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        record = release(args.name, [tuple(s) for s in args.stage])
    except USER_ERRORS as error:  # a missing or foreign run folder, checkpoint or metrics file
        exit_with_error(parser, error)
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
