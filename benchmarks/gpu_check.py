"""One command for the day a GPU is lent: kernel correctness, the kernel benchmark and GTPT-S
end to end, written with the device's name.

    python -m benchmarks.gpu_check               # on an H100/H200: about 6 minutes
    python -m benchmarks.gpu_check --dry-run     # every step at toy sizes, on the CPU (CI)

1. **Correctness** in float16 and bfloat16 against a float32 PyTorch reference, forward and
   backward (outputs and every input gradient), for group and gathered attention: GTPT's stage
   shapes (GTPT-T and GTPT-S/B, batch 8), edge sizes (one token, one group, every slot shared,
   one key, a sample whose keys are all masked), a launch of more than 65,535
   (batch, group, head) rows (GTPT's fine stage at batch 2,731), a 16,384-token sequence and a
   key buffer of 2**30 elements (int64 offsets).
2. **The kernel benchmark** (:mod:`benchmarks.kernels`) at three of GTPT-S/B's calls (an MHSA
   stage, an MHGA stage, the coarse-to-fine step), batch 64, bfloat16: ours against SDPA (math,
   efficient, cuDNN, flash), FlexAttention with a block mask, gather + SDPA and compiled eager
   code, with the roofline of every case.
3. **GTPT-S end to end**: 256x192 inputs, batch 64, float16, inference; the published keep
   rates against the unpruned model, on the Triton and the PyTorch attention backends.
4. **CUDA-graph capture** of a GTPT-S MHGA layer on the Triton backend (inference, float16,
   batch 64): ``torch.compile(mode="reduce-overhead")``, and ``torch.cuda.graph`` around the
   eager layer; each replay is compared with the eager output and timed against it (the
   replay has no host cost, see ``python -m benchmarks.host_cost``).

Results: ``benchmarks/results/gpu_check_<device>.md`` and ``.json`` (``--output`` sets the
folder), rewritten after every case, so a run cut short keeps what it measured; the kernel
benchmark's own report beside them. The exit status is 1 when a correctness case or a step
fails. ``--dry-run`` runs the same code at toy sizes without a GPU (the kernels in
Triton's interpreter, timings on the CPU) so that the script is known to run before a GPU is
spent on it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from benchmarks import kernels  # sets TRITON_INTERPRET on a machine without a GPU
from benchmarks.kernels import (
    DEVICE,
    GPU,
    GatheredCase,
    GroupCase,
    GroupInputs,
    forward_backward,
    gathered_ours,
    group_ours,
    make_gathered_inputs,
    make_group_inputs,
    reference,
)
from tokenprune import MultiHeadGroupAttention
from tokenprune_models.common.atomic import write_text_atomic
from tokenprune_models.common.cli import HelpFormatter
from tokenprune_models.gtpt.build import build_gtpt

#: max |error| / max(|reference|, 1) allowed per dtype (outputs and gradients)
TOLERANCE = {torch.float16: 2e-2, torch.bfloat16: 6e-2}
DTYPES = (torch.float16, torch.bfloat16)


@dataclass
class CorrectnessResult:
    case: str
    dtype: str
    max_error: dict  # "out", "grad 0", "grad 1" -> max |error| / max(|reference|, 1)
    problem: str | None


def correctness_cases(dry_run: bool) -> list[tuple[str, object]]:
    """``(name, case or inputs factory)`` pairs; factories build inputs a case cannot say."""
    if dry_run:
        stages = [GroupCase("gtpt-like", 2, 3, 2, 21, 3, 24, dummy_mask=True),
                  GroupCase("mhsa", 2, 1, 2, 33, 0, 16, dummy_mask=False)]  # fmt: skip
        big_grid = GroupCase("many rows (toy)", 5, 3, 2, 9, 2, 16, dummy_mask=True)
        long = GroupCase("long (toy) N=80", 1, 1, 2, 80, 0, 32, dummy_mask=False)
        gathered = [GatheredCase("c2f-like", 2, 3, 2, 9, 20, 13, 24)]
    else:
        stages = [c for c in kernels.gtpt_cases((8,)) if "training" not in c.name]
        big_grid = GroupCase("B*G*H=65,544 (GTPT fine stage, batch 2,731)", 2731, 3, 8, 82, 6,
                             24, dummy_mask=True)  # fmt: skip
        long = GroupCase("long N=16384 d=64", 1, 1, 4, 16384, 0, 64, dummy_mask=False)
        gathered = kernels.gathered_cases()[:1] + [
            GatheredCase("gathered large 2048 of 4096", 1, 1, 4, 2048, 4096, 2048, 64),
            # a key buffer of 2**30 elements: the launches compute offsets in int64
            GatheredCase("int64 offsets: 64 of 2**24 buffer rows", 1, 1, 1, 64, 2**24, 64, 64),
        ]
    edges = [
        GroupCase("edge: one token", 2, 1, 2, 1, 0, 16, dummy_mask=False),
        GroupCase("edge: one group, nothing shared", 2, 1, 2, 17, 0, 24, dummy_mask=False),
        GroupCase("edge: every slot shared", 2, 3, 2, 6, 6, 24, dummy_mask=True),
        GatheredCase("edge: one query, one key", 2, 2, 2, 1, 5, 1, 16),
    ]
    cases: list[tuple[str, object]] = [(c.name, c) for c in [*stages, *edges, big_grid, long]]
    cases += [(c.name, c) for c in gathered]
    cases.append(("edge: a sample whose keys are all masked", _all_masked_inputs))
    return cases


def _all_masked_inputs(dtype: torch.dtype) -> GroupInputs:
    inputs = make_group_inputs(GroupCase("masked", 2, 3, 2, 11, 2, 24, dummy_mask=True), dtype)
    inputs.key_mask[1] = False  # sample 1 sees no key: zero output, no gradient
    return inputs


def check_case(name: str, case, dtype: torch.dtype) -> CorrectnessResult:
    label = str(dtype).removeprefix("torch.")
    try:
        if callable(case):
            inputs, ours = case(dtype), group_ours
        elif isinstance(case, GroupCase):
            inputs, ours = make_group_inputs(case, dtype), group_ours
        else:
            inputs, ours = make_gathered_inputs(case, dtype), gathered_ours
        want_out, want_grads, grad_out = reference(inputs, with_backward=True)
        out, grads = forward_backward(ours, inputs, grad_out.to(dtype))
        if GPU:
            torch.cuda.synchronize()
    except Exception as error:  # reported, and the run fails (a CUDA error may end it)
        return CorrectnessResult(name, label, {}, f"{type(error).__name__}: {error}"[:300])
    errors = {}
    for key, got, want in [("out", out, want_out),
                           *((f"grad {i}", g, w) for i, (g, w) in
                             enumerate(zip(grads, want_grads, strict=True)))]:  # fmt: skip
        scale = max(want.abs().max().item(), 1.0)
        errors[key] = (got.float() - want).abs().max().item() / scale
    bad = [f"{k} {v:.3g}" for k, v in errors.items() if not v <= TOLERANCE[dtype]]
    problem = None if not bad else f"error above {TOLERANCE[dtype]}: " + ", ".join(bad)
    return CorrectnessResult(name, label, errors, problem)


def _median_ms(fn, repeats: int) -> float:
    if GPU:
        import triton

        return triton.testing.do_bench(fn, return_mode="median")
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[len(times) // 2]


def set_attention_backend(model: torch.nn.Module, backend: str) -> None:
    """Point every attention module of ``model`` at ``backend``."""
    for module in model.modules():
        if hasattr(module, "backend") and isinstance(module.backend, str):
            module.backend = backend


def end_to_end(dry_run: bool) -> list[dict]:
    """Milliseconds per GTPT forward: published keep rates and unpruned, per backend."""
    if dry_run:
        variant, size, batch, dtype, backends = "t", (64, 48), 2, torch.float32, ("torch",)
    else:
        variant, size, batch, dtype, backends = "s", (256, 192), 64, torch.float16, (
            "triton", "torch")  # fmt: skip
    rows = []
    images = torch.randn(batch, 3, *size, device=DEVICE, dtype=dtype)
    for rates_name, rates in (("published keep rates", None), ("unpruned", [1.0] * 4)):
        torch.manual_seed(0)
        overrides = {"image_size": size} | ({} if rates is None else {"keep_rates": rates})
        model = build_gtpt(f"gtpt_{variant}_coco", **overrides).eval().to(DEVICE, dtype)
        for backend in backends:
            set_attention_backend(model, backend)
            with torch.no_grad():
                ms = _median_ms(lambda m=model: m(images), repeats=3)
            rows.append({"model": f"GTPT-{variant.upper()} {size[0]}x{size[1]}",
                         "keep_rates": rates_name, "backend": backend, "batch": batch,
                         "dtype": str(dtype).removeprefix("torch."), "ms": ms})  # fmt: skip
    return rows


def graph_capture(dry_run: bool) -> list[dict]:
    """Capture a GTPT-S fine-stage MHGA layer (Triton backend) in CUDA graphs; compare and time
    each replay against the eager layer. Without a GPU: the compiled layer only, at toy size."""
    batch, tokens, dtype = (1, 9, torch.float32) if dry_run else (64, 82, torch.float16)
    torch.manual_seed(0)
    layer = MultiHeadGroupAttention(192, 8, backend="triton").eval().to(DEVICE, dtype)
    x = torch.randn(batch, 3, tokens, 192, device=DEVICE, dtype=dtype)
    rows = []
    with torch.no_grad():
        eager = layer(x, num_shared=6)
        eager_ms = _median_ms(lambda: layer(x, num_shared=6), repeats=5)
        compiled = torch.compile(layer, mode="reduce-overhead", fullgraph=True)
        for _ in range(3):  # record, then replay
            compiled(x, num_shared=6)
        replayed = compiled(x, num_shared=6)
        rows.append(_capture_row("torch.compile(mode='reduce-overhead')", replayed, eager,
                                 _median_ms(lambda: compiled(x, num_shared=6), 5), eager_ms))
        if GPU:
            static_x = x.clone()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm up outside the capture, as PyTorch advises
                for _ in range(3):
                    layer(static_x, num_shared=6)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = layer(static_x, num_shared=6)
            fresh = torch.randn_like(x)
            static_x.copy_(fresh)
            graph.replay()
            rows.append(_capture_row("torch.cuda.graph (eager layer)", static_out,
                                     layer(fresh, num_shared=6),
                                     _median_ms(graph.replay, 5), eager_ms))  # fmt: skip
    return rows


def _capture_row(name: str, replayed, expected, ms: float, eager_ms: float) -> dict:
    error = ((replayed.float() - expected.float()).abs().max() /
             expected.float().abs().max().clamp(min=1)).item()  # fmt: skip
    ok = error <= TOLERANCE.get(expected.dtype, 1e-4)
    return {"capture": name, "max_error": error, "ok": bool(ok), "ms": ms, "eager_ms": eager_ms}


def device_name() -> str:
    return torch.cuda.get_device_name() if GPU else "CPU (dry run)"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def report(results: list[CorrectnessResult], e2e: list[dict], header: list[str],
           benchmark_file: Path | None, seconds: dict, problems: dict,
           captures: list[dict]) -> str:  # fmt: skip
    lines = [*header, "", "## 1. correctness against a float32 reference (forward and backward)",
             "", "| case | dtype | max error out | max error grads | verdict |",
             "|---|---|---:|---:|---|"]  # fmt: skip
    for r in results:
        grads = [v for k, v in r.max_error.items() if k.startswith("grad")]
        lines.append(
            f"| {r.case} | {r.dtype} | {r.max_error.get('out', float('nan')):.2e} | "
            f"{max(grads, default=float('nan')):.2e} | {r.problem or 'ok'} |"
        )
    lines += ["", "## 2. kernel benchmark", ""]
    lines.append(f"See [{benchmark_file.name}]({benchmark_file.name})." if benchmark_file
                 else "Not run.")  # fmt: skip
    lines += ["", "## 3. GTPT end to end (inference, median ms per batch)", "",
              "| model | keep rates | backend | batch | dtype | ms | speed-up of pruning |",
              "|---|---|---|---:|---|---:|---:|"]  # fmt: skip
    unpruned = {r["backend"]: r["ms"] for r in e2e if r["keep_rates"] == "unpruned"}
    for r in e2e:
        ratio = f"{unpruned[r['backend']] / r['ms']:.2f}x" if r["backend"] in unpruned else "-"
        lines.append(f"| {r['model']} | {r['keep_rates']} | {r['backend']} | {r['batch']} | "
                     f"{r['dtype']} | {r['ms']:.2f} | {ratio} |")  # fmt: skip
    lines += ["", "## 4. CUDA-graph capture (MHGA layer, Triton backend, inference)", "",
              "| capture | max error vs eager | verdict | ms per replay | ms eager |",
              "|---|---:|---|---:|---:|"]  # fmt: skip
    for r in captures:
        lines.append(f"| {r['capture']} | {r['max_error']:.2e} | {'ok' if r['ok'] else 'WRONG'} "
                     f"| {r['ms']:.3f} | {r['eager_ms']:.3f} |")  # fmt: skip
    lines += [""] + [f"**{step} failed:** {problem}" for step, problem in problems.items()]
    lines += ["", "Seconds per step: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)  # fmt: skip
    parser.add_argument("--dry-run", action=argparse.BooleanOptionalAction, default=False,
                        help="toy sizes on the CPU (the kernels in Triton's interpreter)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results"),
                        help="folder of the results")  # fmt: skip
    parser.add_argument("--skip-benchmark", action=argparse.BooleanOptionalAction,
                        default=False, help="skip step 2, the kernel benchmark")  # fmt: skip
    args = parser.parse_args(argv)
    if not GPU and not args.dry_run:
        parser.error("no CUDA GPU here: run on a GPU, or pass --dry-run")
    header = [f"# tokenprune GPU check: {device_name()}", "", *kernels.environment()]
    print("\n".join(header), flush=True)
    stem = "gpu_check_" + _slug(device_name())
    seconds: dict[str, float] = {}

    results: list[CorrectnessResult] = []
    e2e: list[dict] = []
    captures: list[dict] = []
    problems: dict[str, str] = {}
    benchmark_file = None

    def save() -> None:
        """Write what has been measured so far: a CUDA error or a time limit ends a run early,
        and the cases before it must not be lost."""
        args.output.mkdir(parents=True, exist_ok=True)
        text = report(results, e2e, header, benchmark_file, seconds, problems, captures)
        write_text_atomic(args.output / f"{stem}.md", text)
        payload = {"device": device_name(), "environment": kernels.environment(),
                   "correctness": [asdict(r) for r in results], "end_to_end": e2e,
                   "graph_capture": captures,
                   "problems": problems, "seconds": seconds}  # fmt: skip
        write_text_atomic(args.output / f"{stem}.json", json.dumps(payload, indent=2) + "\n")

    start = time.perf_counter()
    for dtype in DTYPES:
        if not GPU and dtype == torch.bfloat16:
            continue  # Triton's interpreter computes bfloat16 wrongly (numpy has no bfloat16)
        for name, case in correctness_cases(args.dry_run):
            result = check_case(name, case, dtype)
            results.append(result)
            print(f"[correctness] {name} {result.dtype}: {result.problem or 'ok'}", flush=True)
            save()
    seconds["correctness"] = time.perf_counter() - start

    if not args.skip_benchmark:
        start = time.perf_counter()
        benchmark_file = args.output / f"{stem}_kernels.md"
        # GTPT-S/B at batch 64: an MHSA stage, an MHGA stage and the coarse-to-fine step
        flags = ["--no-compile"] if args.dry_run else [
            "--suite", "all", "--batches", "64", "--dtype", "bfloat16", "--match",
            "S/B coco L1-L4", "S/B coco L7-L10", "S/B c2f b64",
        ]  # fmt: skip
        try:
            if kernels.main([*flags, "--output", str(benchmark_file)]) != 0:
                problems["benchmark"] = "our kernel failed a case (see the benchmark report)"
        except Exception as error:  # recorded; the other steps still run
            problems["benchmark"] = f"{type(error).__name__}: {error}"[:300]
        seconds["benchmark"] = time.perf_counter() - start
        save()

    def step(name: str, run, rows: list[dict]) -> None:
        """Run one step into ``rows``; an error is recorded, and the next steps still run."""
        start = time.perf_counter()
        try:
            rows.extend(run())
        except Exception as error:
            problems[name] = f"{type(error).__name__}: {error}"[:300]
        seconds[name] = time.perf_counter() - start
        for row in rows:
            print(f"[{name}] {row}", flush=True)
        save()

    step("end to end", lambda: end_to_end(args.dry_run), e2e)
    step("graph capture", lambda: graph_capture(args.dry_run), captures)
    if not all(row["ok"] for row in captures):
        problems["graph capture"] = "a replay differs from the eager layer"
        save()
    print((args.output / f"{stem}.md").read_text())
    failed = [r for r in results if r.problem]
    if failed or problems:
        print(f"FAILED: {len(failed)} correctness cases; {problems or ''}", file=sys.stderr)
    return 1 if failed or problems else 0


if __name__ == "__main__":
    sys.exit(main())
