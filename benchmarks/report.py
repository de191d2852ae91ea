"""What every benchmark report starts with, how it is written, and the options every CPU
benchmark shares (``--batches``, ``--threads``, ``--repeats``, ``--quick``, ``--output``)."""

from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Callable
from pathlib import Path

import torch

import tokenprune
from tokenprune_models.common.atomic import write_text_atomic
from tokenprune_models.common.cli import HelpFormatter, int_at_least


def environment_line() -> str:
    """Versions and hardware of this run, for the report header."""
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return (
        f"torch {torch.__version__}, tokenprune {tokenprune.__version__}, Python "
        f"{platform.python_version()}, CPU {platform.machine()} with {os.cpu_count()} cores{gpu}"
    )


def default_threads(fallback: int | None = None) -> int:
    """The CPU threads a benchmark uses unless ``--threads`` says otherwise: the first number of
    ``OMP_NUM_THREADS`` when it is set to a positive integer (or a list of them), else
    ``fallback`` (default: the number of CPU cores)."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return fallback if fallback is not None else os.cpu_count() or 1


def threads_help(before: str) -> str:
    """The ``--threads`` help of a benchmark whose default without ``OMP_NUM_THREADS`` is
    ``before``."""
    return f"torch CPU threads (default: OMP_NUM_THREADS if set, else {before})"


def make_parser(doc: str) -> argparse.ArgumentParser:
    """A benchmark's argument parser: the first paragraph of its docstring ``doc`` as the
    description, every option's default shown
    (:class:`~tokenprune_models.common.cli.HelpFormatter`)."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=HelpFormatter)


def add_timing_arguments(parser: argparse.ArgumentParser, batches: list[int], repeats: int,
                         quick: str = "batch 1, one repeat",
                         threads: int | None = None) -> None:  # fmt: skip
    """The options every CPU benchmark takes: batch sizes, threads, repeats, the quick mode and
    the report file. ``--batches`` and ``--repeats`` default to None, meaning ``batches`` and
    ``repeats``, or batch 1 and one repeat with ``--quick`` (see :func:`resolve_timing`);
    ``quick`` describes the quick mode in the help; ``--threads`` defaults to
    ``OMP_NUM_THREADS``, else ``threads`` (None: the number of CPU cores)."""
    parser.add_argument("--batches", type=int_at_least(1), nargs="+", default=None,
                        help="batch sizes to time (default: "
                        f"{' '.join(map(str, batches))}; 1 with --quick)")  # fmt: skip
    before = "the number of CPU cores" if threads is None else str(threads)
    parser.add_argument("--threads", type=int_at_least(1), default=default_threads(threads),
                        help=threads_help(before))  # fmt: skip
    parser.add_argument("--repeats", type=int_at_least(1), default=None,
                        help=f"timed repeats per measurement (default: {repeats}; 1 with "
                        "--quick)")  # fmt: skip
    parser.add_argument("--quick", action=argparse.BooleanOptionalAction, default=False,
                        help=f"a smoke run of seconds, what the tests run: {quick}")
    parser.add_argument("--output", type=Path, help="also write the markdown report here "
                        "(default: print only)")  # fmt: skip
    parser.set_defaults(_timing_defaults=(list(batches), repeats))


def resolve_timing(args: argparse.Namespace) -> argparse.Namespace:
    """Fill in ``args.batches`` and ``args.repeats`` left unset (see
    :func:`add_timing_arguments`): batch 1 and one repeat with ``--quick``, else the
    benchmark's defaults. Returns ``args``."""
    batches, repeats = args._timing_defaults
    if args.batches is None:
        args.batches = [1] if args.quick else batches
    if args.repeats is None:
        args.repeats = 1 if args.quick else repeats
    return args


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
