"""Reading and writing checkpoints safely."""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from .atomic import atomic_path

#: Keys under which training scripts commonly nest the weights.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")


def read_weights_only(path: str | os.PathLike, map_location: str = "cpu") -> object:
    """``torch.load(path, weights_only=True)`` with errors that name the file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a weights-only checkpoint (it needs code to unpickle, is
            truncated or corrupt).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        with warnings.catch_warnings():
            # a pickle not written by torch.save draws this warning before failing below
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise ValueError(
            f"cannot load {str(path)!r} as a weights-only checkpoint (it may be truncated or "
            f"corrupt, or contain objects other than tensors): {error}"
        ) from error


def load_state_dict_file(path: str | os.PathLike, map_location: str = "cpu") -> dict[str, Tensor]:
    """Load a state_dict from a checkpoint file, with ``torch.load(weights_only=True)``.

    Accepts a bare state_dict or a dict wrapping one under ``state_dict``, ``model``,
    ``model_state_dict`` or ``module`` (as training scripts save them), and strips the
    ``module.`` prefix of DataParallel/DistributedDataParallel.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a weights-only checkpoint (it needs code to unpickle, is
            truncated or corrupt) or holds no state_dict.
    """
    return extract_state_dict(read_weights_only(path, map_location), str(path))


def extract_state_dict(obj: object, source: str) -> dict[str, Tensor]:
    for _ in range(3):  # unwrap a few levels of nesting
        if isinstance(obj, Mapping) and not _is_state_dict(obj):
            inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not _is_state_dict(obj):
        raise ValueError(
            f"{source} holds no state_dict (expected a mapping of names to tensors, possibly "
            f"under one of {_WRAPPER_KEYS})"
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    )


def save_atomic(obj: object, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the target folder, then rename it into place, so a
    crash never leaves a truncated file at ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
