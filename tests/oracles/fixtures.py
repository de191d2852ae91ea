"""Access to the official-implementation fixtures (``../shared/fixtures`` by default).

Tests that need them skip, saying why, where the folder is absent (a user's clone); set
``TOKENPRUNE_FIXTURES`` to point elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def fixture_dir() -> Path:
    return Path(os.environ.get("TOKENPRUNE_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def load_fixture(case: str) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """``(official state_dict, io arrays)`` of a fixture case, or skip the test."""
    folder = fixture_dir()
    weights, io = folder / f"{case}.weights.npz", folder / f"{case}.io.npz"
    if not (weights.is_file() and io.is_file()):
        pytest.skip(
            f"official fixture {case!r} not found in {folder} (set TOKENPRUNE_FIXTURES to the "
            "folder holding <case>.weights.npz and <case>.io.npz)"
        )
    with np.load(weights) as z:
        state_dict = {k: torch.from_numpy(z[k]) for k in z.files}
    with np.load(io) as z:
        arrays = {k: z[k] for k in z.files}
    return state_dict, arrays
