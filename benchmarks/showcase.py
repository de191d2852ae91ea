"""Showcase: GTPT-T, assembled from tokenprune, pruned vs unpruned.

GTPT's token flow on 256 visual tokens (a 16 x 16 grid of 16 x 12-pixel patches of a 256 x 192
crop):

* layers 1-6: self-attention over the human token (from layer 4 on, the 17 keypoint tokens)
  and the visual tokens; after the attention of layer 4 the visual tokens are pruned to 70% by
  the human token's softmax-pooled logits;
* after layer 6: three keypoint groups each get their own copy of the visual tokens and keep
  their best 30%, scored by their own keypoints;
* layers 7-12: Multi-Head Group Attention; after the attention of layer 10 each group prunes
  again, to 10%.

It prints, per layer, the tokens each query group sees and the multiply-adds, for the model at
the published keep rates and for the same weights with every keep rate at 1, then CPU latency
of both. The weights are random: token counts, MACs and latency do not depend on them. Run it
with ``python -m benchmarks.showcase``.
"""

from __future__ import annotations

import copy
import platform
import sys
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

import tokenprune
from tokenprune import count_flops
from tokenprune_models.common.atomic import write_text_atomic
from tokenprune_models.gtpt import build_gtpt
from tokenprune_models.gtpt.config import PRESETS
from tokenprune_models.gtpt.model import UNPRUNED

from .report import add_timing_arguments, make_parser, resolve_timing

PUBLISHED = PRESETS["gtpt_t_coco"].keep_rates
IMAGE_SIZE = (256, 192)


@dataclass
class LayerTrace:
    """Token counts seen by one layer's attention (per group)."""

    attention: str
    groups: int
    queries: int
    keys: int


def trace_layers(model: nn.Module, images: Tensor, num_shared: int = 6) -> list[LayerTrace]:
    """The tokens every block's attention sees in one forward pass of a GTPT ``model``: read
    from the input of each block's first LayerNorm, ``[B, N, D]`` (self-attention) or
    ``[B, G, N, D]`` (group attention, ``num_shared`` keypoint slots per group, whose keys are
    seen by every group)."""
    traces: list[LayerTrace] = []

    def record(module: nn.Module, args: tuple) -> None:
        shape = args[0].shape
        if len(shape) == 3:
            traces.append(LayerTrace("MHSA", 1, shape[1], shape[1]))
        else:
            groups, tokens = shape[1], shape[2]
            keys = groups * num_shared + tokens - num_shared
            traces.append(LayerTrace("MHGA", groups, tokens, keys))

    hooks = [block.norm1.register_forward_pre_hook(record) for block in model.blocks]
    try:
        with torch.inference_mode():
            model(images)
    finally:
        for hook in hooks:
            hook.remove()
    return traces


def cpu_latency_ms(model: nn.Module, x: Tensor, repeats: int) -> float:
    """Minimum wall time of ``repeats`` forward passes, in milliseconds."""
    with torch.inference_mode():
        model(x)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            best = min(best, time.perf_counter() - start)
    return best * 1e3


def run(repeats: int, batches: tuple[int, ...], threads: int = 1) -> str:
    """Build both configurations, count and time them on ``threads`` CPU threads; return the
    report as markdown."""
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    pruned = build_gtpt("gtpt_t_coco", keep_rates=PUBLISHED).eval()
    full = copy.deepcopy(pruned)
    full.keep_rates = UNPRUNED  # same weights, only the keep rates differ
    images = torch.randn(1, 3, *IMAGE_SIZE)

    reports = {name: count_flops(model, images) for name, model in
               (("pruned", pruned), ("unpruned", full))}
    traces = {name: trace_layers(model, images) for name, model in
              (("pruned", pruned), ("unpruned", full))}

    lines = [
        "# tokenprune showcase: GTPT-T, pruned vs unpruned",
        "",
        f"torch {torch.__version__}, tokenprune {tokenprune.__version__}, "
        f"Python {platform.python_version()}, {platform.machine()} CPU "
        f"({platform.processor() or 'unknown'}), {threads} thread{'s' * (threads > 1)}",
        "",
        f"GTPT-T (COCO, 256x192 input, random weights). Keep rates (fractions of the 256 "
        f"visual tokens): pruned {list(PUBLISHED)}, unpruned {list(UNPRUNED)}. Queries and keys "
        "are per group. MACs per layer count every multiply-add of the block at batch 1, "
        "attention included, except in the layers that also score tokens (4, 6 and 10 pruned; "
        "6 unpruned): their attention products run outside the block's module call, where the "
        "counter attributes operations, and count only in the totals. The totals include the "
        "stem, which pruning does not change; the paper convention leaves attention matmuls "
        "out.",
        "",
        "| layer | attention | groups | queries / keys (pruned) | queries / keys (unpruned) "
        "| MMACs pruned | MMACs unpruned |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for index in range(12):
        p, u = traces["pruned"][index], traces["unpruned"][index]
        name = f"blocks.{index}"
        lines.append(
            f"| {index + 1} | {p.attention} | {p.groups} | {p.queries} / {p.keys} "
            f"| {u.queries} / {u.keys} | {reports['pruned'].by_module[name] / 1e6:.2f} "
            f"| {reports['unpruned'].by_module[name] / 1e6:.2f} |"
        )
    rp, ru = reports["pruned"], reports["unpruned"]
    lines += [
        "",
        "| | pruned | unpruned | ratio |",
        "|---|---:|---:|---:|",
        f"| params (M) | {rp.params / 1e6:.3f} | {ru.params / 1e6:.3f} | 1.00 |",
        f"| paper-convention GMACs | {rp.paper_macs / 1e9:.4f} | {ru.paper_macs / 1e9:.4f} "
        f"| {rp.paper_macs / ru.paper_macs:.2f} |",
        f"| all GMACs (incl. attention) | {rp.macs / 1e9:.4f} | {ru.macs / 1e9:.4f} "
        f"| {rp.macs / ru.macs:.2f} |",
    ]
    for batch in batches:
        x = torch.randn(batch, 3, *IMAGE_SIZE)
        t_pruned = cpu_latency_ms(pruned, x, repeats)
        t_full = cpu_latency_ms(full, x, repeats)
        lines.append(
            f"| CPU latency, batch {batch} (ms, min of {repeats}) | {t_pruned:.2f} "
            f"| {t_full:.2f} | {t_pruned / t_full:.2f} |"
        )
    ops = ", ".join(f"{op.split('::')[-1]} x{n}" for op, n in rp.uncounted_ops.items()
                    if op.split("::")[-1] in ("sort", "gather", "topk"))
    lines += ["", f"Selection ops in the pruned model (zero MACs, listed by count_flops): {ops}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    add_timing_arguments(parser, batches=[1, 8], repeats=20, threads=1)
    args = resolve_timing(parser.parse_args(argv))
    report = run(args.repeats, tuple(args.batches), args.threads)
    print(report)
    if args.output is not None:
        write_text_atomic(args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
