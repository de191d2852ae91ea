"""What every command line of the zoo and the benchmarks shares: the help layout and the way a
bad setting is reported.

- :class:`HelpFormatter` shows the module docstring as written and, after every option's help,
  its default (``(default: ...)``) or that it is required (``(required)``); a help text that
  states its default itself (``(default: none: ...)``) is left as it is.
- Booleans are ``argparse.BooleanOptionalAction`` flags (``--flip`` / ``--no-flip``), so no
  value such as ``--flip ture`` can silently read as False.
- :func:`exit_with_error` ends a command with one line, ``<prog>: error: <message>``, and exit
  status 2 (argparse's own status for a usage error), instead of a traceback: for settings a
  user got wrong (a config typo, a missing file), not for failures of the code.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn

__all__ = ["USER_ERRORS", "HelpFormatter", "exit_with_error", "float_at_least", "int_at_least",
           "one_line"]

#: The exceptions that report a bad setting (config keys and values, paths, files) rather than a
#: failure of the code; :func:`tokenprune_models.common.engine.run` turns them into
#: :func:`exit_with_error`.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written; every option's default shown, or that it is required."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.required:
            return f"{text} (required)"
        if "(default:" in text:  # the help states its default in words
            return text
        return super()._get_help_string(action)


def one_line(error: BaseException | str) -> str:
    """The message of ``error`` on one line (whitespace runs, newlines included, become one
    space; an exception without a message is named by its type)."""
    text = " ".join(str(error).split())
    if isinstance(error, BaseException):
        if isinstance(error, OSError) and error.filename is not None and error.strerror:
            text = f"{error.strerror}: {str(error.filename)!r}"
        if not text:
            text = type(error).__name__
    return text


def exit_with_error(parser: argparse.ArgumentParser, error: BaseException | str) -> NoReturn:
    """Print ``<prog>: error: <message>`` (one line, see :func:`one_line`) to stderr and exit
    with status 2."""
    parser.exit(2, f"{parser.prog}: error: {one_line(error)}\n")


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer ``>= low``; anything else is a usage error such as
    ``argument --steps: must be an integer >= 1, got '0'``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def float_at_least(low: float) -> Callable[[str], float]:
    """An argparse ``type``: a finite number ``>= low``; anything else is a usage error such as
    ``argument --noise: must be a number >= 0, got '-1'``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < low:
            raise argparse.ArgumentTypeError(f"must be a number >= {low:g}, got {text!r}")
        return value

    parse.__name__ = f"number >= {low:g}"
    return parse
