"""What every benchmark report starts with, and how it is written."""

from __future__ import annotations

import os
import platform
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

