"""The ahead-of-time compile check of the Triton kernels (``tokenprune.kernels.aot_check``).

The check compiles for a GPU, so it runs in a subprocess without ``TRITON_INTERPRET`` (this
suite defines the kernels for the interpreter). CI runs the float16 subset at the head dims the
models use (16 and 24), on sm_90, at GTPT's stage shapes, with the int64-offset variants.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

triton = pytest.importorskip("triton", reason="the Triton kernels need the 'kernels' extra")

ROOT = Path(__file__).resolve().parents[3]
NVIDIA_BIN = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"


def run_check(*args, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["OMP_NUM_THREADS"] = "1"
    out = tmp_path / "aot.json"
    done = subprocess.run(
        [sys.executable, "-m", "tokenprune.kernels.aot_check", *args, "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done, (json.loads(out.read_text()) if out.exists() else None)


@pytest.mark.slow
@pytest.mark.skipif(
    not (NVIDIA_BIN / "ptxas").is_file() or not (NVIDIA_BIN / "cuobjdump").is_file(),
    reason="ptxas/cuobjdump are not in this triton wheel; the AOT check needs them",
)
def test_fp16_kernels_at_gtpt_head_dims_compile_for_sm90_without_spills(tmp_path):
    done, report = run_check(
        "--archs", "90", "--dtypes", "fp16", "--head-dims", "16,24", "--shapes", "gtpt", "--wide",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    compiles = report["compiles"]
    kernels = {c["kernel"] for c in compiles}
    assert kernels == {
        f"_{op}_attention_{kind}"
        for op in ("group", "gathered")
        for kind in ("fwd", "bwd_dq", "bwd_dkdv")
    }
    assert {c["head_dim"] for c in compiles} == {16, 24}
    # the int64-offset variants compile too (the interpreter cannot show a Triton type error)
    assert {c["wide_offsets"] for c in compiles} == {False, True}
    for c in compiles:
        assert c["failures"] == []
        assert c["spill_stores"] == 0 and c["sass_stl"] == 0
        assert c["sass_hgmma"] + c["sass_hmma"] > 0  # tensor cores
        assert c["ptx_ld_global_b16_data"] == 0  # head_dim 24 included: 16-byte rows
        assert c["sass_ldgsts"] > 0  # cp.async pipelining
        assert 0 < c["shared_bytes"] <= 227 * 1024


def test_check_rejects_bad_arguments_and_the_interpreter(tmp_path):
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "tokenprune.kernels.aot_check", "--archs", "90", "--list"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and "unset TRITON_INTERPRET" in done.stderr
    done, _ = run_check("--head-dims", "8", tmp_path=tmp_path)
    assert done.returncode == 2 and "outside [16, 128]" in done.stderr
    done, _ = run_check("--shard", "3/2", tmp_path=tmp_path)
    assert done.returncode == 2 and "--shard" in done.stderr


def test_verdicts_name_each_failure():
    from tokenprune.kernels.aot_check import failures

    clean = dict(
        spill_stores=0, spill_loads=0, sass_stl=0, sass_ldl=0, sass_hgmma=8, sass_hmma=0,
        ptx_ld_global_b16_data=0, shared_bytes=100 * 1024,
    )  # fmt: skip
    assert failures(clean, 90, "fp16") == []
    assert failures(clean, 86, "fp16") == ["shared memory 102400 B > 101376 B per block"]
    assert failures({**clean, "spill_stores": 12, "sass_stl": 3}, 90, "bf16")[0].startswith(
        "spills: 12 B stored"
    )
    assert failures({**clean, "sass_hgmma": 0}, 80, "fp16") == [
        "no tensor-core instruction (HGMMA/HMMA)"
    ]
    assert failures({**clean, "sass_hgmma": 0}, 80, "fp32") == []  # fp32 uses IEEE FMA dots
    assert failures({**clean, "ptx_ld_global_b16_data": 80}, 90, "fp16") == [
        "80 scalar 2-byte global loads"
    ]


def test_packed_mask_byte_loads_are_not_scalar_half_loads(tmp_path):
    """PTX loads two one-byte mask flags as one ``ld.global.b16``: the source line tells."""
    from tokenprune.kernels.aot_check import scalar_half_loads

    source = tmp_path / "kernel.py"
    source.write_text(
        "q = tl.load(Q + rows, mask=ok)\nflag = tl.load(mask_batch + cols, mask=ok, other=0)\n"
    )
    ptx = f"""
    .file 1 "{source}"
    .loc 1 2 20
    @%p1 ld.global.b16 {{ %rs1 }}, [ %rd1 + 0 ];
    .loc 1 1 8
    @%p2 ld.global.b16 {{ %rs2 }}, [ %rd2 + 0 ];
    @%p2 ld.global.L1::evict_last.b16 {{ %rs3 }}, [ %rd3 + 0 ];
    @%p3 ld.global.v4.b32 {{ %r1, %r2, %r3, %r4 }}, [ %rd4 + 0 ];
    """
    assert scalar_half_loads(ptx) == 2
