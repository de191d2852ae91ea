"""The kernel benchmark's reduced (no-GPU) mode runs and every competitor agrees."""

from __future__ import annotations

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


def test_baselines_benchmark_smoke_run(tmp_path):
    from benchmarks.baselines import main as baselines_main

    output = tmp_path / "baselines.md"
    assert baselines_main(["--batches", "1", "--repeats", "1", "--threads", "1",
                           "--output", str(output)]) == 0  # fmt: skip
    report = output.read_text()
    names = [line.split("|")[1].strip() for line in report.splitlines() if line.startswith("| ")]
    assert names[1:] == ["TokenPose-S-v1", "PPT-S / DPPT-S", "TokenPose-B", "PPT-B / DPPT-B",
                         "HEViTPose-T", "HEViTPose-S", "HEViTPose-B"]  # fmt: skip
    assert "PPT-B against the same weights unpruned: batch 1:" in report
