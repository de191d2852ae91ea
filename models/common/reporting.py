"""Writing result files: atomically, so a crash never leaves a half-written report."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_results(folder: str | os.PathLike, table: str, payload: dict) -> Path:
    """A demo's results: ``results.md`` (the markdown ``table``) and ``results.json``
    (``payload``) in ``folder``; returns the markdown file's path."""
    folder = Path(folder)
    write_text_atomic(folder / "results.json", json.dumps(payload, indent=2))
    return write_text_atomic(folder / "results.md", table + "\n")
