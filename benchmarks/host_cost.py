"""Host cost of the Triton kernels' launch path, measured on a machine without a GPU.

At GTPT's sizes one kernel does 5-25 us of GPU work (``benchmarks/results/kernels_roofline.md``),
so the CPU time a call spends before the GPU sees it (argument checks, the custom-op dispatch,
allocating outputs, planning the launch, Triton's argument binder) decides the speed unless
the model is captured in a CUDA graph. This benchmark measures that time on the CPU:

* every launch runs what ``triton.JITFunction.run`` does on the host for a CUDA target (sm_90):
  Triton's own argument binder and specialiser, the cache-key lookup and the grid; only the
  driver's launch itself (``cuLaunchKernel``, a few microseconds, growing with the argument
  count) is left out, and nothing is compiled;
* the tensors are CPU tensors laid out as on a GPU (q, k and v are views of one fused qkv
  projection, as in :class:`tokenprune.MultiHeadGroupAttention`), and the kernels' device
  check is switched off, so the public functions route ``backend="triton"`` to the launchers
  with the GPU's tiles (not the interpreter's);
* PyTorch operators on the launch path (the backward's pre-pass, say) run for real on the CPU,
  at batch 2 so that their arithmetic stays small.

It compares the working tree with a baseline commit (by default the kernels as the issue
"Kernels ready for a GPU" found them) in one run: the two trees take turns in fresh
processes, several rounds, and each case keeps its best round. Absolute times depend on the
CPU; the ratio is the result.

    python -m benchmarks.host_cost
    python -m benchmarks.host_cost --baseline 9ea6ec1 \
        --output benchmarks/results/kernels_host_cost.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The commit whose kernels the issue "Kernels ready for a GPU" measured (before its work).
BASELINE = "9ea6ec1"
#: GTPT-S's fine stage at batch 2: 3 groups of 82 tokens, 6 of them shared, 8 heads of 24.
SHAPE = dict(batch=2, groups=3, tokens=82, heads=8, head_dim=24, num_shared=6)
CASES = (
    ("forward", "group_attention, inference (no grad)"),
    ("forward_scored", "group_attention with scoring logits (a pruning layer), no grad"),
    ("forward_train", "group_attention forward, inputs requiring grad"),
    ("forward_backward", "group_attention forward + backward"),
    ("gathered_forward", "gathered_attention, inference (no grad)"),
)


# ---------------------------------------------------------------------------------------------
# the worker: one tree, one process


def _host_only_launches() -> dict[str, int]:
    """Make every Triton launch do its host work for an sm_90 target and nothing else.

    Returns a dict counting the launches and their runtime arguments (``"launches"``,
    ``"arguments"``), so the caller can check that the calls it times really reach the kernels.
    """
    from triton import knobs
    from triton.backends import backends
    from triton.backends.compiler import GPUTarget
    from triton.runtime import jit

    backend = backends["nvidia"].compiler(GPUTarget("cuda", 90, 32))
    caches: dict[object, tuple[dict, dict, object]] = {}
    counter = {"launches": 0, "arguments": 0}

    def run(self, *args, grid, warmup, **kwargs):
        kwargs["debug"] = kwargs.get("debug", self.debug) or knobs.runtime.debug
        kwargs["instrumentation_mode"] = knobs.compilation.instrumentation_mode
        if self not in caches:
            binder = jit.create_function_from_signature(self.signature, self.params, backend)
            caches[self] = ({}, {}, binder)
        kernel_cache, key_cache, binder = caches[self]
        bound_args, specialization, options = binder(*args, **kwargs)
        key = jit.compute_cache_key(key_cache, specialization, options)
        kernel_cache.setdefault(key, key)  # stands in for the compiled kernel
        if callable(grid):
            grid = grid(bound_args)
        grid_0, grid_1, grid_2 = (*grid, 1, 1)[:3]
        assert grid_0 * grid_1 * grid_2 > 0
        counter["launches"] += 1
        counter["arguments"] += len(args)  # the kernel's runtime arguments (not constexprs)

    jit.JITFunction.run = run
    return counter


def _enable_cpu_stand_in() -> None:
    """Accept CPU tensors where the kernels expect CUDA ones (nothing is launched)."""
    import tokenprune.kernels as kernels

    kernels.INTERPRETED = True  # what the backend's support check reads; the tiles stay the GPU's
    for name, module in list(sys.modules.items()):
        if name.startswith("tokenprune.kernels") and hasattr(module, "check_launchable"):
            module.check_launchable = lambda *tensors: None


def _inputs(requires_grad: bool):
    import torch

    s = SHAPE
    qkv = torch.randn(
        s["batch"], s["groups"], s["tokens"], 3, s["heads"], s["head_dim"], dtype=torch.float16
    )
    qkv.requires_grad_(requires_grad)
    # [B, G, N, 3, H, D] -> three [B, G, H, N, D] views, as the qkv projection gives them
    q, k, v = (qkv[:, :, :, i].transpose(2, 3) for i in range(3))
    return qkv, q, k, v


def _case_functions(counter: dict[str, int]):
    import torch

    import tokenprune

    s = SHAPE
    _, q, k, v = _inputs(requires_grad=False)
    qkv_grad, qg, kg, vg = _inputs(requires_grad=True)
    grad = torch.randn_like(qg)
    scored = getattr(tokenprune, "group_attention_scored", None)

    def forward():
        with torch.no_grad():
            tokenprune.group_attention(q, k, v, num_shared=s["num_shared"], backend="triton")

    def forward_scored():
        with torch.no_grad():
            if scored is None:  # before group_attention_scored existed
                tokenprune.group_attention(
                    q, k, v, num_shared=s["num_shared"], score_queries=1, backend="triton"
                )
            else:
                scored(q, k, v, num_shared=s["num_shared"], score_queries=1, backend="triton")

    def forward_train():
        tokenprune.group_attention(qg, kg, vg, num_shared=s["num_shared"], backend="triton")

    def forward_backward():
        out = tokenprune.group_attention(qg, kg, vg, num_shared=s["num_shared"], backend="triton")
        out.backward(grad)
        qkv_grad.grad = None

    # gathered attention: every group's queries against a buffer of all G * N tokens (keys and
    # values as views of one [B, T, 2, H, D] projection), each group selecting N of them
    tokens = s["groups"] * s["tokens"]
    kv = torch.randn(s["batch"], tokens, 2, s["heads"], s["head_dim"], dtype=torch.float16)
    gk, gv = (kv[:, :, i].transpose(1, 2) for i in range(2))
    index = torch.stack(
        [torch.randperm(tokens)[: s["tokens"]] for _ in range(s["batch"] * s["groups"])]
    ).view(s["batch"], s["groups"], s["tokens"])

    def gathered_forward():
        with torch.no_grad():
            tokenprune.attention.gathered_attention(q, gk, gv, index, backend="triton")

    return dict(
        forward=forward,
        forward_scored=forward_scored,
        forward_train=forward_train,
        forward_backward=forward_backward,
        gathered_forward=gathered_forward,
    )


def _time_per_call(fn, calls: int, repeats: int = 3) -> float:
    """The best of ``repeats`` mean times of ``calls`` calls, in microseconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def worker(tree: Path, calls: int) -> dict:
    """Measure every case against the ``tokenprune`` package of ``tree``."""
    os.environ.pop("TRITON_INTERPRET", None)
    sys.path.insert(0, str(tree))
    import torch

    torch.set_num_threads(1)
    import tokenprune
    import tokenprune.kernels  # registers the ops

    package = Path(tokenprune.__file__).resolve().parent
    if package.parent != tree.resolve():
        raise RuntimeError(f"imported tokenprune from {package}, not from the tree {tree}")
    counter = _host_only_launches()
    _enable_cpu_stand_in()
    results = {}
    for name, fn in _case_functions(counter).items():
        for _ in range(max(calls // 10, 3)):  # warm-up: first-call caches, Triton's binder
            fn()
        before = dict(counter)
        fn()
        launches = counter["launches"] - before["launches"]
        if launches == 0:
            raise RuntimeError(f"case {name} launched no kernel: it does not measure the kernels")
        arguments = counter["arguments"] - before["arguments"]
        results[name] = dict(us=_time_per_call(fn, calls), launches=launches, arguments=arguments)
    return results


# ---------------------------------------------------------------------------------------------
# the driver: both trees, taking turns


def _baseline_tree(ref: str, into: Path) -> Path:
    """The ``tokenprune`` package of commit ``ref``, extracted under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "tokenprune"], capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise ValueError(
            f"--baseline {ref!r}: git archive failed ({archive.stderr.decode().strip()}); "
            "the baseline needs a git clone that holds the commit"
        )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def _run_worker(tree: Path, calls: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(tree)]
    command += ["--calls", str(calls)]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the worker for {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(baseline: str | None, rounds: int, calls: int) -> dict:
    """Best time per case over ``rounds`` turns of each tree; ``baseline=None`` measures the
    working tree only."""
    trees = {"after": ROOT}
    with tempfile.TemporaryDirectory() as scratch:
        if baseline is not None:
            trees = {"before": _baseline_tree(baseline, Path(scratch)), **trees}
        best: dict[str, dict] = {label: {} for label in trees}
        for _ in range(rounds):
            for label, tree in trees.items():
                for case, result in _run_worker(tree, calls).items():
                    seen = best[label].get(case)
                    if seen is None or result["us"] < seen["us"]:
                        best[label][case] = result
    return best


def _software() -> str:
    import torch
    import triton

    cpu = platform.processor() or platform.machine()
    return (
        f"CPU {cpu} ({os.cpu_count()} cores), Python {platform.python_version()}, "
        f"torch {torch.__version__}, triton {triton.__version__}"
    )


def report(best: dict, baseline: str | None, rounds: int, calls: int) -> str:
    s = SHAPE
    lines = [
        "# Host cost of the Triton kernels' launch path (CPU)",
        "",
        f"{_software()}. Command: `python -m benchmarks.host_cost"
        + (f" --baseline {baseline}" if baseline else " --baseline none")
        + f" --rounds {rounds} --calls {calls}`.",
        "",
        f"fp16, B={s['batch']}, G={s['groups']}, N={s['tokens']}, S={s['num_shared']}, "
        f"H={s['heads']}, D={s['head_dim']} (GTPT-S's fine stage); q, k and v are views of one "
        "fused qkv tensor. Each launch runs Triton's host work for sm_90 (binder, "
        "specialisation, cache lookup, grid) without the driver's launch; microseconds per "
        "call, the best of the rounds (the trees take turns in fresh processes).",
        "",
    ]
    if "before" in best:
        lines += [
            "| case | launches | kernel arguments before | after | before (us) | after (us) "
            "| after / before |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for case, description in CASES:
            b, a = best["before"][case], best["after"][case]
            launches = str(a["launches"])
            if b["launches"] != a["launches"]:
                launches = f"{b['launches']} -> {a['launches']}"
            lines.append(
                f"| {description} | {launches} | {b['arguments']} | {a['arguments']} | "
                f"{b['us']:.1f} | {a['us']:.1f} | {a['us'] / b['us']:.2f} |"
            )
        lines += ["", f"Before: commit `{baseline}`; after: this tree."]
    else:
        lines += ["| case | launches | kernel arguments | us |", "|---|---:|---:|---:|"]
        for case, description in CASES:
            a = best["after"][case]
            lines.append(f"| {description} | {a['launches']} | {a['arguments']} | {a['us']:.1f} |")
    return "\n".join(lines) + "\n"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default shown, as :class:`tokenprune_models.common.cli.HelpFormatter`
    does (this script also runs as a worker beside a bare ``tokenprune`` tree, where the zoo is
    not importable)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if "(default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=_HelpFormatter)  # fmt: skip
    parser.add_argument("--baseline", default=BASELINE,
                        help="commit to compare with, or 'none'")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="turns of each tree")
    parser.add_argument("--calls", type=int, default=400, help="calls per timing")
    parser.add_argument("--output", type=Path, help="also write the markdown report here "
                        "(default: print only)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the raw results here "
                        "(default: none)")  # fmt: skip
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)  # fmt: skip
    if args.rounds < 1 or args.calls < 1:
        parser.error("--rounds and --calls must be positive")
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.calls)))
        return 0
    baseline = None if args.baseline.lower() == "none" else args.baseline
    best = measure(baseline, args.rounds, args.calls)
    text = report(best, baseline, args.rounds, args.calls)
    print(text)
    if args.output is not None:
        from tokenprune_models.common.atomic import write_text_atomic

        write_text_atomic(args.output, text)
    if args.json is not None:
        from tokenprune_models.common.atomic import write_text_atomic

        write_text_atomic(args.json, json.dumps(best, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
