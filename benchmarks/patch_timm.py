"""Benchmark of ``tokenprune.patch.timm``: ViT-Ti/S/B/16 pruned (EViT: keep rate 0.7 after
blocks 4, 7 and 10) against the same model unpatched, on the CPU.

For every size it counts multiply-adds (the full count, attention included) and times both
models at each batch size and thread count, eager and under ``torch.compile``; the pruned and
the unpruned model take turns within every repeat, and the median of the repeats is reported.
The figure of merit is the latency reduction as a fraction of the multiply-add reduction,
``(1 - t_pruned / t_unpruned) / (1 - macs_pruned / macs_unpruned)``: 1.0 means the time falls
exactly as the work does.

The models are timm's when ``import timm`` works, else the timm-layout stand-in of
``tests/oracles/timm_vit.py`` (same modules and forward pass; timm imports torchvision, whose
PyPI wheels do not load on this project's CPU torch build). Weights are random: neither token
counts nor time depend on them.

    python -m benchmarks.patch_timm --output benchmarks/results/patch_timm_cpu.md
    python -m benchmarks.patch_timm --quick       # ViT-Ti at batch 1, one thread (tests)
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

import tokenprune.patch
from benchmarks.report import environment_line, make_parser
from tokenprune import count_flops
from tokenprune_models.common.atomic import write_text_atomic
from tokenprune_models.common.cli import int_at_least
from tokenprune_models.common.timing import interleaved_latency_ms

KEEP_RATE, LAYERS = 0.7, (3, 6, 9)
TARGET = 0.9


def build_vit(size: str) -> tuple[nn.Module, str]:
    """ViT-``size``/16 at 224 (random weights) and where it came from."""
    try:
        import timm
    except Exception:  # timm missing, or torchvision failing to load
        from tests.oracles.timm_vit import vit

        return vit(size).eval(), "timm-layout stand-in (tests/oracles/timm_vit.py)"
    return timm.create_model(f"vit_{size}_patch16_224", pretrained=False).eval(), "timm"


def run(sizes: Sequence[str], batches: Sequence[int], threads: Sequence[int], repeats: int,
        compile_too: bool) -> tuple[str, bool]:  # fmt: skip
    """The markdown report and whether every row meets the target."""
    torch.manual_seed(0)
    rows, met, sources = [], True, set()
    for size in sizes:
        unpruned, source = build_vit(size)
        sources.add(source)
        pruned = tokenprune.patch.timm(copy.deepcopy(unpruned), keep_rate=KEEP_RATE, layers=LAYERS)
        image = torch.randn(1, 3, 224, 224)
        macs_u, macs_p = (count_flops(m, image).macs for m in (unpruned, pruned))
        mac_cut = 1 - macs_p / macs_u
        for mode in ("eager", "compile") if compile_too else ("eager",):
            models = (unpruned, pruned)
            if mode == "compile":
                torch._dynamo.reset()
                models = tuple(torch.compile(m, dynamic=False) for m in models)
            for num_threads in threads:
                for batch in batches:
                    x = torch.randn(batch, 3, 224, 224)
                    t_u, t_p = interleaved_latency_ms(models, x, repeats, threads=num_threads)
                    share = (1 - t_p / t_u) / mac_cut
                    met &= share >= TARGET
                    rows.append(
                        f"| ViT-{size[0].upper()} | {mode} | {num_threads} | {batch} "
                        f"| {macs_u / 1e9:.2f} | {macs_p / 1e9:.2f} | {macs_u / macs_p:.2f}x "
                        f"| {t_u:.1f} | {t_p:.1f} | {t_u / t_p:.2f}x | {share:.2f} |"
                    )
    header = [
        "# tokenprune.patch.timm on ViT-Ti/S/B/16: pruned against unpruned (CPU)",
        "",
        f"{environment_line()}; models: {', '.join(sorted(sources))}, 224x224, random weights.",
        "",
        f"Pruned: `tokenprune.patch.timm(model, keep_rate={KEEP_RATE}, layers={LAYERS}, "
        f"rule='cls', fuse=True)` (EViT). GMACs: the full count at batch 1, attention included. "
        f"Times: median of {repeats} repeats in ms per batch, pruned and unpruned taking turns. "
        "Share: latency reduction / MAC reduction (target >= 0.9).",
        "",
        "| model | mode | threads | batch | GMACs unpruned | GMACs pruned | MAC ratio "
        "| ms unpruned | ms pruned | speed-up | share |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    return "\n".join(header + rows) + "\n", met


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small", "base"],
                        choices=["tiny", "small", "base"], help="ViT sizes")  # fmt: skip
    parser.add_argument("--batches", nargs="+", type=int_at_least(1), default=[1, 32],
                        help="batch sizes")  # fmt: skip
    parser.add_argument("--threads", nargs="+", type=int_at_least(1), default=[1, 2],
                        help="CPU thread counts to compare (torch.set_num_threads); the sweep "
                        "replaces OMP_NUM_THREADS")  # fmt: skip
    parser.add_argument("--repeats", type=int_at_least(1), default=3,
                        help="timed repeats per measurement")  # fmt: skip
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="also time both models under torch.compile")  # fmt: skip
    parser.add_argument("--quick", action=argparse.BooleanOptionalAction, default=False,
                        help="a smoke run of seconds, what the tests run: ViT-Ti, batch 1, one "
                        "thread, 2 repeats, eager only")  # fmt: skip
    parser.add_argument("--output", type=Path,
                        help="also write the markdown report here (default: print only)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.batches, args.threads, args.repeats = ["tiny"], [1], [1], 2
        args.compile = False
    report, met = run(args.sizes, args.batches, args.threads, args.repeats, args.compile)
    print(report)
    if args.output is not None:
        write_text_atomic(args.output, report)
    print(f"target (share >= {TARGET}) {'met in every row' if met else 'missed in some rows'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
