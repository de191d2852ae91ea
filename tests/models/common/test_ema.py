"""Model EMA: the update rule and the momentum schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tokenprune_models.common.ema import ModelEMA


def test_momentum_follows_a_half_cosine():
    ema = ModelEMA(nn.Linear(2, 2), total_steps=100, momentum_start=0.996, momentum_end=1.0)
    assert ema.momentum(0) == pytest.approx(0.996)
    assert ema.momentum(50) == pytest.approx(0.998)
    assert ema.momentum(100) == pytest.approx(1.0)
    assert ema.momentum(25) == pytest.approx(1 - 0.002 * (1 + math.cos(math.pi / 4)))


def test_update_averages_parameters_and_buffers_and_copies_counters():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    ema = ModelEMA(model, total_steps=10)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()(torch.randn(8, 3))  # moves BatchNorm statistics and its batch counter
    m = ema.momentum(3)
    ema.update(model, step=3)
    current = model.state_dict()
    for name, value in ema.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, m * before[name] + (1 - m) * current[name])
        else:
            assert torch.equal(value, current[name])
    assert not ema.module.training
    assert all(not p.requires_grad for p in ema.module.parameters())


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="total_steps"):
        ModelEMA(nn.Linear(1, 1), total_steps=0)
    with pytest.raises(ValueError, match="momentum_start"):
        ModelEMA(nn.Linear(1, 1), total_steps=5, momentum_start=0.9, momentum_end=0.5)


def test_update_checks_the_model():
    ema = ModelEMA(nn.Linear(3, 3), total_steps=10)
    with pytest.raises(ValueError, match="does not match"):
        ema.update(nn.Linear(3, 3, bias=False), step=1)
    with pytest.raises(ValueError, match="has shape"):
        ema.update(nn.Linear(3, 4), step=1)
