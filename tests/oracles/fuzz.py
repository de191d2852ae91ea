"""The harness of the "nothing silent" fuzz tables (tests/tokenprune/test_silent_library.py and
the model pieces' tables): case records, input makers and the pairs of a valid but odd input
with its reference.

* :class:`Bad`: a call that must raise ``error`` with a message matching ``match``;
* :class:`Odd`: a valid but unusual input (non-contiguous, expanded, empty, all masked) whose
  result must equal a reference and be finite;
* NaN in the data of a dense computation must propagate (:func:`poisoned` inputs).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch

NAN, INF = float("nan"), float("inf")


#: Categories of the fuzz: argument type or dtype, rank, other dimensions, zero sizes, counts
#: out of range, NaN/inf, devices (meta), flags, and for valid input: non-contiguous, expanded,
#: all keys masked.
CATEGORIES = (
    "type", "rank", "dims", "zero", "range", "nonfinite", "device", "flag",
    "strided", "expanded", "masked",
)  # fmt: skip


@dataclass(frozen=True)
class Bad:
    entry: str
    category: str
    call: Callable[[], object]
    error: type[Exception]
    match: str


@dataclass(frozen=True)
class Odd:
    """Valid but unusual input: ``call()`` must equal ``reference()`` and be finite."""

    entry: str
    category: str
    call: Callable[[], object]
    reference: Callable[[], object]


#: The tables are built at import, before any fixture runs: their own random stream.
GENERATOR = torch.Generator().manual_seed(16)


def strided(t: torch.Tensor) -> torch.Tensor:
    """The same values in a non-contiguous view (every other element of a wider buffer)."""
    buffer = torch.zeros(*t.shape, 2, dtype=t.dtype)
    buffer[..., 0] = t
    view = buffer[..., 0]
    assert not view.is_contiguous() or view.numel() <= 1
    return view


def expanded(t: torch.Tensor) -> torch.Tensor:
    """An expanded view (stride 0 on the first axis) repeating the first batch element."""
    return t[:1].expand_as(t)


def meta(t: torch.Tensor) -> torch.Tensor:
    return t.to("meta")


def module_pair(make: Callable[[], torch.nn.Module]):
    """A float32 module in eval mode and its float64 copy."""
    module = make().eval()
    return module, copy.deepcopy(module).double()


def float64_pair(module_call, make, *shapes, **kwargs):
    """``(float32 result, float64 reference)`` of ``module_call(module, *inputs)``."""
    module, reference = module_pair(make)
    inputs = [normal(*shape) for shape in shapes]

    def call():
        return module_call(module, *inputs, **kwargs)

    def ref():
        return module_call(reference, *(t.double() for t in inputs), **kwargs)

    return call, ref


def view_pair(module_call, make, *shapes, view=strided):
    """``(result on views of the inputs, result on contiguous copies)`` of one module."""
    module = make().eval()
    inputs = [view(normal(*shape)) for shape in shapes]
    return (
        lambda: module_call(module, *inputs),
        lambda: module_call(module, *(t.contiguous() for t in inputs)),
    )


def empty_batch_pair(module_call, make, *shapes):
    """``(result on a batch of 0, the first 0 rows of the result on a batch of 2)``."""
    module = make().eval()
    inputs = [normal(*shape) for shape in shapes]
    return (
        lambda: module_call(module, *(t[:0] for t in inputs)),
        lambda: module_call(module, *inputs)[:0],
    )


def odd(entry, category, pair):
    return Odd(entry, category, *pair)


def fn_view_pair(fn, *args, view=strided, **kwargs):
    views = [view(a) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]
    return (lambda: fn(*views, **kwargs),
            lambda: fn(*(a.contiguous() if isinstance(a, torch.Tensor) else a for a in views),
                       **kwargs))  # fmt: skip


def assert_same(got, expected):
    if isinstance(got, torch.Tensor):
        if got.is_floating_point():
            assert not got.isnan().any(), "NaN in the result"
        expected = torch.as_tensor(expected, dtype=got.dtype)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    elif isinstance(got, (tuple, list)):
        assert len(got) == len(expected)
        for g, e in zip(got, expected, strict=True):
            assert_same(g, e)
    elif got is None:
        assert expected is None
    else:
        assert got == expected


def poisoned(*shape, index=(0,)):
    x = normal(*shape)
    x[index] = NAN
    return x


def normal(*shape, dtype=torch.float32):
    return torch.randn(*shape, generator=GENERATOR).to(dtype)


def uniform(*shape):
    return torch.rand(*shape, generator=GENERATOR)


def index_rows(*rows):
    index = torch.tensor(rows)
    return index.long() if index.numel() == 0 else index
