"""Registry of attention backends.

A backend implements one attention op (``"group_attention"`` or ``"gathered_attention"``) with
the signature of that op's PyTorch reference in :mod:`tokenprune.attention.reference`. Backends
are registered with a lazy loader, so importing :mod:`tokenprune` never imports an optional
dependency such as Triton; the loader runs on first use.

``"auto"`` picks, in priority order, the first backend that is automatic on the input's device
type and whose ``supports`` check (and ``auto_supports`` check, if any) accepts the call. The
``"torch"`` reference accepts every call on every device and comes last, so ``"auto"`` always
resolves. Asking for a backend by name that
cannot run a call raises a ``ValueError`` with the reason instead of silently falling back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

__all__ = [
    "AttentionBackend",
    "available_backends",
    "check_backend_name",
    "load_backend",
    "register_backend",
    "resolve_backend",
]

OPS = ("group_attention", "gathered_attention")

#: ``supports(q, dropout_p)`` returns None if the backend can run the call, else a short reason.
SupportCheck = Callable[[Tensor, float], str | None]


@dataclass(frozen=True)
class AttentionBackend:
    """A registered implementation of one attention op."""

    op: str
    name: str
    load: Callable[[], Callable]
    supports: SupportCheck
    priority: int
    auto_devices: tuple[str, ...] | None  # device types "auto" may pick it for; None = all
    #: an extra check that only ``"auto"`` applies (a call the backend can run, but that another
    #: backend runs better); None = none
    auto_supports: SupportCheck | None = None


_REGISTRY: dict[tuple[str, str], AttentionBackend] = {}
_LOADED: dict[tuple[str, str], Callable] = {}


def register_backend(
    op: str,
    name: str,
    load: Callable[[], Callable],
    supports: SupportCheck,
    *,
    priority: int,
    auto_devices: tuple[str, ...] | None = None,
    auto_supports: SupportCheck | None = None,
) -> None:
    """Register backend ``name`` for ``op``.

    Args:
        op: ``"group_attention"`` or ``"gathered_attention"``.
        name: the name callers pass as ``backend=``; ``"auto"`` is reserved.
        load: returns the implementation (called on first use).
        supports: ``supports(q, dropout_p) -> None | reason``.
        priority: higher is tried first by ``"auto"``.
        auto_devices: device types on which ``"auto"`` may choose this backend (None: all).
        auto_supports: ``auto_supports(q, dropout_p) -> None | reason``, checked by ``"auto"``
            only, after ``supports``: calls the backend can run when asked by name, but that
            ``"auto"`` leaves to a lower-priority backend (None: no extra check).

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: ``op`` is unknown, ``name`` is empty or ``"auto"``.
    """
    op = _check_op(op)
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if not name:
        raise ValueError("name must be a non-empty str")
    if name == "auto":
        raise ValueError("'auto' is reserved for automatic backend selection")
    if not callable(load):
        raise TypeError(f"load must be callable, got {type(load).__name__}")
    if not callable(supports):
        raise TypeError(f"supports must be callable, got {type(supports).__name__}")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority must be an int, got {type(priority).__name__}")
    if auto_devices is not None and (
        not isinstance(auto_devices, tuple)
        or not all(isinstance(device, str) for device in auto_devices)
    ):
        raise TypeError(
            f"auto_devices must be None or a tuple of device-type strs, got {auto_devices!r}"
        )
    if auto_supports is not None and not callable(auto_supports):
        raise TypeError(
            f"auto_supports must be None or callable, got {type(auto_supports).__name__}"
        )
    _REGISTRY[(op, name)] = AttentionBackend(
        op, name, load, supports, priority, auto_devices, auto_supports
    )
    _LOADED.pop((op, name), None)


def load_backend(op: str, name: str) -> Callable:
    """The implementation of backend ``name`` for ``op``, importing it on first use.

    Modules call this at construction for an explicitly named backend, so that the import never
    happens inside ``torch.compile``'s tracing.
    """
    key = (op, name)
    impl = _LOADED.get(key)
    if impl is None:
        impl = _REGISTRY[key].load()
        _LOADED[key] = impl
    return impl


def _check_op(op: object) -> str:
    if not isinstance(op, str):
        raise TypeError(f"op must be a str, one of {OPS}, got {type(op).__name__}")
    if op not in OPS:
        raise ValueError(f"op must be one of {OPS}, got {op!r}")
    return op


def available_backends(op: str = "group_attention") -> tuple[str, ...]:
    """Names accepted by ``backend=`` for ``op``: ``"auto"`` and every registered backend.

    Args:
        op: ``"group_attention"`` or ``"gathered_attention"``.

    Raises:
        TypeError: ``op`` is not a str.
        ValueError: ``op`` is not one of the ops (a device name such as ``"cuda"`` is not one).
    """
    op = _check_op(op)
    return ("auto", *sorted(name for o, name in _REGISTRY if o == op))


def check_backend_name(name: object, op: str = "group_attention") -> str:
    """Require a known backend name for ``op``."""
    op = _check_op(op)
    if not isinstance(name, str):
        raise TypeError(f"backend must be a str, got {type(name).__name__}")
    if name != "auto" and (op, name) not in _REGISTRY:
        raise ValueError(f"backend must be one of {available_backends(op)}, got {name!r}")
    return name


def resolve_backend(op: str, name: str, q: Tensor, dropout_p: float = 0.0) -> Callable:
    """The implementation of ``op`` that runs this call under backend ``name``."""
    backend = _REGISTRY.get((op, name)) if type(name) is str else None
    if backend is None:  # "auto", or a name to check (the common case skips the checks)
        check_backend_name(name, op)
    if name != "auto":
        reason = backend.supports(q, dropout_p)
        if reason is not None:
            raise ValueError(f"backend {name!r} cannot run this call: {reason}")
        return load_backend(op, name)
    candidates = sorted((b for b in _REGISTRY.values() if b.op == op), key=lambda b: -b.priority)
    for backend in candidates:
        if backend.auto_devices is not None and q.device.type not in backend.auto_devices:
            continue
        if backend.supports(q, dropout_p) is not None:
            continue
        if backend.auto_supports is None or backend.auto_supports(q, dropout_p) is None:
            return load_backend(op, backend.name)
    raise RuntimeError(f"no registered {op} backend accepts this call")
