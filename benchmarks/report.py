"""What every benchmark report starts with, and how it is written."""

from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Callable
from pathlib import Path

import torch

import tokenprune
from models.common.atomic import write_text_atomic


def environment_line() -> str:
    """Versions and hardware of this run, for the report header."""
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return (
        f"torch {torch.__version__}, tokenprune {tokenprune.__version__}, Python "
        f"{platform.python_version()}, CPU {platform.machine()} with {os.cpu_count()} cores{gpu}"
    )


def add_timing_arguments(parser: argparse.ArgumentParser, batches: list[int], repeats: int) -> None:
    """The options every CPU benchmark takes: batch sizes, threads, repeats and the report file."""
    parser.add_argument("--batches", type=int, nargs="+", default=batches)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--output", type=Path)


def publish(title: str, setting: str, body: Callable[[], list[str]], notes: list[str],
            output: Path | None) -> list[str]:  # fmt: skip
    """Print a report's header, build its body (which prints its rows as they come), append the
    notes and write the whole report atomically to ``output`` if given."""
    header = [f"# {title}", "", environment_line() + setting, ""]
    print("\n".join(header), flush=True)
    lines = header + body() + ["", *notes]
    if output is not None:
        write_text_atomic(output, "\n".join(lines) + "\n")
    return lines
