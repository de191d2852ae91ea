"""Exponential moving average of a model's weights and buffers."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class ModelEMA:
    """An averaged copy of a model, updated after every optimiser step.

    Every floating-point entry of the ``state_dict`` (parameters *and* buffers such as
    BatchNorm statistics) follows ``ema = m * ema + (1 - m) * value``; integer buffers are
    copied. The momentum rises along a half cosine from ``momentum_start`` at step 0 to
    ``momentum_end`` at ``total_steps``:
    ``m(t) = end - (end - start) * (1 + cos(pi t / T)) / 2``. GTPT uses 0.996 -> 1.0.

    Args:
        model: the model being trained; the EMA starts as a copy of it.
        total_steps: optimiser steps of the whole training.
        momentum_start, momentum_end: momentum at the first and last step.
    """

    def __init__(
        self,
        model: nn.Module,
        total_steps: int,
        momentum_start: float = 0.996,
        momentum_end: float = 1.0,
    ) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if not 0.0 <= momentum_start <= momentum_end <= 1.0:
            raise ValueError(
                "need 0 <= momentum_start <= momentum_end <= 1, got "
                f"{momentum_start} and {momentum_end}"
            )
        model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper: its inner model
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.total_steps = total_steps
        self.momentum_start = momentum_start
        self.momentum_end = momentum_end

    def momentum(self, step: int) -> float:
        """``m(step)``; steps beyond ``total_steps`` use ``momentum_end``."""
        progress = min(max(step, 0), self.total_steps) / self.total_steps
        span = self.momentum_end - self.momentum_start
        return self.momentum_end - span * (1 + math.cos(math.pi * progress)) / 2

    def initial_weight(self, steps: int) -> float:
        """The weight that the average still gives its starting copy after ``steps`` updates
        (steps ``0 .. steps - 1``): ``prod m(s)``. Near 1 the EMA has not moved from where it
        started (a short run whose momentum rises to 1 soon freezes it there); GTPT's
        175k-step recipe takes it to ~0."""
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        log_weight = 0.0
        for step in range(min(steps, self.total_steps + 1)):
            m = self.momentum(step)
            if m == 0.0:
                return 0.0
            log_weight += math.log(m)
        if steps > self.total_steps + 1:
            if self.momentum_end == 0.0:
                return 0.0
            log_weight += (steps - self.total_steps - 1) * math.log(self.momentum_end)
        return math.exp(log_weight)

    def has_moved(self, steps: int, tolerance: float = 0.01) -> bool:
        """Whether after ``steps`` updates the start weighs at most ``tolerance`` in the average:
        only then is the EMA a better set of weights to evaluate than the trained ones."""
        return self.initial_weight(steps) <= tolerance

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold the current weights of ``model`` into the average (call after each step)."""
        m = self.momentum(step)
        model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper: its inner model
        current = model.state_dict()
        averaged_state = self.module.state_dict()
        if current.keys() != averaged_state.keys():
            missing = sorted(set(averaged_state) ^ set(current))[:5]
            raise ValueError(f"model does not match the averaged model (entries {missing})")
        for name, averaged in averaged_state.items():
            value = current[name].detach()
            if value.shape != averaged.shape:
                raise ValueError(
                    f"model entry {name!r} has shape {tuple(value.shape)}, the average "
                    f"{tuple(averaged.shape)}"
                )
            if averaged.is_floating_point():
                averaged.mul_(m).add_(value.to(averaged.dtype), alpha=1 - m)
            else:
                averaged.copy_(value)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.module.load_state_dict(state_dict)
