"""Compile every kernel configuration the launchers can choose, for GPUs this machine lacks.

Usage (no GPU needed; ``TRITON_INTERPRET`` must be unset)::

    python -m tokenprune.kernels.aot_check --archs 90,80 --dtypes fp16,bf16 \\
        --head-dims 16,24,32,64,128 --shard 0/2 --json out.json

The check drives the real launchers (:mod:`.group_attention`, :mod:`.gathered_attention`) with
CPU tensors laid out as the library lays them out on a GPU (q, k, v as strided views of a fused
qkv projection, a ``[B, T, 2, H, D]`` key/value buffer), records their launches without running
anything (:func:`.common.capture_launches`), specialises each launch's arguments with Triton's
own binder for a CUDA target (integers equal to 1 become constants, integers and pointers
divisible by 16 are marked so, as the JIT does on a GPU), and compiles it with
``triton.compile`` down to a cubin for every requested architecture. Identical compiles are
done once.

For each compile it records registers, spill bytes and stack frame (``ptxas -v``), shared
memory, tensor-core instructions (SASS ``HGMMA``/``HMMA``, PTX ``wgmma``/``mma.sync``),
asynchronous copies (``LDGSTS``, PTX ``cp.async``), TMA (``UTMALDG``/``UBLKCP``), 2-byte scalar
global loads (PTX ``ld.global.b16``), local-memory traffic (``STL``/``LDL``) and atomics, and it
fails (exit status 1, a report of every failure) on:

* a compile error;
* any register spill;
* a half-precision kernel without tensor-core instructions;
* a half-precision kernel with 2-byte scalar global loads of q, k, v or gradients, or 2-byte
  scalar global stores of its outputs (unvectorised, unpipelined rows; loads of two one-byte
  mask flags, also ``ld.global.b16`` in PTX, are told apart by their source line);
* shared memory above the architecture's per-block limit.

``ptxas`` and ``cuobjdump`` come with the triton wheel; nothing here is needed at import time of
the library. Shape sets (``--shapes``): ``all`` reaches every tile configuration the launchers
can pick (query tiles of 16, 32, 64 and 128 rows, key tiles of 32 and 64, masks and scoring
logits on and off); ``gtpt`` only the shapes of GTPT's attention stages (a CI-sized subset).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import common
from .gathered_attention import gathered_attention_backward, gathered_attention_forward
from .group_attention import group_attention_backward, group_attention_forward

#: Shared memory a block may use (bytes): sm_90 227 KB, sm_80 163 KB, sm_86/sm_89 99 KB.
SMEM_LIMITS = {80: 163 * 1024, 86: 99 * 1024, 87: 163 * 1024, 89: 99 * 1024, 90: 227 * 1024}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
HALF = ("fp16", "bf16")
HEADS = 8  # GTPT's


@dataclass(frozen=True)
class GroupShape:
    """A group-attention call: ``G`` groups of ``N`` tokens, ``S`` of them shared."""

    groups: int
    tokens: int
    shared: int
    masks: tuple[str, ...]  # "none", "mask", "mask+logits"

    @property
    def name(self) -> str:
        return f"group G={self.groups} N={self.tokens} S={self.shared}"


@dataclass(frozen=True)
class GatheredShape:
    """A gathered-attention call: ``Nq`` queries per group, ``Nk`` indexed keys from ``T`` rows."""

    queries: int
    keys: int
    buffer: int
    masks: tuple[str, ...]  # "none", "mask"

    @property
    def name(self) -> str:
        return f"gathered Nq={self.queries} Nk={self.keys} T={self.buffer}"


ALL_MASKS = ("none", "mask", "mask+logits")
SHAPES = {
    # every (BLOCK_M, BLOCK_N) the launchers pick: query tiles 16/32/64/128, key tiles 32/64
    "all": [
        GroupShape(1, 16, 0, ALL_MASKS),  # 16 x 32
        GroupShape(1, 24, 0, ALL_MASKS),  # 32 x 32
        GroupShape(3, 32, 6, ALL_MASKS),  # 32 x 64
        GroupShape(3, 100, 6, ALL_MASKS),  # 64 x 64
        GroupShape(1, 2048, 0, ALL_MASKS),  # 128 x 64
        GatheredShape(16, 32, 40, ("none", "mask")),
        GatheredShape(32, 64, 80, ("none", "mask")),
        GatheredShape(100, 20, 40, ("none", "mask")),  # 64 x 32
        GatheredShape(100, 100, 200, ("none", "mask")),
        GatheredShape(2048, 32, 64, ("none", "mask")),  # 128 x 32
        GatheredShape(2048, 2048, 4096, ("none", "mask")),
    ],
    # GTPT's stages (benchmarks/kernels.py): MHSA without mask, MHGA with mask and scoring logits
    "gtpt": [
        GroupShape(1, 257, 0, ("none",)),
        GroupShape(3, 82, 6, ("mask", "mask+logits")),
        GroupShape(3, 31, 6, ("mask", "mask+logits")),
        GatheredShape(82, 76, 179, ("mask",)),
    ],
}


@dataclass
class Job:
    """One unique compile: a captured launch specialised for one architecture."""

    key: str
    arch: int
    kernel: str
    kind: str
    dtype: str
    head_dim: int
    flags: dict
    record: object = field(repr=False)
    reached_by: list[str] = field(default_factory=list)


def _group_launches(shape: GroupShape, dtype: torch.dtype, head_dim: int, masks: str):
    batch = 2
    qkv = torch.empty(batch, shape.groups, shape.tokens, 3, HEADS, head_dim, dtype=dtype)
    q, k, v = (qkv[:, :, :, i].permute(0, 1, 3, 2, 4) for i in range(3))
    key_mask = None
    if masks != "none":
        key_mask = torch.ones(batch, shape.groups, shape.tokens, dtype=torch.bool)
    score_queries = min(6, shape.tokens) if masks == "mask+logits" else 0
    with common.capture_launches() as launches:
        out, lse, _ = group_attention_forward(
            q, k, v, key_mask, shape.shared, head_dim**-0.5, score_queries
        )
        if masks != "mask+logits":  # the backward has no logits variant
            grad = torch.zeros_like(out)
            group_attention_backward(
                grad, q, k, v, out, lse, key_mask, shape.shared, head_dim**-0.5, None
            )
    return launches


def _gathered_launches(shape: GatheredShape, dtype: torch.dtype, head_dim: int, masks: str):
    batch, groups = 2, 3
    qkv = torch.empty(batch, groups, shape.queries, 3, HEADS, head_dim, dtype=dtype)
    q = qkv[:, :, :, 0].permute(0, 1, 3, 2, 4)
    kv = torch.empty(batch, shape.buffer, 2, HEADS, head_dim, dtype=dtype)
    k, v = (kv[:, :, i].permute(0, 2, 1, 3) for i in range(2))
    index = torch.zeros(batch, groups, shape.keys, dtype=torch.int64)
    key_mask = None
    if masks != "none":
        key_mask = torch.ones(batch, groups, shape.keys, dtype=torch.bool)
    deterministic = torch.are_deterministic_algorithms_enabled()
    with common.capture_launches() as launches:
        out, lse = gathered_attention_forward(q, k, v, index, key_mask, head_dim**-0.5)
        grad = torch.zeros_like(out)
        try:
            for per_slot in (False, True):  # atomics, and the deterministic mode's slots
                torch.use_deterministic_algorithms(per_slot)
                gathered_attention_backward(
                    grad, q, k, v, index, key_mask, out, lse, head_dim**-0.5
                )
        finally:
            torch.use_deterministic_algorithms(deterministic)
    return launches


def _binder(kernel, arch: int):
    """Triton's own argument binder and specialiser for a CUDA target of ``arch``."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    backend = make_backend(GPUTarget("cuda", arch, 32))
    return backend, create_function_from_signature(kernel.signature, kernel.params, backend)


def _specialise(record, arch: int):
    """``(options, signature, constexprs, attrs)`` exactly as the JIT would compile the launch
    on a GPU of ``arch``."""
    backend, binder = _binder(record.kernel, arch)
    kwargs = dict(record.kwargs)
    kwargs["debug"] = False
    bound, specialization, options = binder(*record.args, **kwargs)
    return record.kernel._pack_args(backend, kwargs, bound, specialization, options)


def plan_jobs(
    archs: list[int], dtypes: list[str], head_dims: list[int], shapes: str, wide: bool
) -> list[Job]:
    """Every unique compile the launchers reach over the matrix, in a stable order."""
    jobs: dict[str, Job] = {}
    for dtype_name in dtypes:
        dtype = DTYPES[dtype_name]
        for head_dim in head_dims:
            for shape in SHAPES[shapes]:
                for masks in shape.masks:
                    spans = [common.WIDE_OFFSET_SPAN] + ([1] if wide else [])
                    for span in spans:
                        old, common.WIDE_OFFSET_SPAN = common.WIDE_OFFSET_SPAN, span
                        try:
                            launch = (
                                _group_launches
                                if isinstance(shape, GroupShape)
                                else _gathered_launches
                            )
                            records = launch(shape, dtype, head_dim, masks)
                        finally:
                            common.WIDE_OFFSET_SPAN = old
                        for record in records:
                            for arch in archs:
                                _add_job(jobs, record, arch, dtype_name, head_dim, shape, masks)
    return sorted(jobs.values(), key=lambda job: job.key)


def _add_job(jobs, record, arch, dtype_name, head_dim, shape, masks):
    options, signature, constexprs, attrs = _specialise(record, arch)
    name = record.kernel.__name__
    key = json.dumps(
        [
            name,
            arch,
            sorted(signature.items()),
            sorted((str(k), repr(v)) for k, v in constexprs.items()),
            sorted((str(k), repr(v)) for k, v in attrs.items()),
            options.num_warps,
            options.num_stages,
        ]
    )
    job = jobs.get(key)
    if job is None:
        config = record.plan.config
        flags = {
            "block": [config.block_m, config.block_n, config.block_d],
            "num_warps": config.num_warps,
            "num_stages": config.num_stages,
            "has_mask": record.kwargs.get("HAS_MASK"),
            "store_logits": record.kwargs.get("STORE_LOGITS", False),
            "per_slot": record.kwargs.get("PER_SLOT", False),
            "wide_offsets": record.kwargs["WIDE"],
            "align": record.kwargs["ALIGN"],
            "constants": sorted(name for name, kind in signature.items() if kind == "constexpr"),
        }
        job = Job(key, arch, name, record.plan.kind, dtype_name, head_dim, flags, record)
        jobs[key] = job
    job.reached_by.append(f"{shape.name} {masks} {dtype_name} D={head_dim}")


PTXAS_PATTERNS = {
    "registers": r"Used (\d+) registers",
    "spill_stores": r"(\d+) bytes spill stores",
    "spill_loads": r"(\d+) bytes spill loads",
    "stack_frame": r"(\d+) bytes stack frame",
}
LD_B16 = r"\bld\.global(?:\.(?!v\d)[\w:]+)*\.[bfu]16\b"
#: a kernel line that loads key-mask flags (one byte each; PTX loads two of them as one b16)
MASK_LOAD = re.compile(r"tl\.load\(\s*(?:Mask|mask_)")
PTX_PATTERNS = {
    "ptx_wgmma": r"\bwgmma\.mma_async",
    "ptx_mma_sync": r"\bmma\.sync",
    "ptx_cp_async": r"\bcp\.async\.c[ag]\b",
    "ptx_tma": r"\bcp\.async\.bulk\.tensor",
    # 2-byte scalar global loads (no .v2/.v4 vector), including packed pairs of mask bytes
    "ptx_ld_global_b16": LD_B16,
    # 2-byte scalar global stores: half-precision rows written one element at a time (every
    # other store of these kernels is float32: statistics, logits, gathered dk/dv)
    "ptx_st_global_b16": r"\bst\.global(?:\.(?!v\d)[\w:]+)*\.[bfu]16\b",
}
SASS_PATTERNS = {
    "sass_hgmma": r"\bHGMMA\.",
    "sass_hmma": r"\bHMMA\.",
    "sass_ldgsts": r"\bLDGSTS\b",
    "sass_tma": r"\b(?:UTMALDG|UBLKCP)\b",
    "sass_stl": r"\bSTL\b",
    "sass_ldl": r"\bLDL\b",
    "sass_atomics": r"\b(?:RED|ATOM|ATOMG)\b",
}


def scalar_half_loads(ptx: str) -> int:
    """2-byte scalar global loads of tensor data: every ``ld.global.b16`` except those on a
    kernel line that loads key-mask flags (found through the PTX ``.loc`` line information),
    which PTX writes as ``ld.global.b16`` too when it loads two one-byte flags at once."""
    files: dict[str, str] = dict(re.findall(r'^\s*\.file\s+(\d+)\s+"([^"]+)"', ptx, re.M))
    sources: dict[str, list[str]] = {}
    count = 0
    where = None
    for line in ptx.splitlines():
        loc = re.match(r"\s*\.loc\s+(\d+)\s+(\d+)", line)
        if loc:
            where = loc.groups()
            continue
        if not re.search(LD_B16, line):
            continue
        text = ""
        if where is not None and where[0] in files:
            path = files[where[0]]
            if path not in sources:
                try:
                    sources[path] = Path(path).read_text().splitlines()
                except OSError:
                    sources[path] = []
            lines = sources[path]
            number = int(where[1])
            text = lines[number - 1] if 0 < number <= len(lines) else ""
        if not MASK_LOAD.search(text):
            count += 1
    return count


def _count(patterns: dict[str, str], text: str) -> dict[str, int]:
    return {name: len(re.findall(pattern, text)) for name, pattern in patterns.items()}


def _tool(name: str) -> str | None:
    """A CUDA tool shipped with the triton wheel (or on PATH), None if absent."""
    import triton

    bundled = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)
    return shutil.which(name)


def compile_job(job: Job) -> dict:
    """Compile one job; returns its JSON record (metrics and failures)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    result = {
        "kernel": job.kernel,
        "kind": job.kind,
        "arch": f"sm_{job.arch}",
        "dtype": job.dtype,
        "head_dim": job.head_dim,
        **job.flags,
        "reached_by": job.reached_by,
        "failures": [],
    }
    options, signature, constexprs, attrs = _specialise(job.record, job.arch)
    source = ASTSource(job.record.kernel, signature, constexprs, attrs)
    log = io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(
                source, target=GPUTarget("cuda", job.arch, 32), options=options.__dict__
            )
    except Exception as error:  # every compile error is a reported failure
        result["compile_s"] = round(time.perf_counter() - start, 2)
        result["failures"].append(f"compile error: {type(error).__name__}: {error}"[:2000])
        return result
    result["compile_s"] = round(time.perf_counter() - start, 2)
    ptxas_log = log.getvalue()
    for name, pattern in PTXAS_PATTERNS.items():
        found = re.findall(pattern, ptxas_log)
        result[name] = max((int(x) for x in found), default=0)
    result["shared_bytes"] = int(compiled.metadata.shared)
    result.update(_count(PTX_PATTERNS, compiled.asm["ptx"]))
    result["ptx_ld_global_b16_data"] = scalar_half_loads(compiled.asm["ptx"])
    result.update(_count(SASS_PATTERNS, _sass(compiled.asm["cubin"])))
    result["failures"] = failures(result, job.arch, job.dtype)
    return result


def _sass(cubin: bytes) -> str:
    cuobjdump = _tool("cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        done = subprocess.run(
            [cuobjdump, "-sass", f.name], capture_output=True, text=True, check=True
        )
    return done.stdout


def failures(result: dict, arch: int, dtype: str) -> list[str]:
    """The check's verdict on one compile's metrics (empty: it passes)."""
    found = []
    if result["spill_stores"] or result["spill_loads"] or result["sass_stl"] or result["sass_ldl"]:
        found.append(
            f"spills: {result['spill_stores']} B stored, {result['spill_loads']} B loaded, "
            f"{result['sass_stl']} STL / {result['sass_ldl']} LDL"
        )
    if dtype in HALF and result["sass_hgmma"] + result["sass_hmma"] == 0:
        found.append("no tensor-core instruction (HGMMA/HMMA)")
    if dtype in HALF and result["ptx_ld_global_b16_data"]:
        found.append(f"{result['ptx_ld_global_b16_data']} scalar 2-byte global loads")
    if dtype in HALF and result.get("ptx_st_global_b16"):
        found.append(f"{result['ptx_st_global_b16']} scalar 2-byte global stores")
    limit = SMEM_LIMITS.get(arch)
    if limit is not None and result["shared_bytes"] > limit:
        found.append(f"shared memory {result['shared_bytes']} B > {limit} B per block")
    return found


def markdown_report(report: dict) -> str:
    """A markdown summary of a ``--json`` report: one row per (kernel, architecture, dtype)."""
    groups: dict[tuple, list[dict]] = {}
    for c in report["compiles"]:
        groups.setdefault((c["kernel"], c["arch"], c["dtype"]), []).append(c)
    summary = report["summary"]
    lines = [
        f"Ahead-of-time compile check of the Triton kernels: `{report['command']}`",
        "",
        f"triton {report['triton']}, torch {report['torch']}, compiled on {report['host']} "
        f"without a GPU. {summary['compiled']} unique compiles, {summary['failed']} failed "
        f"({summary['compile_errors']} compile errors, {summary['with_spills']} with spills); "
        f"{summary['wall_s'] / 60:.1f} min.",
        "",
        "| kernel | arch | dtype | compiles | head dims | max registers | spill bytes | "
        "max shared KB | tensor-core instr. (min) | cp.async (min) | 2-byte scalar loads | "
        "2-byte scalar stores | failed |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (kernel, arch, dtype), compiles in sorted(groups.items()):
        ok = [c for c in compiles if "registers" in c]
        dims = ",".join(str(d) for d in sorted({c["head_dim"] for c in compiles}))
        spills = sum(c["spill_stores"] + c["spill_loads"] for c in ok)
        tensor_cores = min((c["sass_hgmma"] + c["sass_hmma"] for c in ok), default=0)
        lines.append(
            f"| `{kernel}` | {arch} | {dtype} | {len(compiles)} | {dims} | "
            f"{max((c['registers'] for c in ok), default=0)} | {spills} | "
            f"{max((c['shared_bytes'] for c in ok), default=0) / 1024:.1f} | {tensor_cores} | "
            f"{min((c['sass_ldgsts'] for c in ok), default=0)} | "
            f"{sum(c['ptx_ld_global_b16_data'] for c in ok)} | "
            f"{sum(c.get('ptx_st_global_b16', 0) for c in ok) if dtype != 'fp32' else '-'} | "
            f"{sum(bool(c['failures']) for c in compiles)} |"
        )
    return "\n".join(lines) + "\n"


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m tokenprune.kernels.aot_check",
        description="Compile every Triton kernel configuration ahead of time for GPUs this "
        "machine lacks and check registers, spills, tensor cores, loads and shared memory.",
    )
    parser.add_argument("--archs", default="90,80", help="compute capabilities, e.g. 90,80,86")
    parser.add_argument("--dtypes", default="fp16,bf16", help="fp16, bf16 and/or fp32")
    parser.add_argument("--head-dims", default="16,24,32,64,128", help="head dims in [16, 128]")
    parser.add_argument("--shapes", default="all", choices=sorted(SHAPES))
    parser.add_argument("--shard", default="0/1", help="i/n: compile every n-th job from i")
    parser.add_argument("--wide", action="store_true", help="also compile int64-offset variants")
    parser.add_argument("--json", type=Path, help="write every compile's record here")
    parser.add_argument("--markdown", type=Path, help="write a summary table here")
    parser.add_argument("--list", action="store_true", help="list the jobs, compile nothing")
    args = parser.parse_args(argv)
    try:
        args.archs = [int(a) for a in args.archs.split(",")]
        args.head_dims = [int(d) for d in args.head_dims.split(",")]
        index, count = (int(x) for x in args.shard.split("/"))
    except ValueError:
        parser.error("--archs, --head-dims and --shard take integers (e.g. 90,80 and 0/2)")
    args.dtypes = args.dtypes.split(",")
    if unknown := [d for d in args.dtypes if d not in DTYPES]:
        parser.error(f"--dtypes: unknown {unknown}; choose from {sorted(DTYPES)}")
    if bad := [d for d in args.head_dims if not 16 <= d <= 128]:
        parser.error(f"--head-dims: {bad} outside [16, 128], which the launchers accept")
    if bad := [a for a in args.archs if a < 80 or a >= 100]:
        parser.error(f"--archs: {bad}; sm_80 to sm_90 are checked (Ampere and Hopper)")
    if not (count >= 1 and 0 <= index < count):
        parser.error(f"--shard must be i/n with 0 <= i < n, got {args.shard}")
    args.shard = (index, count)
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if common.INTERPRETED:
        print(
            "aot_check compiles for a GPU: unset TRITON_INTERPRET (the kernels were defined "
            "for Triton's interpreter)",
            file=sys.stderr,
        )
        return 2
    missing = [tool for tool in ("ptxas", "cuobjdump") if _tool(tool) is None]
    if missing:
        print(f"aot_check needs {' and '.join(missing)} (shipped with triton)", file=sys.stderr)
        return 2
    import triton

    jobs = plan_jobs(args.archs, args.dtypes, args.head_dims, args.shapes, args.wide)
    index, count = args.shard
    mine = jobs[index::count]
    print(f"{len(jobs)} unique compiles, shard {index}/{count}: {len(mine)}", flush=True)
    if args.list:
        for job in mine:
            print(f"  {job.kernel} sm_{job.arch} {job.dtype} D={job.head_dim} {job.flags}")
        return 0
    results = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tokenprune-aot-") as cache:
        # a fresh cache: on a cache hit Triton does not run ptxas, whose report is needed
        old_cache, triton.knobs.cache.dir = triton.knobs.cache.dir, cache
        old_dump, triton.knobs.nvidia.dump_ptxas_log = triton.knobs.nvidia.dump_ptxas_log, True
        try:
            for number, job in enumerate(mine, 1):
                result = compile_job(job)
                results.append(result)
                verdict = "; ".join(result["failures"]) or "ok"
                print(
                    f"[{number}/{len(mine)}] {job.kernel} sm_{job.arch} {job.dtype} "
                    f"D={job.head_dim} {job.flags['block']} w{job.flags['num_warps']} "
                    f"s{job.flags['num_stages']} regs={result.get('registers')} "
                    f"smem={result.get('shared_bytes')} {result['compile_s']}s: {verdict}",
                    flush=True,
                )
        finally:
            triton.knobs.cache.dir = old_cache
            triton.knobs.nvidia.dump_ptxas_log = old_dump
    failed = [r for r in results if r["failures"]]
    summary = {
        "unique_compiles": len(jobs),
        "compiled": len(results),
        "failed": len(failed),
        "compile_errors": sum(any("compile error" in f for f in r["failures"]) for r in results),
        "with_spills": sum(any(f.startswith("spills") for f in r["failures"]) for r in results),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    if args.json is not None or args.markdown is not None:
        meta = {
            "command": "python -m tokenprune.kernels.aot_check " + " ".join(argv or sys.argv[1:]),
            "triton": triton.__version__,
            "torch": torch.__version__,
            "host": platform.machine(),
            "archs": args.archs,
            "dtypes": args.dtypes,
            "head_dims": args.head_dims,
            "shapes": args.shapes,
            "shard": list(args.shard),
        }
        report = {**meta, "summary": summary, "compiles": results}
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=1) + "\n")
        if args.markdown is not None:
            args.markdown.parent.mkdir(parents=True, exist_ok=True)
            args.markdown.write_text(markdown_report(report))
    print(json.dumps(summary))
    if failed:
        print(f"FAILED: {len(failed)} of {len(results)} compiles", file=sys.stderr)
        for r in failed:
            print(
                f"  {r['kernel']} {r['arch']} {r['dtype']} D={r['head_dim']} {r['block']} "
                f"w{r['num_warps']} s{r['num_stages']}: {'; '.join(r['failures'])}",
                file=sys.stderr,
            )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
