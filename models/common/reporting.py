"""Writing result files: atomically, so a crash never leaves a half-written report."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .atomic import write_text_atomic


def write_results(folder: str | os.PathLike, table: str, payload: dict) -> Path:
    """A demo's results: ``results.md`` (the markdown ``table``) and ``results.json``
    (``payload``) in ``folder``; returns the markdown file's path."""
    folder = Path(folder)
    write_text_atomic(folder / "results.json", json.dumps(payload, indent=2))
    return write_text_atomic(folder / "results.md", table + "\n")
