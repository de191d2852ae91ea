"""GTPT demo on one CPU: shipped GTPT-T weights, pruned vs unpruned, and a short fine-tune.

1. renders the synthetic pose data set (``data/synthetic``, once);
2. loads the shipped GTPT-T weights (``load_pretrained("gtpt_t_synthetic")``: 128x96, trained
   by this project on the synthetic data, see ``models/gtpt/weights/``);
3. evaluates them with pycocotools and flip testing at four keep-rate settings, from unpruned
   to harsher than published, and prints AP, AP50, AR, PCK, multiply-adds (paper convention
   and all), parameters and CPU latency (the four models taking turns);
4. fine-tunes them briefly with the training CLI's engine, to show that the training path
   works, and evaluates the result at the published keep rates;
5. writes ``results.md``, ``results.json``, an accuracy-vs-FLOPs plot and a picture of
   predicted keypoints under ``runs/demo``.

The table starts with the chance level: every person gets the training set's mean pose placed
in their box. ``--from-scratch`` trains GTPT-T from scratch for the demo's budget instead
(400 steps, which stay near chance: GTPT needs thousands of steps, see the README).

    python -m tokenprune_models.gtpt.demo                 # make demo
    python -m tokenprune_models.gtpt.demo --from-scratch  # a from-scratch run, not the weights
    python -m tokenprune_models.gtpt.demo --quick         # a smoke run (tiny data, 2 steps)
"""

from __future__ import annotations

import argparse
import copy
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

from tokenprune import count_flops

from ..common.cli import HelpFormatter, int_at_least
from ..common.reporting import write_results
from ..common.timing import interleaved_latency_ms
from ..pose.cli import load_config
from ..pose.data import KeypointDataset, Person
from ..pose.engine import predict_dataset
from ..pose.evaluation import evaluate_keypoints, keypoint_results
from ..pose.synthetic import SKELETON, generate_split
from .pretrained import PRETRAINED, load_pretrained
from .train import build_trainer

#: The from-scratch run's config.
SCRATCH_CONFIG = Path(__file__).with_name("configs") / "synthetic_demo.yaml"
#: The shipped weights the demo evaluates.
WEIGHTS = "gtpt_t_synthetic"
#: The short fine-tune: from the shipped weights at a tenth of stage 2's peak rate.
FINETUNE = ["train.lr=0.0001", "train.warmup_steps=0", "train.lr_schedule=cosine",
            "train.batch_size=16", "train.epochs=1000", "train.eval_every=1000",
            "train.log_every=1"]  # fmt: skip
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
    results = keypoint_results(ids, points, scores)
    metrics = evaluate_keypoints(trainer.val_set.annotation_file, results)
    return {"AP": metrics["AP"], "AP50": metrics["AP50"], "AR": metrics["AR"],
            "PCK": pck(points, trainer.val_set.people)}  # fmt: skip


def evaluate(trainer, model) -> dict:
    """Scores of ``model`` on the trainer's validation set, with flip testing."""
    predictions = predict_dataset(trainer.task, model, trainer.val_set, trainer.device, 32, 0,
                                  True)  # fmt: skip
    return score_predictions(trainer, predictions)


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


def _table(header: str, chance: dict, rows: list[dict], finetune: dict | None) -> str:
    lines = [
        header,
        "",
        "| keep rates | AP | AP50 | AR | PCK@0.1 | paper GMACs | all GMACs | params (M) "
        "| CPU ms/image (1 thread) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| chance: training mean pose in the box | {chance['AP']:.3f} | {chance['AP50']:.3f} | "
        f"{chance['AR']:.3f} | {chance['PCK']:.3f} | | | | |",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} {list(r['keep_rates'])} | {r['AP']:.3f} | {r['AP50']:.3f} | "
            f"{r['AR']:.3f} | {r['PCK']:.3f} | {r['gmacs']:.4f} | {r['full_gmacs']:.4f} | "
            f"{r['params']:.2f} | {r['latency_ms']:.1f} |"
        )
    if finetune is not None:
        lines += [
            "",
            f"Fine-tune from the shipped weights ({finetune['steps']} steps, batch "
            f"{finetune['batch_size']}, lr {finetune['lr']:g} on a cosine, "
            f"{finetune['seconds']:.0f} s): training loss {finetune['loss_first']:.5f} -> "
            f"{finetune['loss_last']:.5f}; at the published keep rates AP {finetune['AP']:.3f}, "
            f"AP50 {finetune['AP50']:.3f}, PCK@0.1 {finetune['PCK']:.3f}.",
        ]
    return "\n".join(lines)


def _losses(metrics_file: Path) -> list[float]:
    if not metrics_file.is_file():
        return []
    records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line]
    return [r["loss"] for r in records if "loss" in r]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)  # fmt: skip
    parser.add_argument("--data", type=Path, default=Path("data/synthetic"),
                        help="synthetic data folder (rendered there once)")  # fmt: skip
    parser.add_argument("--output", type=Path, default=Path("runs/demo"), help="results folder")
    parser.add_argument("--train-images", type=int_at_least(1), default=1200,
                        help="training images (the chance row and the fine-tune)")  # fmt: skip
    parser.add_argument("--val-images", type=int_at_least(1), default=150,
                        help="validation images")  # fmt: skip
    parser.add_argument("--finetune-steps", type=int_at_least(0), default=30,
                        help="steps of the short fine-tune (0: none)")  # fmt: skip
    parser.add_argument(
        "--from-scratch", action=argparse.BooleanOptionalAction, default=False,
        help="train from scratch instead of loading the shipped weights",
    )  # fmt: skip
    parser.add_argument(
        "--steps", type=int_at_least(1), default=None,
        help="with --from-scratch: the training budget in steps (default: the config's, 400)",
    )  # fmt: skip
    parser.add_argument("--quick", action=argparse.BooleanOptionalAction, default=False,
                        help="a smoke run for tests: 8 + 4 images, at most 2 fine-tune steps")
    args = parser.parse_args(argv)
    if args.steps is not None and not args.from_scratch:
        parser.error("--steps is the from-scratch budget; add --from-scratch")
    start = time.perf_counter()
    torch.manual_seed(0)

    overrides = ["train.progress=true"]
    if args.quick:
        args.train_images, args.val_images = 8, 4
        args.finetune_steps = min(args.finetune_steps, 2)
        overrides += ["train.epochs=1", "train.workers=0"]
    ensure_data(args.data, args.train_images, args.val_images)
    entry = PRETRAINED[WEIGHTS]
    finetune = None
    if args.from_scratch:
        overrides += ["train.batch_size=4"] if args.quick else []
        if args.steps is not None:
            overrides.append(f"train.max_steps={args.steps}")
        config = load_config(SCRATCH_CONFIG, overrides)
        trainer = build_trainer(config, args.data, args.output)
        (args.output / "metrics.jsonl").unlink(missing_ok=True)  # a fresh run
        train_start = time.perf_counter()
        trainer.fit()
        model = trainer.eval_model()
        source = (f"GTPT-T trained from scratch for {trainer.position.global_step} steps "
                  f"({(time.perf_counter() - train_start) / 60:.1f} min)")  # fmt: skip
        config_path, checkpoint = SCRATCH_CONFIG, args.output / "last.pt"
    else:
        model = load_pretrained(WEIGHTS)
        steps = max(args.finetune_steps, 1)
        overrides += [*FINETUNE, f"train.max_steps={steps}", f"train.init_from={entry.path}"]
        if args.quick:
            overrides.append("train.batch_size=4")
        config = load_config(entry.config_path, overrides)
        trainer = build_trainer(config, args.data, args.output / "finetune")
        source = f"the shipped GTPT-T weights ({entry.file})"
        config_path, checkpoint = entry.config_path, entry.path

    image_size = trainer.task.image_size
    chance = score_predictions(trainer, chance_predictions(trainer.train_set, trainer.val_set))
    models = [copy.deepcopy(model) for _ in SETTINGS]
    rows = []
    for (name, rates), variant in zip(SETTINGS, models, strict=True):
        variant.keep_rates = rates
        report = count_flops(variant, torch.randn(1, 3, *image_size))
        rows.append({
            "name": name, "keep_rates": rates, **evaluate(trainer, variant),
            "gmacs": report.paper_macs / 1e9, "full_gmacs": report.macs / 1e9,
            "params": report.params / 1e6,
        })  # fmt: skip
    latencies = interleaved_latency_ms(models, torch.randn(1, 3, *image_size), 20, threads=1)
    for row, latency in zip(rows, latencies, strict=True):
        row["latency_ms"] = latency

    if not args.from_scratch and args.finetune_steps > 0:
        metrics_file = trainer.output / "metrics.jsonl"
        metrics_file.unlink(missing_ok=True)
        (trainer.output / "last.pt").unlink(missing_ok=True)
        tune_start = time.perf_counter()
        trainer.fit()
        seconds = time.perf_counter() - tune_start
        losses = _losses(metrics_file)
        finetune = {
            "steps": trainer.position.global_step, "batch_size": trainer.config.batch_size,
            "lr": trainer.config.lr, "seconds": seconds,
            "loss_first": losses[0] if losses else float("nan"),
            "loss_last": losses[-1] if losses else float("nan"),
            **evaluate(trainer, trainer.eval_model()),
        }  # fmt: skip

    header = (
        f"{source}, GTPT-T at {image_size[0]}x{image_size[1]}, evaluated on "
        f"{len(trainer.val_set)} synthetic validation people with flip testing. PCK@0.1: "
        "keypoints within 0.1 x the box's longer side.\n"
        f"torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()} "
        f"CPU with {os.cpu_count()} cores."
    )
    table = _table(header, chance, rows, finetune)
    print("\n" + table)
    payload = {
        "checkpoint": _relative(checkpoint), "config": _relative(config_path),
        "chance": chance, "rows": rows, "finetune": finetune,
    }  # fmt: skip
    results = write_results(args.output, table, payload)
    published = models[2]
    plot_path = plot(rows, chance["AP"], args.output / "accuracy_vs_flops.png")
    picture = draw_predictions(trainer, published, args.output)
    print(f"\nwrote {plot_path}, {picture} and {results}")
    print(f"total {(time.perf_counter() - start) / 60:.1f} min")
    return 0


def _relative(path: Path) -> str:
    """``path`` relative to the repository when inside it (results name shipped files so)."""
    path = Path(path).resolve()
    root = Path(__file__).resolve().parents[2]
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


if __name__ == "__main__":
    sys.exit(main())
