"""HoT benchmark: MixSTE against HoT w. MixSTE (seq2seq) and TPC w. MixSTE (seq2frame).

For each model: parameters, FLOPs as HoT's own script counts them (thop's module hooks x 2: the
Linear layers and LayerNorms, no attention products), FLOPs of every matrix product including
attention (fvcore x 2), the published figures, and CPU latency of one clip. The three share one
set of weights (the pruned ones add HoT's slot embedding and recovery), and are timed in the
same run, so the speedups are ratios of measurements taken side by side.

    python -m benchmarks.hot --output benchmarks/results/hot_cpu.md
    python -m benchmarks.hot --quick            # a seconds-long smoke run (27 frames, width 64)
"""

from __future__ import annotations

import sys
import warnings

import torch

from tokenprune import count_flops
from tokenprune_models.common.timing import interleaved_latency_ms
from tokenprune_models.hot import build_hot_mixste

from .report import add_timing_arguments, make_parser, publish, resolve_timing

#: Published FLOPs (G) of Human3.6M 243-frame models, as HoT's script counts them: read off
#: HoT's FLOPs figure (MixSTE about 277, HoT about 167, TPC about 251) and, for MixSTE and HoT,
#: as the issue and HoT's README round them.
PUBLISHED_GFLOPS = {"mixste": 278.0, "hot": 168.0, "tpc": 251.0}
NAMES = {"mixste": "MixSTE", "hot": "HoT w. MixSTE (seq2seq)", "tpc": "TPC w. MixSTE (seq2frame)"}
#: The preset of :data:`tokenprune_models.hot.PRESETS` of each row.
PRESET_NAMES = {"mixste": "mixste", "hot": "hot_mixste", "tpc": "tpc_mixste"}


#: The smoke run's sizes (``--quick``): 27 frames of width 64; HoT keeps 9 frames from loop 1
#: (the official fixture's configuration), TPC 7 frames for the last loop.
SMALL = {
    "mixste": {"num_frames": 27, "dim": 64},
    "hot": {"num_frames": 27, "dim": 64, "num_kept": 9, "prune_loop": 1},
    "tpc": {"num_frames": 27, "dim": 64, "num_kept": 7, "prune_loop": 7},
}


def _models(small: bool) -> dict:
    """MixSTE, HoT and TPC sharing one set of weights (only pruning and recovery differ)."""
    torch.manual_seed(0)
    models = {v: build_hot_mixste(PRESET_NAMES[v], **(SMALL[v] if small else {})).eval()
              for v in SMALL}  # fmt: skip
    shared = models["mixste"].state_dict()
    for variant in ("hot", "tpc"):
        result = models[variant].load_state_dict(shared, strict=False)
        assert not result.unexpected_keys, result
        assert all(k == "slot_pos" or k.startswith("recovery.") for k in result.missing_keys)
    return models


def table(small: bool, batches: list[int], repeats: int) -> list[str]:
    models = _models(small)
    frames = models["mixste"].config.num_frames
    lines = [
        "| model | frames kept | params (M) | GFLOPs (thop x 2) | published | GFLOPs incl. "
        "attention | " + " | ".join(f"CPU ms, batch {b}" for b in batches) + " |",
        "|---|---|---:|---:|---:|---:|" + "---:|" * len(batches),
    ]
    joints = models["mixste"].config.num_joints
    clip = torch.randn(1, frames, joints, 2)
    per_batch = [interleaved_latency_ms(list(models.values()), torch.randn(b, frames, joints, 2),
                                        repeats) for b in batches]  # fmt: skip
    latency = {}
    for index, (variant, model) in enumerate(models.items()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fvcore's import and tracer warnings
            report = count_flops(model, clip)
        times = [t[index] for t in per_batch]
        latency[variant] = times
        c = model.config
        kept = str(frames)
        if c.prune_loop is not None:
            kept += f" -> {c.num_kept} (loop {c.prune_loop})"
        published = "" if small else f"{PUBLISHED_GFLOPS[variant]:.0f}"
        lines.append(
            f"| {NAMES[variant]} | {kept} | {report.params / 1e6:.3f} | "
            f"{2 * report.paper_macs / 1e9:.2f} | {published} | {2 * report.macs / 1e9:.2f} | "
            + " | ".join(f"{t:.1f}" for t in times) + " |"
        )
        print(lines[-1], flush=True)
    lines.append("")
    for variant in ("hot", "tpc"):
        ratios = ", ".join(
            f"batch {b}: {full / pruned:.2f}x"
            for b, full, pruned in zip(batches, latency["mixste"], latency[variant], strict=True)
        )
        lines.append(f"{NAMES[variant]} against MixSTE: {ratios}.")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    add_timing_arguments(parser, batches=[1], repeats=5,
                         quick="27 frames of width 64, batch 1, one repeat")  # fmt: skip
    args = resolve_timing(parser.parse_args(argv))
    torch.set_num_threads(args.threads)
    size = "27 frames, width 64 (smoke run)" if args.quick else "243 frames, width 512"
    notes = [
        "GFLOPs (thop x 2): HoT's convention, multiply-adds of the Linear layers and "
        "LayerNorms counted by module hooks, times 2; the attention products are not counted. "
        "GFLOPs incl. attention: every matrix product (fvcore), times 2. Published: HoT's FLOPs "
        "figure. Latency: median of the repeats after a warm-up, float32, eval mode, one clip "
        "per batch entry; the three models take turns within every repeat. They share their "
        "weights; TPC's frames come from a seq2frame model (it returns the kept frames, the "
        "centre one is the prediction).",
    ]
    publish("HoT benchmark", f", {args.threads} threads; {size}",
            lambda: table(args.quick, args.batches, args.repeats), notes, args.output)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
