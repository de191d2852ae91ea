"""CPU latency of models compared side by side."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch
from torch import Tensor, nn


def interleaved_latency_ms(
    models: Sequence[nn.Module], inputs: Tensor, repeats: int, threads: int | None = None
) -> list[float]:
    """Median milliseconds of each model's forward pass on ``inputs``.

    The models take turns within every repeat (after one warm-up each), so drift in the
    machine's speed (other tenants, clock changes) falls on all of them alike and their ratios
    stay fair. ``threads`` sets torch's CPU threads for the measurement (restored after).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    times: list[list[float]] = [[] for _ in models]
    try:
        with torch.inference_mode():
            for model in models:
                model(inputs)
            for _ in range(repeats):
                for model, record in zip(models, times, strict=True):
                    start = time.perf_counter()
                    model(inputs)
                    record.append((time.perf_counter() - start) * 1e3)
    finally:
        torch.set_num_threads(previous)
    return [statistics.median(record) for record in times]
