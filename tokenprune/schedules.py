"""Keep-rate schedules for training with token pruning.

A schedule moves keep rates from 1 (no pruning) to their targets over training. It is defined by
a *progress* ``p(t)`` in ``[0, 1]`` at (fractional) epoch ``t``, applied to every target alike::

    rate(t) = 1 - (1 - target) * p(t)

so a vector of per-stage targets stays proportionally spaced while it warms up. This is the
shape of EViT's keep-rate warmup and of the curriculum found in GTPT's history, where a global
factor ``k`` goes from 1 to 0.7 and stage rates are ``1 - (1 - k) / 0.3 * [0, .3, .7, .9]``.

=====================  ======================================================================
schedule               progress ``p(t)``
=====================  ======================================================================
ConstantKeepRate       1 from the start ("direct": the targets at every step)
LinearWarmupKeepRate   0 before ``warmup_epochs``, linear to 1 at ``end_epoch``, then 1
CosineWarmupKeepRate   0 before ``warmup_epochs``, half-cosine to 1 at ``end_epoch``, then 1
=====================  ======================================================================

Schedules resolve per iteration: call them with ``epoch`` and ``iteration`` (within the epoch)
and ``iters_per_epoch``, or with a fractional epoch.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Sequence

from .checks import check_int, check_keep_rate

__all__ = [
    "ConstantKeepRate",
    "CosineWarmupKeepRate",
    "KeepRateSchedule",
    "LinearWarmupKeepRate",
]


class KeepRateSchedule(ABC):
    """Base class: maps training time to keep rates.

    Args:
        target: final keep rate, or a sequence of per-stage rates, each in ``(0, 1]``.

    Raises:
        TypeError: a rate is not a number.
        ValueError: a rate is outside ``(0, 1]`` or the sequence is empty. The warmup
            schedules also raise ``TypeError`` for a ``warmup_epochs`` or ``end_epoch`` that is
            not a number and ``ValueError`` for one that is negative or not finite, or for
            ``end_epoch <= warmup_epochs``.
    """

    def __init__(self, target: float | Sequence[float]) -> None:
        if isinstance(target, Sequence) and not isinstance(target, str):
            if len(target) == 0:
                raise ValueError("target must be a keep rate or a non-empty sequence of them")
            self.target: float | tuple[float, ...] = tuple(
                check_keep_rate(f"target[{i}]", rate) for i, rate in enumerate(target)
            )
        else:
            self.target = check_keep_rate("target", target)

    @abstractmethod
    def progress(self, epoch: float) -> float:
        """Fraction of the way from no pruning (0) to the targets (1) at ``epoch``."""

    def __call__(
        self, epoch: float, iteration: int = 0, iters_per_epoch: int = 1
    ) -> float | tuple[float, ...]:
        """Keep rate(s) at iteration ``iteration`` of epoch ``epoch``.

        Args:
            epoch: epoch index (0-based), or a fractional epoch.
            iteration: iteration within the epoch, in ``[0, iters_per_epoch)``.
            iters_per_epoch: iterations per epoch (per-iteration resolution).

        Returns:
            A float for a scalar target, else a tuple with one rate per target.

        Raises:
            TypeError: ``epoch`` is not a real number, ``iteration`` or ``iters_per_epoch``
                not an int.
            ValueError: ``epoch`` is negative or not finite, ``iters_per_epoch`` below 1,
                ``iteration`` outside ``[0, iters_per_epoch)``.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Real):
            raise TypeError(f"epoch must be a number, got {type(epoch).__name__}")
        try:
            epoch = float(epoch)
        except OverflowError:  # an int beyond the float range
            epoch = math.inf
        if not (math.isfinite(epoch) and epoch >= 0):
            raise ValueError(f"epoch must be a non-negative finite number, got {epoch!r}")
        iters_per_epoch = check_int("iters_per_epoch", iters_per_epoch, low=1)
        iteration = check_int("iteration", iteration, low=0, high=iters_per_epoch - 1)
        p = self.progress(epoch + iteration / iters_per_epoch)
        if isinstance(self.target, tuple):
            return tuple(_interpolate(rate, p) for rate in self.target)
        return _interpolate(self.target, p)


def _finite(value: numbers.Real) -> bool:
    """``math.isfinite``, also for ints beyond the float range (which count as infinite)."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _interpolate(target: float, progress: float) -> float:
    """``1 - (1 - target) * progress``, exact at both ends: budgets are ``int(N * rate)``, so
    ``1 - (1 - 0.3)`` (0.30000000000000004) must not stand in for 0.3."""
    if progress >= 1.0:
        return target
    if progress <= 0.0:
        return 1.0
    return 1.0 - (1.0 - target) * progress


class ConstantKeepRate(KeepRateSchedule):
    """The target rates from the first step (GTPT's released "direct" training)."""

    def progress(self, epoch: float) -> float:
        return 1.0

    def __repr__(self) -> str:
        return f"ConstantKeepRate(target={self.target})"


class _WarmupKeepRate(KeepRateSchedule):
    def __init__(
        self, target: float | Sequence[float], warmup_epochs: float, end_epoch: float
    ) -> None:
        super().__init__(target)
        for name, value in (("warmup_epochs", warmup_epochs), ("end_epoch", end_epoch)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name} must be a number, got {type(value).__name__}")
            if not (_finite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
        self.warmup_epochs = float(warmup_epochs)
        self.end_epoch = float(end_epoch)
        if self.end_epoch <= self.warmup_epochs:
            raise ValueError(
                f"end_epoch ({end_epoch}) must be greater than warmup_epochs ({warmup_epochs})"
            )

    def _ramp(self, epoch: float) -> float:
        """Position in the ramp: 0 before ``warmup_epochs``, 1 from ``end_epoch`` on."""
        span = self.end_epoch - self.warmup_epochs
        return min(max((epoch - self.warmup_epochs) / span, 0.0), 1.0)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(target={self.target}, warmup_epochs={self.warmup_epochs}, "
            f"end_epoch={self.end_epoch})"
        )


class LinearWarmupKeepRate(_WarmupKeepRate):
    """No pruning before ``warmup_epochs``, then linear to the targets at ``end_epoch``.

    GTPT's curriculum is ``LinearWarmupKeepRate([1.0, 0.7, 0.3, 0.1], 10, 100)``.
    """

    def progress(self, epoch: float) -> float:
        return self._ramp(epoch)


class CosineWarmupKeepRate(_WarmupKeepRate):
    """No pruning before ``warmup_epochs``, then a half cosine to the targets at ``end_epoch``.

    EViT's warmup is ``CosineWarmupKeepRate(0.7, 10, 100)`` (PPT-style SPTPose uses the same).
    """

    def progress(self, epoch: float) -> float:
        return 0.5 * (1.0 - math.cos(math.pi * self._ramp(epoch)))
