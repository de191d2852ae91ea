"""HoT demo on one CPU: shipped MixSTE and HoT w. MixSTE weights on synthetic motion.

1. writes the synthetic 3-D motion set (``data/synthetic3d``: 300 frames per sequence, seed 0;
   once);
2. loads the shipped weights (:mod:`tokenprune_models.hot.pretrained`: 27-frame clips, width 64, 8
   loops; HoT keeps 9 of the 27 frames after loop 1 and recovers them before the head), trained by
   this project on a larger set from the same generator; with ``--from-scratch`` it trains both
   models for ``--steps`` steps instead;
3. prints MPJPE and P-MPJPE (mm, flip test) on the test subjects (S9, S11), parameters, FLOPs
   (HoT's convention and with attention) and CPU latency per clip (the models taking turns),
   next to a baseline that predicts the training set's mean pose for every frame;
4. fine-tunes HoT w. MixSTE for ``--finetune-steps`` steps on the training subjects with the
   training engine (``models/hot/configs/synthetic_hot.yaml``, as
   ``python -m tokenprune_models.hot.train``) and evaluates it again, to show that training runs;
5. writes ``runs/hot_demo/results.md`` and ``results.json``.

    python -m tokenprune_models.hot.demo                   # under a minute on 2 cores
    python -m tokenprune_models.hot.demo --from-scratch    # train both for --steps steps instead
    python -m tokenprune_models.hot.demo --quick           # a smoke run (a few steps, tiny data)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

from tokenprune import count_flops

from ..common.cli import HelpFormatter, int_at_least
from ..common.engine import Trainer, load_config
from ..common.reporting import write_results
from ..common.timing import interleaved_latency_ms
from ..pose3d.h36m import PoseSequence, load_split
from ..pose3d.synthetic import ACTIONS, SUBJECTS, write_dataset
from .evaluation import evaluate, score_sequences
from .model import MixSTE
from .pretrained import PRETRAINED, load_pretrained
from .train import FAMILY, build_trainer, make_task

#: (config_name, shipped weights, row name), in the table's order
MODELS = (
    ("mixste", "mixste_synthetic", "MixSTE"),
    ("hot", "hot_mixste_synthetic", "HoT w. MixSTE"),
)
#: HoT's published learning rate, for the fine-tune of converged weights
FINETUNE_LR = 4e-5
#: the training configs of the shipped weights, per config_name (synthetic_<config_name>.yaml)
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"


def ensure_data(root: Path, frames: int, seed: int = 0) -> None:
    """Write the synthetic set unless the same one is already there."""
    marker = root / "complete.json"
    wanted = {"frames": frames, "seed": seed, "generator": 2}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return
    marker.unlink(missing_ok=True)  # a run dying mid-write must not leave a stale marker
    write_dataset(root, frames=frames, seed=seed, subjects=SUBJECTS, actions=ACTIONS)
    marker.write_text(json.dumps(wanted))


def mean_pose_baseline(train: list[PoseSequence], test: list[PoseSequence]) -> dict:
    """MPJPE / P-MPJPE (mm) of predicting the training mean pose for every test frame."""
    mean = torch.from_numpy(sum(s.targets_3d.sum(0) for s in train) / sum(len(s) for s in train))
    guesses = [mean.expand(len(s), -1, -1) for s in test]
    return score_sequences(guesses, test)


def _train(config_name: str, data: Path, output: Path, train: dict,
           weights: MixSTE | None = None) -> tuple[Trainer, dict, float]:  # fmt: skip
    """Train ``config_name``'s synthetic config (``train`` overriding its ``train`` section; from
    ``weights`` if given) on ``data`` in a fresh ``output``; returns the trainer, its last
    evaluation and the training minutes."""
    config = load_config(CONFIGS_DIR / f"synthetic_{config_name}.yaml", sections=FAMILY.sections)
    config["train"].update(train)
    (output / "metrics.jsonl").unlink(missing_ok=True)
    trainer = build_trainer(make_task(config), config, data, output)
    if weights is not None:
        trainer.model.load_state_dict(weights.state_dict())
    start = time.perf_counter()
    metrics = trainer.fit()
    return trainer, metrics, (time.perf_counter() - start) / 60


def _flops(model: MixSTE, frames: int) -> tuple[float, float, float]:
    """``(params M, GFLOPs in HoT's convention, GFLOPs with attention)`` of one clip."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's import and tracer warnings
        report = count_flops(model, torch.randn(1, frames, 17, 2))
    return report.params / 1e6, 2 * report.paper_macs / 1e9, 2 * report.macs / 1e9


def _kept(model: MixSTE) -> str:
    c = model.config
    if c.prune_loop is None:
        return str(c.num_frames)
    return f"{c.num_frames} -> {c.num_kept} after loop {c.prune_loop}"


def _relative(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)  # fmt: skip
    parser.add_argument("--data", type=Path, default=Path("data/synthetic3d"),
                        help="synthetic motion folder (written there once)")  # fmt: skip
    parser.add_argument("--output", type=Path, default=Path("runs/hot_demo"),
                        help="results folder")  # fmt: skip
    parser.add_argument("--from-scratch", action=argparse.BooleanOptionalAction, default=False,
                        help="train both models for --steps steps instead of loading the "
                        "shipped weights")  # fmt: skip
    parser.add_argument("--steps", type=int_at_least(1), default=200,
                        help="training steps per model with --from-scratch")  # fmt: skip
    parser.add_argument("--finetune-steps", type=int_at_least(0), default=100,
                        help="fine-tune steps of HoT w. MixSTE (0: none)")  # fmt: skip
    parser.add_argument("--quick", action=argparse.BooleanOptionalAction, default=False,
                        help="a smoke run for tests: 40-frame sequences, 2 steps")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    frames_per_sequence, batch_size = 300, 16
    if args.quick:
        frames_per_sequence, batch_size = 40, 4
        args.steps, args.finetune_steps = 2, min(args.finetune_steps, 2)
    ensure_data(args.data, frames_per_sequence)
    train = load_split(args.data, "train", "synthetic", "noisy")
    test = load_split(args.data, "test", "synthetic", "noisy")

    budget = {"batch_size": batch_size, "epochs": 100, "progress": not args.quick}
    rows, models = [], []
    for config_name, shipped, name in MODELS:
        if args.from_scratch:
            trainer, metrics, minutes = _train(config_name, args.data, args.output / config_name,
                                               {**budget, "max_steps": args.steps})  # fmt: skip
            model, steps, checkpoint = trainer.model.eval(), trainer.position.global_step, None
        else:
            model = load_pretrained(shipped)
            metrics, minutes = evaluate(model, test), None
            record = json.loads(PRETRAINED[shipped].record_path.read_text())
            steps, checkpoint = record["steps"], _relative(PRETRAINED[shipped].path)
        models.append(model)
        params, gflops, all_gflops = _flops(model, model.config.num_frames)
        rows.append({
            "name": name, "frames": _kept(model), "checkpoint": checkpoint, "steps": steps,
            "training_minutes": minutes, "MPJPE": metrics["MPJPE"],
            "P-MPJPE": metrics["P-MPJPE"], "params": params, "gflops": gflops,
            "all_gflops": all_gflops,
        })  # fmt: skip
    # one clip on one thread, the models taking turns, so drift affects both alike
    clip = torch.randn(1, models[0].config.num_frames, 17, 2)
    latencies = interleaved_latency_ms(models, clip, 20, threads=1)
    for row, latency in zip(rows, latencies, strict=True):
        row["latency_ms"] = latency

    finetune = None
    if args.finetune_steps:
        settings = {**budget, "max_steps": args.finetune_steps, "lr": FINETUNE_LR}
        trainer, metrics, minutes = _train("hot", args.data, args.output / "finetune", settings,
                                           models[-1])  # fmt: skip
        steps = trainer.position.global_step
        finetune = {"name": f"{rows[-1]['name']} + {steps} fine-tune steps",
                    "steps": steps, "lr": trainer.config.lr, "minutes": minutes,
                    "MPJPE_before": rows[-1]["MPJPE"], "MPJPE": metrics["MPJPE"],
                    "P-MPJPE": metrics["P-MPJPE"]}  # fmt: skip

    chance = mean_pose_baseline(train, test)
    table = _table(rows, chance, finetune, len(train), len(test), args.from_scratch)
    print("\n" + table)
    payload = {"chance": chance, "rows": rows, "finetune": finetune}
    written = write_results(args.output, table, payload)
    print(f"\nwrote {written}; total {(time.perf_counter() - start) / 60:.1f} min")
    return 0


def _table(rows, chance, finetune, num_train, num_test, from_scratch) -> str:
    source = (f"trained {rows[0]['steps']} steps each here" if from_scratch else
              "the shipped weights (models/hot/weights)")  # fmt: skip
    lines = [
        f"MixSTE and HoT w. MixSTE, 27-frame clips, width 64, 8 loops: {source}, evaluated on "
        f"the {num_test} test sequences (subjects S9, S11) of the synthetic motion set with the "
        f"flip test; the mean-pose row predicts the mean of the {num_train} training sequences. "
        f"torch {torch.__version__}.",
        "",
        "| model | frames | training steps | MPJPE (mm) | P-MPJPE (mm) | params (M) | "
        "GFLOPs (HoT's convention) | GFLOPs incl. attention | CPU ms/clip (1 thread) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| mean training pose | | | {chance['MPJPE']:.1f} | {chance['P-MPJPE']:.1f} "
        "| | | | |",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['frames']} | {r['steps']} | {r['MPJPE']:.1f} | "
            f"{r['P-MPJPE']:.1f} | {r['params']:.3f} | {r['gflops']:.3f} | "
            f"{r['all_gflops']:.3f} | {r['latency_ms']:.1f} |"
        )
    if finetune is not None:
        lines += [
            "",
            f"Fine-tune: {finetune['name']} at learning rate {finetune['lr']:g} "
            f"({finetune['minutes'] * 60:.0f} s): MPJPE {finetune['MPJPE_before']:.1f} -> "
            f"{finetune['MPJPE']:.1f} mm (P-MPJPE {finetune['P-MPJPE']:.1f} mm).",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
