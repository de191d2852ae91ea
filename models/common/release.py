"""Shipping the weights of a finished training run: what every family's release command shares.

A shipped weights file is a weights-only state_dict in half precision (floating-point entries;
integer buffers as they are), written atomically; its JSON record carries the training wall
time read from the run's ``metrics.jsonl`` and the software it ran on.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from .checkpoint import save_atomic

__all__ = ["PAUSE_FACTOR", "save_half_precision", "software", "training_seconds"]

#: Gaps between logged steps longer than this many times the median gap are pauses (a run
#: stopped and resumed in a later session), not training time.
PAUSE_FACTOR = 20.0


def training_seconds(metrics: str | os.PathLike) -> float:
    """Wall time between the first and the last logged training step of a ``metrics.jsonl``
    (records with ``loss`` and ``time``), less pauses (see :data:`PAUSE_FACTOR`)."""
    lines = Path(metrics).read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    times = [r["time"] for r in records if "loss" in r and "time" in r]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    if not gaps:
        return 0.0
    typical = sorted(gaps)[len(gaps) // 2]
    return float(sum(g for g in gaps if g <= PAUSE_FACTOR * typical))


def save_half_precision(state_dict: Mapping[str, Tensor], path: str | os.PathLike) -> Path:
    """Write ``state_dict`` with its floating-point tensors in float16 (atomically, weights
    only); loading copies them back into a float32 model."""
    for key, value in state_dict.items():
        if not isinstance(value, Tensor):
            raise TypeError(f"state_dict entry {key!r} is a {type(value).__name__}, not a tensor")
    weights = {key: value.half() if value.is_floating_point() else value
               for key, value in state_dict.items()}  # fmt: skip
    save_atomic(weights, path)
    return Path(path)


def software() -> dict:
    """The versions and machine a record was made with."""
    return {"torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "processor": platform.processor()}  # fmt: skip
