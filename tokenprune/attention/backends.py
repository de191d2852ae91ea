"""Registry of group-attention backends.

A backend is an implementation of the group-attention core (after the qkv projection) with the
signature of :func:`tokenprune.attention.reference.group_attention_torch`. Backends are
registered with a lazy loader, so importing :mod:`tokenprune` never imports an optional
dependency such as Triton; the loader runs on first use.

``"auto"`` picks, in priority order, the first backend whose ``supports`` check accepts the
call. The ``"torch"`` reference accepts every call and comes last, so ``"auto"`` always
resolves. Asking for a backend by name that cannot run a call raises a ``ValueError`` with the
reason instead of silently falling back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from .reference import group_attention_torch

__all__ = [
    "AttentionBackend",
    "GroupAttentionImpl",
    "available_backends",
    "register_backend",
    "resolve_backend",
]

GroupAttentionImpl = Callable[
    [Tensor, Tensor, Tensor, int, Tensor | None, float, float, int],
    tuple[Tensor, Tensor | None, Tensor | None],
]
#: ``supports(q, key_mask, dropout_p, score_queries)`` returns None if the backend can run the
#: call, else a short reason.
SupportCheck = Callable[[Tensor, Tensor | None, float, int], str | None]


@dataclass(frozen=True)
class AttentionBackend:
    """A registered group-attention implementation."""

    name: str
    load: Callable[[], GroupAttentionImpl]
    supports: SupportCheck
    priority: int


_REGISTRY: dict[str, AttentionBackend] = {}


def register_backend(
    name: str,
    load: Callable[[], GroupAttentionImpl],
    supports: SupportCheck,
    *,
    priority: int,
) -> None:
    """Register a backend under ``name``; higher ``priority`` is tried first by ``"auto"``."""
    if name == "auto":
        raise ValueError("'auto' is reserved for automatic backend selection")
    _REGISTRY[name] = AttentionBackend(name, load, supports, priority)


def available_backends() -> tuple[str, ...]:
    """Names accepted by ``backend=``: ``"auto"`` and every registered backend."""
    return ("auto", *sorted(_REGISTRY))


def check_backend_name(name: object) -> str:
    """Require a known backend name."""
    if not isinstance(name, str):
        raise TypeError(f"backend must be a str, got {type(name).__name__}")
    if name != "auto" and name not in _REGISTRY:
        raise ValueError(f"backend must be one of {available_backends()}, got {name!r}")
    return name


def resolve_backend(
    name: str, q: Tensor, key_mask: Tensor | None, dropout_p: float, score_queries: int
) -> GroupAttentionImpl:
    """The implementation that runs this call under backend ``name``."""
    check_backend_name(name)
    if name != "auto":
        backend = _REGISTRY[name]
        reason = backend.supports(q, key_mask, dropout_p, score_queries)
        if reason is not None:
            raise ValueError(f"backend {name!r} cannot run this call: {reason}")
        return backend.load()
    for backend in sorted(_REGISTRY.values(), key=lambda b: -b.priority):
        if backend.supports(q, key_mask, dropout_p, score_queries) is None:
            return backend.load()
    raise RuntimeError("no registered group-attention backend accepts this call")


register_backend(
    "torch",
    load=lambda: group_attention_torch,
    supports=lambda q, key_mask, dropout_p, score_queries: None,
    priority=0,
)
