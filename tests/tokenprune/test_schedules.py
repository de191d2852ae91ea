"""Keep-rate schedules."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenprune import ConstantKeepRate, CosineWarmupKeepRate, LinearWarmupKeepRate


def test_constant_is_the_target_from_the_first_step():
    schedule = ConstantKeepRate([1.0, 0.7, 0.3, 0.1])
    assert schedule(0) == (1.0, 0.7, 0.3, 0.1)
    assert schedule(250, iteration=3, iters_per_epoch=10) == (1.0, 0.7, 0.3, 0.1)
    assert ConstantKeepRate(0.7)(0) == 0.7


def test_linear_warmup_by_hand():
    schedule = LinearWarmupKeepRate(0.7, warmup_epochs=10, end_epoch=100)
    assert schedule(0) == 1.0
    assert schedule(10) == 1.0
    assert schedule(55) == pytest.approx(0.85)
    assert schedule(100) == pytest.approx(0.7)
    assert schedule(300) == pytest.approx(0.7)
    # per-iteration resolution: halfway through epoch 54 is epoch 54.5
    assert schedule(54, iteration=50, iters_per_epoch=100) == pytest.approx(1 - 0.3 * 44.5 / 90)


def test_gtpt_curriculum_vector():
    # GTPT history: a global factor k from 1 to 0.7 over epochs 10-100, stage rates
    # 1 - (1 - k) / 0.3 * [0, 0.3, 0.7, 0.9]
    schedule = LinearWarmupKeepRate([1.0, 0.7, 0.3, 0.1], warmup_epochs=10, end_epoch=100)
    for epoch in (0, 10, 25, 40, 77, 100, 150):
        k = 1.0 - 0.3 * min(max((epoch - 10) / 90, 0.0), 1.0)
        expected = [1 - (1 - k) / 0.3 * s for s in (0.0, 0.3, 0.7, 0.9)]
        assert schedule(epoch) == pytest.approx(expected)


def test_cosine_warmup_by_hand():
    schedule = CosineWarmupKeepRate(0.5, warmup_epochs=10, end_epoch=30)
    assert schedule(5) == 1.0
    assert schedule(20) == pytest.approx(0.75)  # halfway: half of the reduction
    assert schedule(15) == pytest.approx(1 - 0.5 * 0.5 * (1 - math.cos(math.pi / 4)))
    assert schedule(30) == pytest.approx(0.5)
    # EViT's formula: base + (1 - base) * (cos(pi * t / T) + 1) / 2
    t, total = 7.0, 20.0
    evit = 0.5 + 0.5 * (math.cos(t / total * math.pi) + 1) * 0.5
    assert schedule(10 + t) == pytest.approx(evit)


@given(
    st.floats(0.05, 1.0),
    st.floats(0.0, 50.0),
    st.floats(0.5, 100.0),
    st.lists(st.floats(0.0, 200.0), min_size=2, max_size=10),
    st.sampled_from([LinearWarmupKeepRate, CosineWarmupKeepRate]),
)
def test_warmups_are_monotone_and_bounded(target, warmup, span, epochs, cls):
    schedule = cls(target, warmup_epochs=warmup, end_epoch=warmup + span)
    rates = [schedule(e) for e in sorted(epochs)]
    assert all(target - 1e-12 <= r <= 1.0 for r in rates)
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(rates))


def test_schedule_arguments_are_checked():
    with pytest.raises(ValueError, match="target must be in"):
        ConstantKeepRate(1.5)
    with pytest.raises(ValueError, match=r"target\[1\] must be in"):
        ConstantKeepRate([1.0, 0.0])
    with pytest.raises(ValueError, match="non-empty"):
        ConstantKeepRate([])
    with pytest.raises(ValueError, match="end_epoch"):
        LinearWarmupKeepRate(0.7, warmup_epochs=10, end_epoch=10)
    with pytest.raises(ValueError, match="warmup_epochs must be"):
        CosineWarmupKeepRate(0.7, warmup_epochs=-1, end_epoch=10)
    schedule = LinearWarmupKeepRate(0.7, 1, 2)
    with pytest.raises(ValueError, match="iteration must be <= 9"):
        schedule(0, iteration=10, iters_per_epoch=10)
    with pytest.raises(ValueError, match="epoch must be a non-negative"):
        schedule(-1)


def test_schedule_epoch_checks():
    schedule = ConstantKeepRate(0.7)
    with pytest.raises(ValueError, match="finite"):
        schedule(float("nan"))
    with pytest.raises(TypeError, match="epoch must be a number"):
        schedule("3")
