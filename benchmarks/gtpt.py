"""GTPT benchmark: parity with the published tables, and real speed from pruning.

Parity: parameters and paper-convention multiply-adds (thop MACs, what the GTPT README calls
"GFLOPs") of GTPT-T/S/B for COCO and COCO-WholeBody, next to the published figures and the counts
measured on the official implementation, with the full count including attention beside them.

Speed: GTPT (S by default) at the published keep rates against the same weights with every keep
rate 1.0, on the CPU (one thread and all threads, batch 1 and 32) and on a GPU when one is
present. The measured speedup is compared with the reduction in multiply-adds; the target is a
speedup of at least 80% of that reduction.

    python -m benchmarks.gtpt --output benchmarks/results/gtpt_cpu.md
    python -m benchmarks.gtpt --quick     # a smoke run: GTPT-T only, batch 1, one repeat
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from tokenprune import count_flops
from tokenprune_models.common.atomic import write_text_atomic
from tokenprune_models.gtpt import build_gtpt, optimize_for_inference

from .report import (
    default_threads,
    environment_line,
    int_at_least,
    make_parser,
    threads_help,
)

IMAGE = (3, 256, 192)
UNPRUNED = (1.0, 1.0, 1.0, 1.0)

# GTPT README: params (M, COCO models) and "GFLOPs" (thop MACs); official implementation:
# exact counts for T (fixture meta), rounded for S and B (reference notes; params there include
# the fixed 256 x dim positional table, which this model keeps as a buffer).
PUBLISHED = {
    ("t", "coco"): (2.4, 0.7), ("t", "wholebody"): (None, 0.8),
    ("s", "coco"): (5.4, 1.6), ("s", "wholebody"): (None, 2.0),
    ("b", "coco"): (8.3, 3.6), ("b", "wholebody"): (None, 4.0),
}  # fmt: skip
OFFICIAL = {
    ("t", "coco"): ("2.373 (exact: 2,372,864)", "0.6632 (exact: 663,179,264)"),
    ("t", "wholebody"): ("2.388 (exact: 2,388,352)", "0.8318 (exact: 831,771,648)"),
    ("s", "coco"): ("5.48 with table", "1.63"),
    ("s", "wholebody"): ("-", "1.99"),
    ("b", "coco"): ("8.37 with table", "3.65"),
    ("b", "wholebody"): ("-", "4.02"),
}


def parity_table(variants: tuple[str, ...] = ("t", "s", "b")) -> list[str]:
    """The parameter and multiply-add table of ``variants`` (COCO and WholeBody each)."""
    lines = [
        "## Parameters and multiply-adds (batch 1, 256x192)",
        "",
        "Paper convention: thop's module-hook MACs (Linear, Conv, normalisation; no attention "
        "matmuls), which the GTPT README reports as GFLOPs. Full: every matrix product and "
        "convolution including attention (FLOPs are twice these MACs).",
        "",
        "| model | params (M) | published | official | paper GMACs | published | official "
        "| full GMACs | full / paper |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (variant, dataset), (pub_params, pub_gmacs) in PUBLISHED.items():
        if variant not in variants:
            continue
        model = build_gtpt(f"gtpt_{variant}_{dataset}").eval()
        report = count_flops(model, torch.randn(1, *IMAGE))
        official_params, official_gmacs = OFFICIAL[(variant, dataset)]
        lines.append(
            f"| GTPT-{variant.upper()} {dataset} | {report.params / 1e6:.3f} | "
            f"{pub_params if pub_params is not None else '-'} | {official_params} | "
            f"{report.paper_macs / 1e9:.4f} | {pub_gmacs} | {official_gmacs} | "
            f"{report.macs / 1e9:.4f} | {report.macs / report.paper_macs:.2f} |"
        )
    return lines


def time_cpu(model, images, repeats: int) -> tuple[float, float]:
    """(median, min) milliseconds over ``repeats`` forward passes after a warm-up."""
    times = []
    with torch.inference_mode():
        model(images)
        for _ in range(repeats):
            start = time.perf_counter()
            model(images)
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times)


def time_stages(model, images, repeats: int) -> tuple[float, float]:
    """Median milliseconds of the stem + patch embedding and of the transformer."""
    embed, encode = [], []
    with torch.inference_mode():
        visual = model.embed(images)
        for _ in range(repeats):
            start = time.perf_counter()
            visual = model.embed(images)
            middle = time.perf_counter()
            model.encode(visual, model.keep_rates)
            end = time.perf_counter()
            embed.append((middle - start) * 1e3)
            encode.append((end - middle) * 1e3)
    return statistics.median(embed), statistics.median(encode)


def time_gpu(model, images) -> tuple[float, float]:
    import triton.testing

    with torch.inference_mode():
        median = triton.testing.do_bench(lambda: model(images), return_mode="median")
        low = triton.testing.do_bench(lambda: model(images), quantiles=[0.2])
    return median, low if isinstance(low, float) else low[0]


def speed_table(variant: str, batches: list[int], threads: list[int], repeats: int) -> list[str]:
    torch.manual_seed(0)
    pruned = build_gtpt(f"gtpt_{variant}_coco").eval()
    full = build_gtpt(f"gtpt_{variant}_coco", keep_rates=UNPRUNED).eval()
    full.load_state_dict(pruned.state_dict())
    sample = torch.randn(1, *IMAGE)
    r_pruned, r_full = count_flops(pruned, sample), count_flops(full, sample)
    # timed as deployed: BatchNorm folded, channels-last stem, for both models
    pruned, full = optimize_for_inference(pruned), optimize_for_inference(full)
    reduction = r_full.macs / r_pruned.macs
    paper_reduction = r_full.paper_macs / r_pruned.paper_macs

    def transformer_macs(report) -> int:  # everything after the stem and patch embedding
        return report.macs - report.by_module.get("stem", 0) - report.by_module["patch_embed"]

    transformer_reduction = transformer_macs(r_full) / transformer_macs(r_pruned)
    lines = [
        f"## Speed: GTPT-{variant.upper()} COCO, published keep rates vs every keep rate 1.0",
        "",
        f"Same weights. Multiply-adds per image: pruned {r_pruned.macs / 1e9:.3f} G, unpruned "
        f"{r_full.macs / 1e9:.3f} G (full count): {reduction:.2f}x fewer "
        f"({paper_reduction:.2f}x by the paper convention). Target: speedup >= 80% of the full "
        f"reduction, i.e. >= {0.8 * reduction:.2f}x. Both models are timed as deployed with "
        "`tokenprune_models.gtpt.optimize_for_inference` (BatchNorm folded into the convolutions, "
        "channels-last stem; eager PyTorch, inference mode).",
        "",
        "Pruning cannot shorten the stem and patch embedding, so the two parts are also timed "
        "separately. *Bound* is the end-to-end speedup the model would reach if the transformer "
        f"ran exactly {transformer_reduction:.2f}x faster (its own multiply-add reduction) next "
        "to the measured stem: `(stem + T) / (stem + T / reduction)` with `T` the unpruned "
        "transformer time. Where a row misses the target, *why* says whether the stem alone "
        "explains it (bound below target) or the transformer falls short of its multiply-add "
        "reduction (per-operation overheads: scoring, sorting, gathers, small matrix products).",
        "",
        "| device | threads | batch | pruned ms (median / min) | unpruned ms (median / min) "
        "| speedup (median) | speedup / FLOP reduction | target | stem share (pruned) "
        f"| transformer speedup (MACs {transformer_reduction:.2f}x) | bound | why |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]

    def row(device, thread_label, batch, t_pruned, t_full, stages=None):
        speedup = t_full[0] / t_pruned[0]
        efficiency = speedup / reduction
        verdict = "met" if efficiency >= 0.8 else f"missed ({efficiency:.0%})"
        breakdown = "| - | - | - | -"
        if stages is not None:
            (stem_p, enc_p), (stem_f, enc_f) = stages
            stem = (stem_p + stem_f) / 2
            bound = (stem + enc_f) / (stem + enc_f / transformer_reduction)
            why = "-"
            if efficiency < 0.8:
                why = "stem" if bound < 0.8 * reduction else "transformer overhead"
            breakdown = (
                f"| {stem_p / (stem_p + enc_p):.0%} | {enc_f / enc_p:.2f}x | {bound:.2f}x | {why}"
            )
        return (
            f"| {device} | {thread_label} | {batch} | {t_pruned[0]:.1f} / {t_pruned[1]:.1f} | "
            f"{t_full[0]:.1f} / {t_full[1]:.1f} | {speedup:.2f}x | {efficiency:.0%} | {verdict} "
            f"{breakdown} |"
        )

    cpu = f"CPU ({platform.machine()})"
    for count in threads:
        torch.set_num_threads(count)
        for batch in batches:
            images = torch.randn(batch, *IMAGE)
            t_pruned = time_cpu(pruned, images, repeats)
            t_full = time_cpu(full, images, repeats)
            stages = time_stages(pruned, images, repeats), time_stages(full, images, repeats)
            lines.append(row(cpu, count, batch, t_pruned, t_full, stages))
            print(lines[-1], flush=True)
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for dtype in (torch.float32, torch.float16):
            gpu_pruned, gpu_full = pruned.cuda().to(dtype), full.cuda().to(dtype)
            for batch in batches:
                images = torch.randn(batch, *IMAGE, device="cuda", dtype=dtype)
                timings = time_gpu(gpu_pruned, images), time_gpu(gpu_full, images)
                lines.append(row(f"{name} {str(dtype)[6:]}", "-", batch, *timings))
                print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--variant", default=None, choices=["t", "s", "b"],
                        help="the GTPT size timed (default: s; t with --quick)")
    parser.add_argument("--batches", type=int_at_least(1), nargs="+", default=None,
                        help="batch sizes to time (default: 1 32; 1 with --quick)")
    parser.add_argument("--threads", type=int_at_least(1), nargs="+", default=None,
                        help=threads_help("1 and the number of CPU cores; 1 with --quick"))
    parser.add_argument("--repeats", type=int_at_least(1), default=None,
                        help="timed repeats per measurement (default: 10; 1 with --quick)")
    parser.add_argument("--parity", action=argparse.BooleanOptionalAction, default=True,
                        help="the parameter and multiply-add table (with --quick: GTPT-T's)")
    parser.add_argument("--quick", action=argparse.BooleanOptionalAction, default=False,
                        help="a smoke run of seconds, what the tests run: GTPT-T, batch 1, one "
                        "repeat, one thread count")  # fmt: skip
    parser.add_argument("--output", type=Path, help="also write the markdown report here "
                        "(default: print only)")  # fmt: skip
    args = parser.parse_args(argv)
    quick = args.quick
    variant = args.variant or ("t" if quick else "s")
    batches = args.batches or ([1] if quick else [1, 32])
    repeats = args.repeats or (1 if quick else 10)
    omp = default_threads(fallback=0)  # 0: OMP_NUM_THREADS unset
    threads = args.threads or ([omp or 1] if quick else [omp] if omp else
                               [1, os.cpu_count() or 1])  # fmt: skip

    header = [
        "# GTPT benchmark",
        "",
        environment_line(),
        "",
    ]
    print("\n".join(header), flush=True)
    lines = list(header)
    if args.parity:
        lines += [*parity_table((variant,) if quick else ("t", "s", "b")), ""]
        print("\n".join(lines[len(header):]), flush=True)
    lines += speed_table(variant, batches, sorted(set(threads)), repeats)
    text = "\n".join(lines) + "\n"
    if args.output is not None:
        write_text_atomic(args.output, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
