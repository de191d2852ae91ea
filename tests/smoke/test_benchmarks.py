"""The benchmarks in their quick modes (what ``--quick`` runs in seconds), the kernel
benchmark's reduced (no-GPU) mode, where every competitor must agree, and the GPU check's dry
run."""

from __future__ import annotations

import json
import os

import pytest
import torch

from benchmarks.kernels import main


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU mode times for minutes")
def test_kernel_benchmark_correctness_mode(tmp_path):
    output = tmp_path / "kernels.md"
    assert main(["--no-compile", "--output", str(output)]) == 0
    report = output.read_text()
    assert "correctness only" in report
    rows = [line for line in report.splitlines() if line.startswith("| tiny")]
    assert len(rows) == 6
    for row in rows:
        cells = [c.strip() for c in row.split("|")]
        assert cells[3] == "ok", row  # our kernel
        problems = cells[5]
        # on the CPU only eager FlexAttention lacks a backward; nothing else may disagree
        assert problems in ("-", "flex (eager): no backward"), row


def test_roofline_by_hand():
    """One MHSA case worked out by hand: B=1, H=2, N=128, D=64, bf16."""
    from benchmarks.kernels import PEAKS, GroupCase, roofline

    case = GroupCase("hand", 1, 1, 2, 128, 0, 64, dummy_mask=False)
    flops = 4 * (2 * 128 * 128) * 64  # two matmuls over every (query, key) pair, 2 heads
    tensor = 2 * 128 * 64 * 2  # bytes of q (or k, v, out)
    nbytes = 4 * tensor + 4 * 2 * 128  # q, k, v read, out written, lse float32
    r = roofline(case, "fwd", 2)
    assert r["gflop"] == flops / 1e9 and r["mb"] == nbytes / 1e6
    assert r["intensity"] == flops / nbytes
    tflops, tbps = PEAKS["H100"]
    assert r["ideal_us"]["H100"] == max(flops / (tflops * 1e12), nbytes / (tbps * 1e12)) * 1e6
    both = roofline(case, "fwd+bwd", 2)
    assert both["gflop"] == pytest.approx(3.5 * r["gflop"])  # five matmuls more backward
    backward = 4 * tensor + tensor + 4 * 2 * 128 + 3 * tensor  # q, k, v, out, dO, lse; dq, dk, dv
    assert both["mb"] == pytest.approx((nbytes + backward) / 1e6)


def test_gathered_roofline_counts_the_selected_rows_only():
    from benchmarks.kernels import GatheredCase, compulsory_bytes

    def kv_bytes(buffer, groups, keys):
        case = GatheredCase("g", 1, groups, 1, 4, buffer, keys, 16)
        q_out_lse = 2 * (groups * 4 * 16 * 2) + 4 * groups * 4
        return compulsory_bytes(case, "fwd", 2) - q_out_lse

    assert kv_bytes(1000, 2, 10) == 2 * 20 * 16 * 2  # 20 picked rows of k and v
    assert kv_bytes(15, 2, 10) == 2 * 15 * 16 * 2  # never more than the buffer


def test_roofline_mode_runs_nothing(tmp_path):
    output = tmp_path / "roofline.md"
    assert main(["--roofline", "--suite", "gathered", "--output", str(output)]) == 0
    text = output.read_text()
    assert "| gtpt-S/B c2f b64 | fwd |" in text and "ideal us H200" in text


def _first_cells(report: str) -> list[str]:
    return [line.split("|")[1].strip() for line in report.splitlines() if line.startswith("| ")]


def test_baselines_benchmark_quick_mode(tmp_path, monkeypatch):
    from benchmarks.baselines import main as baselines_main

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # --threads defaults to it
    output = tmp_path / "baselines.md"
    assert baselines_main(["--quick", "--output", str(output)]) == 0
    report = output.read_text()
    assert ", 1 threads" in report.splitlines()[2]
    assert _first_cells(report)[1:] == ["TokenPose-S-v1", "PPT-S / DPPT-S", "TokenPose-B",
                                        "PPT-B / DPPT-B", "HEViTPose-T", "HEViTPose-S",
                                        "HEViTPose-B"]  # fmt: skip
    assert "| CPU ms, batch 1 | note |" in report  # --quick: batch 1 only
    assert "PPT-B against the same weights unpruned: batch 1:" in report


def test_hot_benchmark_quick_mode(tmp_path, monkeypatch):
    from benchmarks.hot import main as hot_main

    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    output = tmp_path / "hot.md"
    # --threads beats OMP_NUM_THREADS
    assert hot_main(["--quick", "--threads", "1", "--output", str(output)]) == 0
    report = output.read_text()
    assert ", 1 threads; 27 frames, width 64 (smoke run)" in report
    assert _first_cells(report)[1:] == ["MixSTE", "HoT w. MixSTE (seq2seq)",
                                        "TPC w. MixSTE (seq2frame)"]  # fmt: skip
    assert "HoT w. MixSTE (seq2seq) against MixSTE: batch 1:" in report


def test_gtpt_benchmark_quick_mode(tmp_path, monkeypatch):
    from benchmarks.gtpt import main as gtpt_main

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    output = tmp_path / "gtpt.md"
    assert gtpt_main(["--quick", "--output", str(output)]) == 0
    report = output.read_text()
    cells = _first_cells(report)
    assert [c for c in cells if c.startswith("GTPT")] == ["GTPT-T coco", "GTPT-T wholebody"]
    assert "## Speed: GTPT-T COCO" in report
    cpu_rows = [line.split("|") for line in report.splitlines() if line.startswith("| CPU")]
    assert [(row[2].strip(), row[3].strip()) for row in cpu_rows] == [("1", "1")]  # threads, batch


@pytest.mark.parametrize(("omp", "expected"), [("3", 3), ("4,2", 4), ("", None), ("x", None),
                                               ("0", None), (None, None)])  # fmt: skip
def test_benchmark_threads_default_to_omp_num_threads(monkeypatch, omp, expected):
    from benchmarks.report import default_threads

    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    assert default_threads() == (expected or os.cpu_count() or 1)
    assert default_threads(fallback=1) == (expected or 1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the check runs for minutes")
def test_gpu_check_dry_run(tmp_path):
    """The script for the day a GPU is lent runs every step at toy sizes on the CPU."""
    from benchmarks.gpu_check import main as gpu_check

    assert gpu_check(["--dry-run", "--output", str(tmp_path)]) == 0
    report = (tmp_path / "gpu_check_cpu_dry_run.md").read_text()
    assert "# tokenprune GPU check: CPU (dry run)" in report
    rows = [line for line in report.splitlines() if line.startswith("| edge") or "toy" in line]
    assert len(rows) == 7 and all(line.endswith("| ok |") for line in rows)
    assert "| GTPT-T 64x48 | unpruned | torch |" in report
    assert (tmp_path / "gpu_check_cpu_dry_run_kernels.md").is_file()
    payload = json.loads((tmp_path / "gpu_check_cpu_dry_run.json").read_text())
    assert payload["device"] == "CPU (dry run)" and len(payload["end_to_end"]) == 2
    assert [row["capture"] for row in payload["graph_capture"]] == [
        "torch.compile(mode='reduce-overhead')"
    ] and payload["graph_capture"][0]["ok"]


def test_host_cost_benchmark_measures_the_launches(tmp_path):
    """The host-cost benchmark runs the public functions through Triton's binder (nothing is
    launched) and counts the kernels each call reaches: one forward, three with the backward."""
    from benchmarks.host_cost import main as host_cost

    output = tmp_path / "host.json"
    assert host_cost(["--baseline", "none", "--rounds", "1", "--calls", "3",
                      "--json", str(output)]) == 0  # fmt: skip
    after = json.loads(output.read_text())["after"]
    assert {case: row["launches"] for case, row in after.items()} == {
        "forward": 1, "forward_scored": 1, "forward_train": 1, "forward_backward": 3,
        "gathered_forward": 1,
    }
    assert all(row["us"] > 0 for row in after.values())


def test_gpu_check_refuses_to_run_without_a_gpu_unless_dry(capsys):
    from benchmarks.gpu_check import main as gpu_check

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit):
        gpu_check([])
    assert "pass --dry-run" in capsys.readouterr().err


def test_patch_timm_benchmark_quick_mode(tmp_path):
    from benchmarks.patch_timm import main

    output = tmp_path / "patch_timm.md"
    assert main(["--quick", "--output", str(output)]) == 0
    rows = [line for line in output.read_text().splitlines() if line.startswith("| ViT-T")]
    assert len(rows) == 1
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    macs_unpruned, macs_pruned = float(cells[4]), float(cells[5])
    assert macs_pruned < 0.7 * macs_unpruned  # EViT at 0.7 after blocks 4, 7, 10: 1.5x fewer
