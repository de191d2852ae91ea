"""Argument checks: those of the library itself, public for code built on it (the model zoo
uses them).

Every check raises ``TypeError`` (wrong kind of object) or ``ValueError`` (right kind, wrong
value) with a message that names the argument and says what was expected, and returns the
checked value where that is useful::

    from tokenprune.checks import check_floating, check_keep_rate

    x = check_floating("x", x, ndim=(3, 4))          # a floating-point tensor of rank 3 or 4
    rate = check_keep_rate("keep_rate", rate)         # a float in (0, 1]

Checks that read tensor *values* (:func:`check_finite`, :func:`check_values`) are skipped while
tracing or compiling, where they would break the graph (:func:`value_checks_enabled`); on an
accelerator they are asynchronous device assertions. Shape, dtype and device checks always run.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = [
    "check_bool",
    "check_bool_mask",
    "check_finite",
    "check_float",
    "check_floating",
    "check_index",
    "check_int",
    "check_keep_rate",
    "check_matches_parameters",
    "check_number",
    "check_same_device",
    "check_same_dtype",
    "check_tensor",
    "check_tensor_sequence",
    "check_values",
    "static_shape",
    "value_checks_enabled",
]


def value_checks_enabled() -> bool:
    """Whether data-dependent checks may run (not while tracing, exporting or compiling)."""
    return not (torch.jit.is_tracing() or torch.compiler.is_compiling())


def check_values(ok: Tensor, message: str | Callable[[], str]) -> None:
    """Raise ``ValueError(message)`` unless the bool scalar tensor ``ok`` is True.

    On the CPU the check is immediate. On an accelerator reading ``ok`` would stall the host
    until the device catches up (and break CUDA-graph capture), so the check is queued with
    ``torch._assert_async`` instead: a violation then surfaces as a device-side assertion at
    the next synchronisation rather than as a ``ValueError``. Skipped while tracing/compiling.

    Args:
        ok: bool scalar tensor.
        message: the error message, or a callable building it (only called on failure, on
            the CPU, so it may read tensor values).
    """
    if not value_checks_enabled():
        return
    if ok.device.type == "cpu":
        if not bool(ok):
            raise ValueError(message() if callable(message) else message)
    else:
        text = "tokenprune value check failed" if callable(message) else message
        torch._assert_async(ok, text)


def static_shape(tensor: Tensor) -> tuple[int, ...]:
    """``tensor.shape`` as Python ints, also while ``torch.jit.trace`` records sizes as tensors.

    Token budgets are Python integers (they decide tensor shapes), so traced sizes are frozen
    into constants here, which is what a trace of a fixed-shape model does anyway.
    """
    if not torch.jit.is_tracing():
        return tuple(tensor.shape)
    return tuple(int(size) if isinstance(size, Tensor) else size for size in tensor.shape)


def check_tensor(name: str, value: object, *, ndim: int | Sequence[int] | None = None) -> Tensor:
    """Require a tensor, optionally of a given rank (or one of several ranks)."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.ndim not in allowed:
            expected = " or ".join(str(n) for n in allowed)
            raise ValueError(
                f"{name} must have {expected} dimensions, got shape {tuple(value.shape)}"
            )
    return value


def check_floating(name: str, value: object, *, ndim: int | Sequence[int] | None = None) -> Tensor:
    """Require a floating-point tensor."""
    tensor = check_tensor(name, value, ndim=ndim)
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")
    return tensor


def check_bool(name: str, value: object) -> bool:
    """Require a Python bool (a truthy string such as ``"no"`` would otherwise switch on)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def check_finite(name: str, tensor: Tensor) -> None:
    """Require every entry of ``tensor`` to be finite (value check, see :func:`check_values`)."""
    if tensor.numel() == 0 or not tensor.is_floating_point():
        return
    check_values(torch.isfinite(tensor).all(), f"{name} must be finite (no NaN or inf)")


_AUTOCAST_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def check_matches_parameters(name: str, value: Tensor, parameter: Tensor) -> None:
    """Require ``value`` to have the dtype and device of a module's ``parameter``.

    Inside an autocast region of the value's device type, the half, bfloat16 and float32
    dtypes mix (autocast casts them per op); float64 still has to match.
    """
    dtype_ok = value.dtype == parameter.dtype or (
        value.dtype in _AUTOCAST_DTYPES
        and parameter.dtype in _AUTOCAST_DTYPES
        and torch.is_autocast_enabled(value.device.type)
    )
    if not dtype_ok or value.device != parameter.device:
        raise ValueError(
            f"{name} ({value.dtype} on {value.device}) must match the module's parameters "
            f"({parameter.dtype} on {parameter.device})"
        )


def check_tensor_sequence(name: str, value: object, *, what: str = "tensor") -> list[Tensor]:
    """Require a non-empty list or tuple of tensors (a single tensor is refused: iterating it
    would silently split it along its first axis)."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(
            f"{name} must be a list or tuple of tensors (one per {what}), got "
            f"{type(value).__name__}"
        )
    if not value:
        raise ValueError(f"{name} must hold at least one tensor (one per {what}), got none")
    for index, item in enumerate(value):
        check_tensor(f"{name}[{index}]", item)
    return list(value)


def check_bool_mask(name: str, value: object, shape: Sequence[int]) -> Tensor:
    """Require a bool tensor of exactly ``shape``."""
    tensor = check_tensor(name, value)
    if tensor.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor (True = real token), got {tensor.dtype}")
    if tuple(tensor.shape) != tuple(shape):
        raise ValueError(
            f"{name} must have shape {tuple(shape)}, got {tuple(tensor.shape)}"
        )
    return tensor


def check_index(name: str, value: object) -> Tensor:
    """Require an integer index tensor (int64 or int32)."""
    tensor = check_tensor(name, value)
    if tensor.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be an int64 or int32 index tensor, got {tensor.dtype}")
    return tensor


def check_int(name: str, value: object, *, low: int | None = None, high: int | None = None) -> int:
    """Require a Python int (bools rejected) within ``[low, high]``; returns it.

    While ``torch.jit.trace`` runs, sizes read from tensors are 0-d integer tensors; those are
    accepted and returned as ints.
    """
    if type(value) is int:  # the common case, without the ABC checks below
        if (low is not None and value < low) or (high is not None and value > high):
            bound = f">= {low}" if low is not None and value < low else f"<= {high}"
            raise ValueError(f"{name} must be {bound}, got {value}")
        return value
    if (
        isinstance(value, Tensor)
        and torch.jit.is_tracing()
        and value.ndim == 0
        and not value.is_floating_point()
    ):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def check_float(
    name: str, value: object, *, low: float, high: float, high_open: bool = False
) -> float:
    """Require a finite real number in ``[low, high]`` (``[low, high)`` if ``high_open``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond the float range
        value = math.inf if value > 0 else -math.inf
    above = value >= high if high_open else value > high
    if not math.isfinite(value) or value < low or above:
        interval = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return value


def check_number(name: str, value: object, *, low: float | None = None) -> float:
    """Require a finite real number (bools rejected), at least ``low`` if given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and number < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return number


def check_keep_rate(name: str, value: object) -> float:
    """Require a keep rate in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float in (0, 1], got {type(value).__name__}")
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise ValueError(f"{name} must be in (0, 1], got {value}")
    return float(value)


def check_same_device(**tensors: Tensor | None) -> None:
    """Require all given (non-None) tensors to live on one device."""
    device = None
    for name, t in tensors.items():
        if t is None:
            continue
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if device is None:
            device = t.device
        elif t.device != device:
            present = {name: t for name, t in tensors.items() if t is not None}
            listing = ", ".join(f"{name} on {t.device}" for name, t in present.items())
            raise ValueError(f"tensors must be on the same device, got {listing}")


def check_same_dtype(**tensors: Tensor) -> None:
    """Require all given tensors to share one dtype."""
    dtypes = {t.dtype for t in tensors.values()}
    if len(dtypes) > 1:
        listing = ", ".join(f"{name} is {t.dtype}" for name, t in tensors.items())
        raise ValueError(f"tensors must share one dtype, got {listing}")
