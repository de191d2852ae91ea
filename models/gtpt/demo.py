"""GTPT demo on one CPU: synthetic data, a few minutes of training, pruned vs unpruned.

1. renders the synthetic pose data set (``data/synthetic``, once);
2. trains a small GTPT (GTPT-T at 128x96) with the Global Perceived loss for a fixed budget;
3. evaluates the weights (the EMA when the config keeps one) with pycocotools at several
   keep-rate settings, from unpruned to beyond the published rates, with flip testing;
4. prints AP, AR, PCK, multiply-adds, parameters and CPU latency per image, and writes an
   accuracy-vs-FLOPs plot and a picture of predicted keypoints under ``runs/demo``.

The table starts with the chance level: every person gets the training set's mean pose placed
in their box. Ten minutes of CPU training are far from GTPT's 300-epoch recipe; the README says
what the demo reaches against that baseline.

    python -m models.gtpt.demo            # make demo
    python -m models.gtpt.demo --quick    # a smoke run (seconds of training, tiny data)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image, ImageDraw

from models.common.reporting import write_results
from models.common.timing import interleaved_latency_ms
from models.pose.cli import load_config
from models.pose.data import KeypointDataset, Person
from models.pose.engine import predict_dataset
from models.pose.evaluation import evaluate_keypoints, keypoint_results
from models.pose.synthetic import SKELETON, generate_split
from tokenprune import count_flops

from .train import build_trainer

CONFIG = Path(__file__).with_name("configs") / "synthetic_demo.yaml"
#: Keep rates evaluated: unpruned, milder than published, published, harsher.
SETTINGS = [
    ("unpruned", (1.0, 1.0, 1.0, 1.0)),
    ("mild", (1.0, 0.85, 0.6, 0.4)),
    ("published", (1.0, 0.7, 0.3, 0.1)),
    ("aggressive", (1.0, 0.5, 0.2, 0.05)),
]


def ensure_data(root: Path, train: int, val: int, seed: int = 0) -> None:
    """Render the synthetic data set unless a complete one is already there."""
    marker = root / "complete.json"
    wanted = {"train": train, "val": val, "seed": seed}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return
    start = time.perf_counter()
    for split, count in (("train", train), ("val", val)):
        generate_split(root, split, count, seed=seed)
    marker.write_text(json.dumps(wanted))
    print(f"rendered {train} + {val} synthetic images in {time.perf_counter() - start:.0f} s")


def mean_pose(people: list[Person]) -> np.ndarray:
    """``[K, 2]`` mean position of each labelled keypoint in box-relative coordinates."""
    sums, counts = 0.0, 0.0
    for person in people:
        x, y, w, h = person.box
        labelled = person.keypoints[:, 2:] > 0
        relative = (person.keypoints[:, :2] - (x, y)) / (w, h)
        sums, counts = sums + relative * labelled, counts + labelled
    return sums / np.maximum(counts, 1)


def chance_predictions(train: KeypointDataset, val: KeypointDataset) -> tuple:
    """The training mean pose placed in every validation box: ``(ids, points [N, K, 2],
    scores [N, K])`` like :func:`predict_dataset`."""
    relative = mean_pose(train.people)
    ids = np.array([p.image_id for p in val.people])
    points = np.stack([relative * p.box[2:] + p.box[:2] for p in val.people])
    return ids, points, np.ones(points.shape[:2])


def pck(points: np.ndarray, people: list[Person], threshold: float = 0.1) -> float:
    """Fraction of labelled keypoints within ``threshold`` x the box's longer side."""
    hits, total = 0, 0
    for predicted, person in zip(points, people, strict=True):
        labelled = person.keypoints[:, 2] > 0
        error = np.linalg.norm(predicted - person.keypoints[:, :2], axis=1)[labelled]
        hits += int((error <= threshold * max(person.box[2:])).sum())
        total += int(labelled.sum())
    return hits / max(total, 1)


def score_predictions(trainer, predictions: tuple) -> dict:
    ids, points, scores = predictions
    metrics = evaluate_keypoints(trainer.val_annotations, keypoint_results(ids, points, scores))
    return {"AP": metrics["AP"], "AR": metrics["AR"], "PCK": pck(points, trainer.val_set.people)}


def latency_ms(model, image_size, repeats: int = 20) -> float:
    """Median batch-1 CPU latency on one thread."""
    images = torch.randn(1, 3, *image_size)
    return interleaved_latency_ms([model], images, repeats, threads=1)[0]


def draw_predictions(trainer, model, output: Path, count: int = 4) -> Path:
    """The first ``count`` validation images with predicted skeletons drawn on them."""
    dataset = trainer.val_set
    ids, points, _ = predict_dataset(trainer.task, model, dataset, trainer.device, 32, 0, True)
    images = sorted({p.image_id: p.file for p in dataset.people}.items())[:count]
    tiles = []
    for image_id, file in images:
        image = Image.open(file).convert("RGB")
        draw = ImageDraw.Draw(image)
        for person in np.nonzero(ids == image_id)[0]:
            kp = points[person]
            for a, b in SKELETON:
                draw.line([tuple(kp[a - 1]), tuple(kp[b - 1])], fill=(255, 255, 0), width=2)
            for x, y in kp:
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(255, 0, 0))
        tiles.append(image)
    width = sum(t.width for t in tiles)
    canvas = Image.new("RGB", (width, max(t.height for t in tiles)))
    offset = 0
    for tile in tiles:
        canvas.paste(tile, (offset, 0))
        offset += tile.width
    path = output / "predictions.png"
    canvas.save(path)
    return path


def plot(rows: list[dict], chance_ap: float, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    ap = [r["AP"] for r in rows]
    ax.plot([r["gmacs"] for r in rows], ap, "o-", label="paper-convention MACs")
    ax.plot([r["full_gmacs"] for r in rows], ap, "s--", label="all MACs")
    for r in rows:
        ax.annotate(r["name"], (r["gmacs"], r["AP"]), textcoords="offset points", xytext=(4, 4),
                    fontsize=7)  # fmt: skip
    ax.axhline(chance_ap, color="grey", linewidth=0.8, label="chance (mean pose)")
    ax.set_xlabel("GMACs per image")
    ax.set_ylabel("OKS AP (synthetic val)")
    ax.set_title("GTPT-T 128x96: accuracy vs multiply-adds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/synthetic"))
    parser.add_argument("--output", type=Path, default=Path("runs/demo"))
    parser.add_argument("--train-images", type=int, default=1200)
    parser.add_argument("--val-images", type=int, default=150)
    parser.add_argument("--steps", type=int, default=None, help="training budget in steps")
    parser.add_argument("--quick", action="store_true", help="a smoke run for tests")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    torch.manual_seed(0)

    overrides = ["train.progress=true"]
    if args.quick:
        args.train_images, args.val_images = 8, 4
        overrides += ["train.epochs=1", "train.batch_size=4", "train.workers=0"]
    if args.steps is not None:
        overrides.append(f"train.max_steps={args.steps}")
    ensure_data(args.data, args.train_images, args.val_images)
    config = load_config(CONFIG, overrides)
    trainer = build_trainer(config, args.data, args.output)
    if (args.output / "metrics.jsonl").exists():
        (args.output / "metrics.jsonl").unlink()  # a fresh run
    train_start = time.perf_counter()
    trainer.fit()
    train_seconds = time.perf_counter() - train_start

    model = trainer.eval_model()
    image_size = trainer.task.image_size
    chance = score_predictions(trainer, chance_predictions(trainer.train_set, trainer.val_set))
    rows = []
    for name, rates in SETTINGS:
        model.keep_rates = rates
        predictions = predict_dataset(trainer.task, model, trainer.val_set, trainer.device, 32,
                                      0, True)  # fmt: skip
        report = count_flops(model, torch.randn(1, 3, *image_size))
        rows.append({
            "name": name, "keep_rates": rates, **score_predictions(trainer, predictions),
            "gmacs": report.paper_macs / 1e9, "full_gmacs": report.macs / 1e9,
            "params": report.params / 1e6, "latency_ms": latency_ms(model, image_size),
        })  # fmt: skip
    model.keep_rates = SETTINGS[2][1]

    lines = [
        f"GTPT-T at {image_size[0]}x{image_size[1]} trained {trainer.position.global_step} "
        f"steps ({train_seconds / 60:.1f} min) on {len(trainer.train_set)} synthetic people; "
        f"evaluated on {len(trainer.val_set)} people with flip testing"
        f"{' (EMA weights)' if trainer.ema is not None else ''}. PCK@0.1: keypoints within 0.1"
        " x the box's longer side.",
        f"torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()} CPU"
        f" with {os.cpu_count()} cores.",
        "",
        "| keep rates | AP | AR | PCK@0.1 | paper GMACs | all GMACs | params (M) "
        "| CPU ms/image (1 thread) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| chance: training mean pose in the box | {chance['AP']:.3f} | {chance['AR']:.3f} | "
        f"{chance['PCK']:.3f} | | | | |",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} {list(r['keep_rates'])} | {r['AP']:.3f} | {r['AR']:.3f} | "
            f"{r['PCK']:.3f} | {r['gmacs']:.4f} | {r['full_gmacs']:.4f} | {r['params']:.2f} | "
            f"{r['latency_ms']:.1f} |"
        )
    table = "\n".join(lines)
    print("\n" + table)
    results = write_results(args.output, table, {"chance": chance, "rows": rows})
    plot_path = plot(rows, chance["AP"], args.output / "accuracy_vs_flops.png")
    picture = draw_predictions(trainer, model, args.output)
    print(f"\nwrote {plot_path}, {picture} and {results}")
    print(f"total {(time.perf_counter() - start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
