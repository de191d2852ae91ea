"""Showcase: a small group-pruned pose encoder assembled from tokenprune, pruned vs unpruned.

The encoder follows GTPT's token flow on 256 visual tokens (a 16 x 16 patch grid) and 18
keypoint tokens split into 3 groups of 6:

* layers 1-6: attention over all tokens; after the attention of layer 4 the visual tokens are
  pruned by the keypoints' softmax-pooled logits;
* after layer 6: every group gets its own copy of the visual tokens and keeps its best ones,
  scored by its own keypoints; the keypoints are shared across groups;
* layers 7-12: Multi-Head Group Attention; after the attention of layer 10 each group prunes
  again.

It prints, per layer, the tokens each query group sees and the multiply-adds, for the pruned
model and for the same weights with every keep rate at 1, then CPU latency of both. Run it with
``python -m benchmarks.showcase`` (``make demo``).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

import tokenprune
from models.common.atomic import write_text_atomic
from tokenprune import (
    GroupTokenPruner,
    TransformerBlock,
    count_flops,
    token_scores,
)


@dataclass
class LayerTrace:
    """Token counts seen by one layer (per group)."""

    attention: str
    groups: int
    queries: int
    keys: int


class ShowcaseEncoder(nn.Module):
    """GTPT-style encoder: 18 keypoint tokens and 256 visual tokens, pruned in three steps.

    Args:
        keep_rates: fractions of the 256 visual tokens kept from layers 1, 5, 7 and 11 on.
        dim, heads, depth: transformer size (depth must be 12: the schedule is GTPT's).
    """

    num_groups = 3
    keypoints_per_group = 6
    num_visual = 256

    def __init__(
        self, keep_rates: tuple[float, float, float, float], dim: int = 128, heads: int = 8
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, mlp_ratio=3, qkv_bias=False, scale=dim**-0.5)
            for _ in range(12)
        )
        num_keypoints = self.num_groups * self.keypoints_per_group
        self.keypoints = nn.Parameter(torch.randn(1, num_keypoints, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, self.num_visual, dim) * 0.02)
        budget = {"budget": "original", "num_original": self.num_visual}
        self.prune_coarse = GroupTokenPruner(keep_rates[1], **budget)  # after layer 4
        self.prune_groups = GroupTokenPruner(keep_rates[2], **budget)  # after layer 6
        self.prune_fine = GroupTokenPruner(keep_rates[3], **budget)  # after layer 10
        self.trace: list[LayerTrace] = []

    def forward(self, visual: Tensor) -> Tensor:
        """``visual [B, 256, D]`` patch embeddings -> keypoint tokens ``[B, 18, D]``."""
        self.trace = []
        kps = self.keypoints.shape[1]
        x = torch.cat([self.keypoints.expand(visual.shape[0], -1, -1), visual + self.pos], dim=1)
        pos = self.pos
        for index in range(6):  # coarse stage: one sequence, keypoints shared with themselves
            block = self.blocks[index]
            if index > 0:
                x = torch.cat([x[:, :kps], x[:, kps:] + pos], dim=1)
            self.trace.append(LayerTrace("MHSA", 1, x.shape[1], x.shape[1]))
            if index in (3, 5):  # scores for the prune after layer 4 and the grouping after 6
                x, logits = block.attend_scored(x, kps, num_shared=kps)
            else:
                x = block.attend(x, num_shared=kps)
            if index == 3:
                pruned = self.prune_coarse(x, token_scores(logits, "softmax_pool"), num_shared=kps)
                x, pos = pruned.tokens, pruned.apply(pos)  # pos covers the visual slots
            x = block.feed_forward(x)

        # coarse to fine: each group shares its 6 keypoints and gets a private copy of the
        # visual tokens, which it prunes by its own keypoints' attention from layer 6.
        k = self.keypoints_per_group
        per_group_logits = logits.private_logits().unflatten(2, (self.num_groups, k))
        scores = torch.stack(
            [tokenprune.softmax_pool_score(per_group_logits[:, :, g]) for g in range(3)], dim=1
        )
        keypoints = x[:, :kps].unflatten(1, (self.num_groups, k))
        visual = x[:, None, kps:].expand(-1, self.num_groups, -1, -1)
        groups = torch.cat([keypoints, visual], dim=2)  # [B, G, 6 + n, D]
        pos = torch.cat([torch.zeros_like(pos[:, :k]), pos], dim=1).unsqueeze(1)
        pruned = self.prune_groups(groups, scores, num_shared=k)
        x, pos = pruned.tokens, pruned.apply(pos)

        for index in range(6, 12):  # fine stage: group attention
            block = self.blocks[index]
            x = x + pos
            queries = x.shape[2]
            self.trace.append(LayerTrace("MHGA", 3, queries, 3 * k + queries - k))
            if index == 9:
                x, logits = block.attend_scored(x, k, num_shared=k)
                pruned = self.prune_fine(x, token_scores(logits, "softmax_pool"), num_shared=k)
                x, pos = pruned.tokens, pruned.apply(pos)
            else:
                x = block.attend(x, num_shared=k)
            x = block.feed_forward(x)
        return x[:, :, :k].flatten(1, 2)


def cpu_latency_ms(model: nn.Module, x: Tensor, repeats: int) -> float:
    """Minimum wall time of ``repeats`` forward passes on one thread, in milliseconds."""
    with torch.inference_mode():
        model(x)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            best = min(best, time.perf_counter() - start)
    return best * 1e3


def run(repeats: int, batches: tuple[int, ...]) -> str:
    """Build both configurations, count and time them; return the report as markdown."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    pruned = ShowcaseEncoder(keep_rates=(1.0, 0.7, 0.3, 0.1)).eval()
    full = ShowcaseEncoder(keep_rates=(1.0, 1.0, 1.0, 1.0)).eval()
    full.load_state_dict(pruned.state_dict())  # same weights, only the keep rates differ
    visual = torch.randn(1, ShowcaseEncoder.num_visual, 128)

    reports = {name: count_flops(model, visual) for name, model in
               (("pruned", pruned), ("unpruned", full))}
    traces = {}
    for name, model in (("pruned", pruned), ("unpruned", full)):
        model(visual)
        traces[name] = list(model.trace)

    lines = [
        "# tokenprune showcase: GTPT-style encoder, pruned vs unpruned",
        "",
        f"torch {torch.__version__}, tokenprune {tokenprune.__version__}, "
        f"Python {platform.python_version()}, {platform.machine()} CPU "
        f"({platform.processor() or 'unknown'}), 1 thread",
        "",
        "Keep rates (fractions of the 256 visual tokens): pruned [1.0, 0.7, 0.3, 0.1], "
        "unpruned [1.0, 1.0, 1.0, 1.0]. Queries and keys are per group. MACs per layer count "
        "every multiply-add of the block at batch 1 (attention included); the paper "
        "convention leaves attention matmuls out.",
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
        x = torch.randn(batch, ShowcaseEncoder.num_visual, 128)
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per measurement")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--output", type=Path, help="also write the markdown report here")
    args = parser.parse_args(argv)
    report = run(args.repeats, tuple(args.batches))
    print(report)
    if args.output is not None:
        write_text_atomic(args.output, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
