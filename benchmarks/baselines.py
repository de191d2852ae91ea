"""Baselines benchmark: TokenPose-S-v1/B, PPT-S/B (= DPPT at inference) and HEViTPose-T/S/B.

For each model: parameters, paper-convention multiply-adds (thop's module hooks, what the
TokenPose/PPT tables call GFLOPs), the full count (fvcore: every convolution and matrix product,
attention included; what this project matches HEViTPose's GFLOPs with), the published figures,
and CPU latency. Each PPT is also timed against the same weights unpruned (TokenPose), in the
same run, so the speedup is a ratio of two measurements taken side by side.

    python -m benchmarks.baselines --output benchmarks/results/baselines_cpu.md
    python -m benchmarks.baselines --quick      # a smoke run: batch 1, one repeat
"""

from __future__ import annotations

import sys
import warnings

import torch

from tokenprune import count_flops
from tokenprune_models.common.timing import interleaved_latency_ms
from tokenprune_models.hevitpose import PUBLISHED as HEVITPOSE_PUBLISHED
from tokenprune_models.hevitpose import build_hevitpose
from tokenprune_models.tokenpose import build_tokenpose

from .report import add_timing_arguments, make_parser, publish, resolve_timing

POSE = (3, 256, 192)
MPII = (3, 256, 256)


def _models():
    """Groups of ``(name, model, input shape, published (params M, GFLOPs), note)``; the models of
    a group are timed taking turns (TokenPose and PPT share their weights)."""
    torch.manual_seed(0)
    for variant, name, published in (("s", "S-v1", (6.6, 2.4, 2.0)), ("b", "B", (13.5, 6.0, 5.6))):
        params, full_gflops, pruned_gflops = published
        tokenpose = build_tokenpose(f"tokenpose_{variant}").eval()
        ppt = build_tokenpose(f"ppt_{variant}").eval()
        ppt.load_state_dict(tokenpose.state_dict())  # same weights: only the pruning differs
        pruned = f"PPT-{variant.upper()} / DPPT-{variant.upper()}"
        yield [(f"TokenPose-{name}", tokenpose, POSE, (params, full_gflops), "unpruned"),
               (pruned, ppt, POSE, (params, pruned_gflops), "pruned 256 -> 180 -> 126 -> 89")]
    for variant in "tsb":
        params, gflops = HEVITPOSE_PUBLISHED[f"hevitpose_{variant}"]
        model = build_hevitpose(f"hevitpose_{variant}").eval()
        yield [(f"HEViTPose-{variant.upper()}", model, MPII, (params / 1e6, gflops / 1e9), "MPII")]


def table(batches: list[int], repeats: int) -> list[str]:
    lines = [
        "| model | input | params (M) | published | paper GMACs | full GMACs | published "
        "GFLOPs | " + " | ".join(f"CPU ms, batch {b}" for b in batches) + " | note |",
        "|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(batches) + "---|",
    ]
    latency = {}
    for group in _models():
        shape = group[0][2]
        group_models = [model for _, model, *_ in group]
        per_batch = [interleaved_latency_ms(group_models, torch.randn(b, *shape), repeats)
                     for b in batches]  # fmt: skip
        for index, (name, model, shape, (params, gflops), note) in enumerate(group):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # fvcore's import and tracer warnings
                report = count_flops(model, torch.randn(1, *shape))
            times = [t[index] for t in per_batch]
            latency[name] = times
            lines.append(
                f"| {name} | {shape[1]}x{shape[2]} | {report.params / 1e6:.3f} | {params:.2f} | "
                f"{report.paper_macs / 1e9:.3f} | {report.macs / 1e9:.3f} | {gflops:.2f} | "
                + " | ".join(f"{t:.1f}" for t in times) + f" | {note} |"
            )
            print(lines[-1], flush=True)
    lines.append("")
    for full_name, pruned_name in (("TokenPose-S-v1", "PPT-S / DPPT-S"),
                                   ("TokenPose-B", "PPT-B / DPPT-B")):  # fmt: skip
        pairs = zip(batches, latency[full_name], latency[pruned_name], strict=True)
        speedups = [f"batch {b}: {full / pruned:.2f}x" for b, full, pruned in pairs]
        lines.append(f"{pruned_name.split(' ')[0]} against the same weights unpruned: "
                     + ", ".join(speedups) + ".")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    add_timing_arguments(parser, batches=[1, 16], repeats=10)
    args = resolve_timing(parser.parse_args(argv))
    torch.set_num_threads(args.threads)
    notes = [
        "Paper GMACs: thop's module hooks (Linear, Conv, normalisation; no attention matmuls). "
        "thop counts a transposed convolution over its output positions, four times the real "
        "multiply-adds of HEViTPose's stride-2 head, so for HEViTPose the full count (fvcore, "
        "transposed convolutions counted over input positions, attention included) is the one "
        "compared with the published GFLOPs. HEViTPose's configurations are this project's "
        "(no official code). Latency: median of the repeats after a warm-up, float32, "
        "eval mode, no BatchNorm folding; a TokenPose and its PPT take turns within every "
        "repeat, so drift in the machine's speed does not bias their ratio.",
    ]
    publish("Baselines benchmark", f", {args.threads} threads",
            lambda: table(args.batches, args.repeats), notes, args.output)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
