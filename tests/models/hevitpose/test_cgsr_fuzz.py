"""Nothing silent, for CGSR attention: bad input is refused naming the argument, valid but odd
input gives the reference result, NaN in the data propagates (the harness of
tests/tokenprune/test_silent_library.py, tests/oracles/fuzz.py)."""

from __future__ import annotations

import pytest
import torch

from tests.oracles.fuzz import CATEGORIES, Bad, Odd, assert_same, expanded, meta, strided
from tests.oracles.fuzz import empty_batch_pair as _empty_batch
from tests.oracles.fuzz import float64_pair as _f64
from tests.oracles.fuzz import normal as _x
from tests.oracles.fuzz import odd as _odd
from tests.oracles.fuzz import poisoned as _poisoned
from tests.oracles.fuzz import view_pair as _same_module
from tokenprune_models.hevitpose.cgsr import CGSRAttention, cgsr_attention_reference


def _cgsr() -> CGSRAttention:
    return CGSRAttention(8, groups=2, reduction=2)


B = Bad
BAD_CASES: list[Bad] = [
    B("CGSRAttention", "flag", lambda: CGSRAttention(8, norm="no"), TypeError,
      "norm must be a bool"),
    B("CGSRAttention", "range", lambda: CGSRAttention(8, groups=0), ValueError,
      "groups must be >= 1"),
    B("CGSRAttention", "zero", lambda: CGSRAttention(8)(_x(1, 0, 8), (0, 4)), ValueError,
      r"size must be an \(H, W\) pair of positive ints"),
    B("CGSRAttention", "type", lambda: CGSRAttention(8)(_x(1, 4, 8), (2.0, 2)), TypeError,
      r"size must be an \(H, W\) pair"),
    B("CGSRAttention", "type", lambda: CGSRAttention(8)(_x(1, 4, 8, dtype=torch.float64),
      (2, 2)), ValueError, r"x \(torch\.float64 on cpu\) must match"),
    B("CGSRAttention", "rank", lambda: CGSRAttention(8)(_x(4, 8), (2, 2)), ValueError,
      "x must have 3 dimensions"),
    B("CGSRAttention", "dims", lambda: CGSRAttention(8)(_x(1, 5, 8), (2, 2)), ValueError,
      r"x must be \[B, H\*W, C\] = \[B, 4, 8\]"),
    B("CGSRAttention", "device", lambda: CGSRAttention(8)(meta(_x(1, 4, 8)), (2, 2)),
      ValueError, r"x \(torch\.float32 on meta\) must match"),
    B("cgsr_attention_reference", "type", lambda: cgsr_attention_reference(None, _x(1, 4, 8),
      (2, 2)), TypeError, "module must be a CGSRAttention"),
    B("cgsr_attention_reference", "dims", lambda: cgsr_attention_reference(CGSRAttention(8),
      _x(1, 4, 8), (2, 3)), ValueError, r"x must be \[B, H\*W, C\] = \[B, 6, 8\]"),
    B("cgsr_attention_reference", "device", lambda: cgsr_attention_reference(CGSRAttention(8),
      meta(_x(1, 4, 8)), (2, 2)), ValueError, r"x \(torch\.float32 on meta\) must match"),
]
del B

ODD_CASES: list[Odd] = [
    _odd("CGSRAttention", "strided", _same_module(lambda m, x: m(x, (4, 4)), _cgsr, (2, 16, 8))),
    _odd("CGSRAttention", "expanded", _same_module(lambda m, x: m(x, (4, 4)), _cgsr, (2, 16, 8),
        view=expanded)),
    _odd("CGSRAttention", "zero", _empty_batch(lambda m, x: m(x, (4, 4)), _cgsr, (2, 16, 8))),
    _odd("cgsr_attention_reference", "strided", _f64(
        lambda m, x: cgsr_attention_reference(m, strided(x), (4, 4)), _cgsr, (2, 16, 8))),
]

PROPAGATES = [
    ("CGSRAttention", lambda: CGSRAttention(8)(_poisoned(1, 4, 8), (2, 2))),
    ("cgsr_attention_reference", lambda: cgsr_attention_reference(CGSRAttention(8),
        _poisoned(1, 4, 8), (2, 2))),
]

#: The categories each entry point is fuzzed with.
APPLICABLE = {
    "CGSRAttention": "type rank dims zero range nonfinite device flag strided expanded",
    "cgsr_attention_reference": "type dims nonfinite device strided",
}


@pytest.mark.parametrize("case", [pytest.param(c, id=f"{c.entry}-{c.category}-{i}")
                                  for i, c in enumerate(BAD_CASES)])  # fmt: skip
def test_bad_input_is_refused_naming_the_argument(case: Bad):
    with pytest.raises(case.error, match=case.match):
        case.call()


@pytest.mark.parametrize("case", [pytest.param(c, id=f"{c.entry}-{c.category}-{i}")
                                  for i, c in enumerate(ODD_CASES)])  # fmt: skip
def test_valid_odd_input_gives_the_reference_result(case: Odd):
    got = case.call()
    assert_same(got, case.reference())
    assert torch.isfinite(got).all()


@pytest.mark.parametrize("call", [pytest.param(c, id=e) for e, c in PROPAGATES])
def test_nan_data_propagates_to_the_result(call):
    assert torch.isnan(call()).any()


def test_every_entry_point_is_fuzzed():
    import tokenprune_models.hevitpose.cgsr as cgsr

    covered: dict[str, set[str]] = {}
    for case in (*BAD_CASES, *ODD_CASES):
        covered.setdefault(case.entry, set()).add(case.category)
    for entry, _ in PROPAGATES:
        covered.setdefault(entry, set()).add("nonfinite")
    assert set(APPLICABLE) == set(cgsr.__all__)
    for entry, categories in APPLICABLE.items():
        required = set(categories.split())
        assert required <= set(CATEGORIES)
        assert not required - covered[entry], f"{entry}: no case for {required - covered[entry]}"


def test_checks_dtype_and_device_of_its_input():
    module, x = CGSRAttention(8, groups=2), torch.randn(2, 3, 8)
    with pytest.raises(ValueError, match=r"x \(torch\.float64 on cpu\) must match"):
        module(x.double(), (1, 3))
    with pytest.raises(ValueError, match=r"x \(torch\.float32 on meta\) must match"):
        module(meta(x), (1, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(module(x.bfloat16(), (1, 3)).float()).all()
    assert module.double()(x.double(), (1, 3)).dtype == torch.float64
