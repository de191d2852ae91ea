"""Reading and writing checkpoints safely.

Checkpoints of the training engines carry a digest of their tensors (:func:`with_digest`,
:func:`save_checkpoint`): a SHA-256 per tensor over its name, dtype, shape and bytes, stored
under the ``"digest"`` key. :func:`read_weights_only` verifies it, so a file whose bytes changed
after it was written (flipped bits, a bad copy) is refused with the first damaged entry named
instead of loading silently; files without a digest (older checkpoints, state_dicts of other
tools) load as before.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import shutil
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from .atomic import atomic_path

__all__ = [
    "DIGEST_KEY", "check_optimizer_state", "check_state_dict", "check_weights",
    "checkpoint_weights", "describe_mismatch", "evaluation_weights", "extract_state_dict",
    "is_training_checkpoint", "load_state_dict_file", "read_weights_only", "save_atomic",
    "save_checkpoint", "source_label", "tensor_digests", "verify_digest", "weights_for_model",
    "with_digest",
]  # fmt: skip

#: Keys under which training scripts commonly nest the weights.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")
#: The key of a checkpoint dict holding the digest of its tensors (see :func:`with_digest`).
DIGEST_KEY = "digest"
_DIGEST_ALGORITHM = "sha256"


def read_weights_only(path: str | os.PathLike, map_location: str = "cpu") -> object:
    """``torch.load(path, weights_only=True)`` with errors that name the file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a weights-only checkpoint (it needs code to unpickle, is
            truncated or corrupt), or its tensors do not match the digest stored with them
            (see :func:`verify_digest`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        with warnings.catch_warnings():
            # a pickle not written by torch.save draws this warning before failing below
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise ValueError(
            f"cannot load {str(path)!r} as a weights-only checkpoint (it may be truncated or "
            f"corrupt, or contain objects other than tensors): {error}"
        ) from error
    verify_digest(obj, repr(str(path)))
    return obj


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
    """The state_dict in ``obj`` (a bare one or one nested under a wrapper key, see
    :func:`load_state_dict_file`), ``module.`` prefixes stripped; ``source`` names ``obj`` in
    errors (e.g. the file).

    Raises:
        ValueError: no state_dict, or one with a key that is not a string.
    """
    for _ in range(3):  # unwrap a few levels of nesting
        if isinstance(obj, Mapping) and not _is_state_dict(obj):
            inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj), None)
            if inner is None:
                break
            obj = inner
    if isinstance(obj, Mapping) and obj and all(isinstance(v, Tensor) for v in obj.values()):
        key = next(k for k in obj if not isinstance(k, str)) if not _is_state_dict(obj) else None
        if key is not None:
            raise ValueError(
                f"{source} holds a state_dict with a key that is not a string: {key!r} "
                f"({type(key).__name__}); names of tensors must be strings"
            )
    if not isinstance(obj, Mapping) or not _is_state_dict(obj):
        raise ValueError(
            f"{source} holds no state_dict (expected a mapping of names to tensors, possibly "
            f"under one of {_WRAPPER_KEYS})"
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}


def is_training_checkpoint(obj: object) -> bool:
    """Whether ``obj`` (a loaded checkpoint) was written by the training engine's ``Trainer``: a
    dict with the ``model`` weights and the run's ``position``."""
    return isinstance(obj, dict) and "model" in obj and "position" in obj


def evaluation_weights(state: dict) -> dict[str, Tensor]:
    """The weights of a training checkpoint that its evaluation used (see
    :meth:`~tokenprune_models.common.engine.Trainer.eval_model`): ``ema`` or ``model``.
    Checkpoints written before the choice was recorded evaluate their EMA when they have one.

    Raises:
        ValueError: the chosen weights are absent.
    """
    choice = _evaluation_choice(state)
    if choice not in ("ema", "model") or state.get(choice) is None:
        raise ValueError(f"checkpoint has no {choice!r} weights to evaluate")
    return state[choice]


def _evaluation_choice(state: dict) -> object:
    return state.get("eval_weights", "ema" if state.get("ema") is not None else "model")


def checkpoint_weights(obj: object, source: str) -> dict[str, Tensor]:
    """The model weights a loaded checkpoint holds: of a training checkpoint the weights its
    evaluation used (:func:`evaluation_weights`), else the state_dict in it (bare or wrapped,
    see :func:`extract_state_dict`). ``source`` names ``obj`` in errors (e.g. the file).

    Raises:
        ValueError: no weights, or entries that are not named tensors.
    """
    if is_training_checkpoint(obj):
        weights = evaluation_weights(obj)
        check_weights(weights, f"{source} entry {_evaluation_choice(obj)!r}")
        return weights
    return extract_state_dict(obj, source)


def source_label(source: str | os.PathLike | None) -> str:
    """How errors name a checkpoint: its file quoted (``"'runs/a/last.pt'"``), or ``"the
    checkpoint"`` when it came from no file."""
    return "the checkpoint" if source is None else repr(str(source))


def weights_for_model(
    checkpoint: object, model: torch.nn.Module, source: str | os.PathLike | None = None
) -> dict[str, Tensor]:
    """The weights in ``checkpoint`` (a loaded training checkpoint or state_dict, see
    :func:`checkpoint_weights`), checked against ``model`` (:func:`check_state_dict`): the
    part of every family's checkpoint filter that reads this project's own checkpoints.
    ``source``, the file it was read from, is named in errors.

    Raises:
        ValueError: no weights, or missing, unexpected or mis-shaped entries (listed).
    """
    where = source_label(source)
    weights = checkpoint_weights(checkpoint, where)
    check_state_dict(weights, model.state_dict(), where)
    return weights


def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    )


def save_atomic(obj: object, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the target folder, then rename it into place, so a
    crash never leaves a truncated file at ``path``.

    Raises:
        OSError: the file could not be written (e.g. the disk is full), naming ``path`` and the
            reason; the file previously at ``path``, if any, is left as it was and the
            temporary file is removed.
    """
    path = Path(path)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise OSError(error.errno, f"cannot write {str(path)!r}: {reason}"
                      f"{_kept_note(path)}") from error  # fmt: skip
    except RuntimeError as error:
        # torch.save reports a failed write as "[enforce fail at inline_container.cc] ...
        # PytorchStreamWriter failed writing file" or "unexpected pos", without the cause
        if not _is_write_failure(error):
            raise
        free = _free_bytes(path.parent)
        if free is not None and free < _LOW_SPACE:
            code, reason = errno.ENOSPC, f"the disk is full ({free} bytes free)"
        else:
            code = errno.EIO
            reason = "the write failed (disk full, quota exceeded or an I/O error)"
            if free is not None:
                reason += f"; {free} bytes free now"
        raise OSError(code, f"cannot write {str(path)!r}: {reason} (torch.save: "
                      f"{_first_line(error)}){_kept_note(path)}") from error  # fmt: skip


#: Free space below which a failed write is reported as a full disk.
_LOW_SPACE = 64 * 2**20


def _is_write_failure(error: RuntimeError) -> bool:
    text = str(error)
    return any(sign in text for sign in ("inline_container", "PytorchStreamWriter",
                                         "unexpected pos", "write failed"))  # fmt: skip


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _kept_note(path: Path) -> str:
    return "; the previous file there is unchanged" if path.exists() else ""


def save_checkpoint(state: Mapping, path: str | os.PathLike) -> None:
    """:func:`save_atomic` of ``state`` with the digest of its tensors (:func:`with_digest`),
    which :func:`read_weights_only` verifies on load."""
    save_atomic(with_digest(state), path)


# -- digests -------------------------------------------------------------------------------


def _key_label(key: object) -> str:
    return key if isinstance(key, str) else f"[{key!r}]"


def _tensors(obj: object, prefix: str) -> Iterator[tuple[str, Tensor]]:
    """``(name, tensor)`` for every tensor nested in ``obj``, in a fixed order: dict entries
    sorted by key, sequences by index; names join the keys with ``/``."""
    if isinstance(obj, Tensor):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        items = [(_key_label(k), v) for k, v in obj.items()
                 if not (prefix == "" and k == DIGEST_KEY)]  # fmt: skip
        for label, value in sorted(items, key=lambda item: item[0]):
            yield from _tensors(value, f"{prefix}/{label}" if prefix else label)
    elif isinstance(obj, Sequence) and not isinstance(obj, str | bytes):
        for index, value in enumerate(obj):
            yield from _tensors(value, f"{prefix}/[{index}]" if prefix else f"[{index}]")


def _tensor_sha256(name: str, tensor: Tensor) -> str:
    tensor = tensor.detach()
    if tensor.layout != torch.strided:
        tensor = tensor.to_dense()
    tensor = tensor.resolve_conj().resolve_neg().cpu().contiguous()
    digest = hashlib.sha256()
    digest.update(f"{name}\0{tensor.dtype}\0{list(tensor.shape)}\0".encode())
    digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def tensor_digests(obj: object) -> dict[str, str]:
    """SHA-256 of every tensor nested in ``obj`` (over its name, dtype, shape and bytes),
    keyed by its name (e.g. ``"model/blocks.0.attn.qkv.weight"``,
    ``"optimizer/state/[0]/exp_avg"``); the top-level ``"digest"`` entry is left out."""
    digests: dict[str, str] = {}
    for name, tensor in _tensors(obj, ""):
        if name in digests:
            raise ValueError(f"two tensors would share the digest name {name!r}")
        digests[name] = _tensor_sha256(name, tensor)
    return digests


def with_digest(state: Mapping) -> dict:
    """``state`` (a checkpoint dict) with the digest of its tensors under ``"digest"``."""
    if not isinstance(state, Mapping):
        raise TypeError(f"a checkpoint must be a dict, got {type(state).__name__}")
    out = {k: v for k, v in state.items() if k != DIGEST_KEY}
    out[DIGEST_KEY] = {"algorithm": _DIGEST_ALGORITHM, "tensors": tensor_digests(out)}
    return out


def verify_digest(obj: object, source: str) -> None:
    """Check the tensors of a checkpoint against the digest stored in it; a checkpoint without
    one (written before digests, or by another tool) passes unchecked.

    Raises:
        ValueError: a tensor differs from the digest (or is missing, or was added), naming
            ``source`` and the first such entry.
    """
    if not isinstance(obj, Mapping):
        return
    stored = obj.get(DIGEST_KEY)
    if not (isinstance(stored, Mapping) and stored.get("algorithm") == _DIGEST_ALGORITHM
            and isinstance(stored.get("tensors"), Mapping)):  # fmt: skip
        return  # no digest of ours
    expected = stored["tensors"]
    actual = tensor_digests(obj)
    bad = [name for name in expected if actual.get(name) != expected[name]]
    bad += [name for name in actual if name not in expected]
    if bad:
        first = bad[0]
        what = ("is missing" if first not in actual else
                "was not in the checkpoint when it was written" if first not in expected else
                "does not match the digest stored when it was written")  # fmt: skip
        raise ValueError(
            f"checkpoint {source} is damaged: entry {first!r} {what} ({len(bad)} of "
            f"{len(expected)} tensors differ); the file changed after it was written "
            "(flipped bits, a bad copy): use another copy or an earlier checkpoint (a file "
            f"edited on purpose needs its {DIGEST_KEY!r} entry renewed with with_digest)"
        )


# -- checks before loading -----------------------------------------------------------------


def check_weights(state_dict: object, where: str) -> None:
    """Check that ``state_dict`` maps string names to tensors; ``where`` names it in errors.

    Raises:
        ValueError: not a mapping, a key that is not a string or a value that is not a tensor.
    """
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"{where} must be a state_dict (names to tensors), got "
                         f"{type(state_dict).__name__}")  # fmt: skip
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise ValueError(f"{where} has a key that is not a string: {name!r} "
                             f"({type(name).__name__})")  # fmt: skip
        if not isinstance(value, Tensor):
            raise ValueError(f"{where}: {name!r} is not a tensor but a {type(value).__name__}")


def check_state_dict(state_dict: object, expected: Mapping[str, Tensor], where: str) -> None:
    """Check that ``state_dict`` has exactly the names and shapes of ``expected`` (e.g.
    ``model.state_dict()``) before ``load_state_dict``; ``where`` names it in errors (e.g.
    ``"'runs/last.pt' entry 'model'"``).

    Raises:
        ValueError: not a mapping of string names to tensors, or missing, unexpected or
            mis-shaped entries (listed).
    """
    check_weights(state_dict, where)
    missing = [name for name in expected if name not in state_dict]
    unexpected = [name for name in state_dict if name not in expected]
    shapes = [
        f"{name!r} {list(state_dict[name].shape)} (expected {list(expected[name].shape)})"
        for name in expected
        if name in state_dict and state_dict[name].shape != expected[name].shape
    ]
    problems = describe_mismatch(missing, unexpected, shapes)
    if problems:
        raise ValueError(f"{where} does not fit the model: {problems}")


def describe_mismatch(
    missing: Sequence[str], unexpected: Sequence[str], shapes: Sequence[str],
    unexpected_label: str = "unexpected", limit: int = 10,
) -> str:  # fmt: skip
    """``"2 missing: 'a', 'b'; 1 unexpected: 'c'; ..."`` (empty when all lists are); ``shapes``
    holds ready-made descriptions of mis-shaped entries."""
    groups = (("missing", missing), (unexpected_label, unexpected), ("of the wrong shape", shapes))
    parts = []
    for label, items in groups:
        if items:
            more = f" and {len(items) - limit} more" if len(items) > limit else ""
            shown = ", ".join(repr(item) if label != "of the wrong shape" else item
                              for item in items[:limit])  # fmt: skip
            parts.append(f"{len(items)} {label}: {shown}{more}")
    return "; ".join(parts)


def check_optimizer_state(
    state: object, optimizer: torch.optim.Optimizer, names: Mapping[int, str], where: str
) -> None:
    """Check a saved ``optimizer.state_dict()`` against ``optimizer`` before loading it: the
    same parameter groups and sizes, and per-parameter state tensors (moments) of the
    parameters' shapes. ``names`` maps ``id(parameter)`` to its name for the errors.

    Raises:
        ValueError: naming ``where`` and the first entry that does not fit.
    """
    if not isinstance(state, Mapping) or not isinstance(state.get("state"), Mapping) or \
            not isinstance(state.get("param_groups"), Sequence):  # fmt: skip
        raise ValueError(f"{where} is not an optimizer state (needs 'state' and "
                         "'param_groups')")  # fmt: skip
    groups = optimizer.param_groups
    saved_groups = state["param_groups"]
    if len(saved_groups) != len(groups):
        raise ValueError(f"{where} has {len(saved_groups)} parameter groups, the optimizer "
                         f"{len(groups)}")  # fmt: skip
    params = {}
    for index, (saved, group) in enumerate(zip(saved_groups, groups, strict=True)):
        ids = saved.get("params") if isinstance(saved, Mapping) else None
        if not isinstance(ids, Sequence) or len(ids) != len(group["params"]):
            count = len(ids) if isinstance(ids, Sequence) else "no"
            raise ValueError(f"{where}: param_groups[{index}] has {count} parameters, the "
                             f"optimizer's {len(group['params'])}")  # fmt: skip
        params.update(zip(ids, group["params"], strict=True))
    for key, entries in state["state"].items():
        if key not in params:
            raise ValueError(f"{where}: state of parameter {key!r}, which no group holds")
        param = params[key]
        name = names.get(id(param), f"parameter {key}")
        if not isinstance(entries, Mapping):
            raise ValueError(f"{where}: state of {name!r} is not a dict")
        for field, value in entries.items():
            if isinstance(value, Tensor) and value.dim() > 0 and value.shape != param.shape:
                raise ValueError(
                    f"{where}: state {field!r} of {name!r} has shape {list(value.shape)}, the "
                    f"parameter {list(param.shape)}"
                )
