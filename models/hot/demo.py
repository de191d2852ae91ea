"""HoT demo on one CPU: synthetic motion, a few minutes of training, MixSTE with and without HoT.

1. writes the synthetic 3-D motion set (``data/synthetic3d``, once);
2. trains a small MixSTE (27 frames, width 64, 8 loops) and the same model with HoT (9 of the
   27 frames kept after loop 1, recovered before the head) for the same number of steps;
3. prints MPJPE and P-MPJPE (mm, flip test), parameters, FLOPs (HoT's convention and with
   attention) and CPU latency per clip, next to a baseline that predicts the training set's
   mean pose for every frame; writes ``runs/hot_demo/results.md``.

    python -m models.hot.demo
    python -m models.hot.demo --quick       # a smoke run (a few steps, tiny data)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch

from models.common.reporting import write_results
from models.common.timing import interleaved_latency_ms
from models.pose3d.h36m import PoseSequence, load_split
from models.pose3d.synthetic import ACTIONS, SUBJECTS, write_dataset
from tokenprune import count_flops

from .evaluation import score_sequences
from .train import LiftingConfig, LiftingTrainer

NAMES = {"mixste": "MixSTE", "hot": "HoT w. MixSTE"}


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/synthetic3d"))
    parser.add_argument("--output", type=Path, default=Path("runs/hot_demo"))
    parser.add_argument("--steps", type=int, default=200, help="training steps per model")
    parser.add_argument("--quick", action="store_true", help="a smoke run for tests")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    frames_per_sequence = 300
    base = LiftingConfig(epochs=100, max_steps=args.steps)
    if args.quick:
        frames_per_sequence, base = 40, replace(base, max_steps=2, batch_size=4)
    ensure_data(args.data, frames_per_sequence)
    train, test = load_split(args.data, "train", "synthetic", "noisy"), load_split(
        args.data, "test", "synthetic", "noisy"
    )
    rows, models = [], []
    for variant in ("mixste", "hot"):
        config = replace(base, variant=variant)
        output = args.output / variant
        (output / "metrics.jsonl").unlink(missing_ok=True)  # a fresh run
        trainer = LiftingTrainer(config, train, test, output)
        train_start = time.perf_counter()
        metrics = trainer.fit()
        minutes = (time.perf_counter() - train_start) / 60
        model = trainer.model.eval()
        models.append(model)
        clip = torch.randn(1, config.frames, 17, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fvcore's import and tracer warnings
            report = count_flops(model, clip)
        c = model.config
        kept = str(c.num_frames) if c.prune_loop is None else (
            f"{c.num_frames} -> {c.num_kept} after loop {c.prune_loop}")  # fmt: skip
        rows.append({
            "name": NAMES[variant], "frames": kept, "steps": trainer.step, "minutes": minutes,
            "MPJPE": metrics["MPJPE"], "P-MPJPE": metrics["P-MPJPE"],
            "params": report.params / 1e6, "gflops": 2 * report.paper_macs / 1e9,
            "all_gflops": 2 * report.macs / 1e9,
        })  # fmt: skip
    # both models time one clip on one thread, taking turns, so drift affects both alike
    latencies = interleaved_latency_ms(models, torch.randn(1, base.frames, 17, 2), 20, threads=1)
    for row, latency in zip(rows, latencies, strict=True):
        row["latency_ms"] = latency
    chance = mean_pose_baseline(train, test)
    lines = [
        f"MixSTE and HoT w. MixSTE, 27-frame clips, width 64, 8 loops, trained {rows[0]['steps']}"
        f" steps each on the synthetic motion set ({len(train)} training sequences), evaluated "
        f"on {len(test)} test sequences (subjects S9, S11) with the flip test. "
        f"torch {torch.__version__}.",
        "",
        "| model | frames | MPJPE (mm) | P-MPJPE (mm) | params (M) | GFLOPs (thop x 2) | "
        "GFLOPs incl. attention | CPU ms/clip (1 thread) | training min |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| mean training pose | | {chance['MPJPE']:.1f} | {chance['P-MPJPE']:.1f} | | | | | |",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['frames']} | {r['MPJPE']:.1f} | {r['P-MPJPE']:.1f} | "
            f"{r['params']:.3f} | {r['gflops']:.3f} | {r['all_gflops']:.3f} | "
            f"{r['latency_ms']:.1f} | {r['minutes']:.1f} |"
        )
    table = "\n".join(lines)
    print("\n" + table)
    written = write_results(args.output, table, {"chance": chance, "rows": rows})
    print(f"\nwrote {written}; total {(time.perf_counter() - start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
