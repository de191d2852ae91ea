"""Full multiply-add count of a traced forward pass (fvcore), attention included."""

from __future__ import annotations

import re
import warnings
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from .formulas import registered_formulas

__all__ = ["TracedCount", "traced_macs"]

# An op matching this pattern does real arithmetic; counting it as zero would understate the
# model, so it is reported instead of being silently dropped. Elementwise, reduction,
# selection and data-movement ops are counted as zero (fvcore's convention) and listed.
_COMPUTE_PATTERN = re.compile(
    r"conv|mm\b|matmul|linear|einsum|attention|tensordot|lstm|gru|rnn|flex|bmm"
)


# fvcore's defaults also count normalisation, pooling and upsampling with ad-hoc weights; here
# they count zero (and are listed), so that ``macs`` is exactly the multiply-adds of matrix
# products and convolutions, the quantity FlopCounterMode counts (times two).
_NON_MATMUL_OPS = frozenset(
    {
        "aten::batch_norm",
        "aten::group_norm",
        "aten::layer_norm",
        "aten::instance_norm",
        "aten::upsample_nearest2d",
        "aten::upsample_bilinear2d",
        "aten::adaptive_avg_pool2d",
        "aten::grid_sampler",
    }
)

# Token selection and gathering cost no multiply-adds but are what pruning adds to a model, so
# they are always listed (fvcore would otherwise ignore some of them silently).
_SELECTION_OPS = frozenset(
    {
        "aten::topk",
        "aten::sort",
        "aten::argsort",
        "aten::gather",
        "aten::scatter",
        "aten::scatter_add",
        "aten::index",
        "aten::index_select",
        "aten::take_along_dim",
        "aten::masked_select",
    }
)


@dataclass(frozen=True)
class TracedCount:
    """Result of :func:`traced_macs`.

    Attributes:
        total: multiply-adds of matrix products and convolutions (attention included).
        by_module: totals per module and its ancestors (``""`` is the whole model).
        uncounted_ops: ops counted as zero, with their call counts (elementwise, reductions,
            top-k, sort, gather and the like).
        unknown_ops: ops that look like real compute but have no formula (also zero).
    """

    total: int
    by_module: dict[str, int]
    uncounted_ops: dict[str, int]
    unknown_ops: dict[str, int]


def _import_fvcore():
    try:
        with warnings.catch_warnings():
            # fvcore imports torch.jit.script-decorated code, deprecated in recent torch.
            warnings.simplefilter("ignore", DeprecationWarning)
            from fvcore.nn import FlopCountAnalysis
            from fvcore.nn.jit_handles import get_shape
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "count_flops needs fvcore: pip install 'tokenprune[flops]'"
        ) from error
    return FlopCountAnalysis, get_shape


def traced_macs(model: nn.Module, inputs: tuple) -> TracedCount:
    """Trace one forward pass (eval mode, no grad) and count its multiply-adds with fvcore.

    fvcore's formulas cover linear, matmul, bmm, einsum and convolution; the formulas
    registered in :mod:`tokenprune.flops.formulas` add ``scaled_dot_product_attention`` and
    the library's custom ops. Normalisation, pooling and elementwise ops count zero.

    Args:
        model: the module; restored to its training mode afterwards.
        inputs: positional inputs of ``model`` (tensors, as ``torch.jit.trace`` requires).
    """
    flop_count_analysis, get_shape = _import_fvcore()

    def as_handle(formula):
        def handle(ins, outs) -> int:
            return int(formula([get_shape(v) for v in ins], [get_shape(v) for v in outs]))

        return handle

    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.trace is deprecated
            analysis = flop_count_analysis(_TensorOutputs(model), inputs)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            analysis.tracer_warnings("none")
            for name, formula in registered_formulas().items():
                analysis.set_op_handle(name, as_handle(formula))
            selections: Counter[str] = Counter()
            for name in _SELECTION_OPS | _NON_MATMUL_OPS:
                analysis.set_op_handle(name, _recorder(name, selections))
            # fvcore skips its ignored ops before consulting handles; it has no public way to
            # un-ignore one (and has been frozen since 2022), hence the private attribute.
            analysis._ignored_ops -= _SELECTION_OPS
            total = int(analysis.total())
            by_module = {
                _strip_wrapper(name): int(value) for name, value in analysis.by_module().items()
            }
            unsupported = Counter(analysis.unsupported_ops()) + selections
    finally:
        model.train(was_training)

    unknown = {op: n for op, n in unsupported.items() if _looks_like_compute(op)}
    uncounted = {op: n for op, n in unsupported.items() if op not in unknown}
    if unknown:
        warnings.warn(
            f"count_flops: no formula for {sorted(unknown)}; they are counted as zero. Register "
            "one with tokenprune.flops.register_mac_formula.",
            RuntimeWarning,
            stacklevel=3,
        )
    return TracedCount(total, by_module, dict(sorted(uncounted.items())), unknown)


class _TensorOutputs(nn.Module):
    """Wraps a model so that its outputs are a flat tuple of tensors, which is all
    ``torch.jit.trace`` accepts (models may return named tuples holding ints)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        leaves, _ = tree_flatten(self.model(*inputs))
        return tuple(leaf for leaf in leaves if isinstance(leaf, torch.Tensor))


def _strip_wrapper(name: str) -> str:
    return name.removeprefix("model").removeprefix(".")


def _recorder(name: str, calls: Counter[str]):
    """An fvcore handle that counts zero multiply-adds and records the call."""

    def handle(ins, outs) -> int:
        calls[name] += 1
        return 0

    return handle


def _looks_like_compute(op: str) -> bool:
    namespace, _, name = op.partition("::")
    if namespace not in ("aten", "prim") or name.startswith("PythonOp"):
        return True  # custom ops and opaque autograd Functions must bring a formula
    return bool(_COMPUTE_PATTERN.search(name))
