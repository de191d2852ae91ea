"""What every benchmark report starts with, and how it is written."""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import torch

import tokenprune


def environment_line() -> str:
    """Versions and hardware of this run, for the report header."""
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return (
        f"torch {torch.__version__}, tokenprune {tokenprune.__version__}, Python "
        f"{platform.python_version()}, CPU {platform.machine()} with {os.cpu_count()} cores{gpu}"
    )


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def time_interleaved(models: list, inputs, repeats: int) -> list[float]:
    """Median CPU milliseconds of each model's forward pass on ``inputs``, the models taking
    turns within every repeat (after one warm-up each), so that drift in the machine's speed
    (other tenants, clock changes) falls on all of them alike and their ratios stay fair."""
    times: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for model in models:
            model(inputs)
        for _ in range(repeats):
            for model, record in zip(models, times, strict=True):
                start = time.perf_counter()
                model(inputs)
                record.append((time.perf_counter() - start) * 1e3)
    return [statistics.median(record) for record in times]
