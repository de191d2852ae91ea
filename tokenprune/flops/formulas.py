"""Multiply-add formulas for ops the stock counters miss.

A formula maps the shapes of an op's inputs and outputs to its multiply-adds (MACs). One
registry serves both counters: :func:`tokenprune.count_flops` (fvcore, MACs) and
:func:`flop_counter_mapping` for :class:`torch.utils.flop_counter.FlopCounterMode` (FLOPs, two
per multiply-add).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

__all__ = ["flop_counter_mapping", "register_mac_formula", "registered_formulas", "sdpa_macs"]

Shape = Sequence[int]
#: ``formula(input_shapes, output_shapes) -> MACs``; a non-tensor argument's shape is None.
MacFormula = Callable[[Sequence["Shape | None"], Sequence["Shape | None"]], int]

_FORMULAS: dict[str, MacFormula] = {}
_TORCH_OPS: dict[str, Callable[[], object]] = {}


def register_mac_formula(
    op_name: str, formula: MacFormula, torch_op: Callable[[], object] | None = None
) -> None:
    """Register the MAC formula of an op.

    Args:
        op_name: the op's schema name as traced, e.g. ``"aten::scaled_dot_product_attention"``
            or ``"tokenprune::group_attention"``.
        formula: ``formula(input_shapes, output_shapes) -> MACs``.
        torch_op: optional zero-argument callable returning the ``torch.ops`` overload packet,
            so :func:`flop_counter_mapping` can map it for ``FlopCounterMode`` as well.
    """
    _FORMULAS[op_name] = formula
    if torch_op is not None:
        _TORCH_OPS[op_name] = torch_op


def registered_formulas() -> dict[str, MacFormula]:
    """A copy of the registry: op name to formula."""
    return dict(_FORMULAS)


def sdpa_macs(inputs: Sequence[Shape | None], outputs: Sequence[Shape | None]) -> int:
    """Scaled-dot-product attention: ``q k^T`` and ``p v``, i.e.
    ``batch * Nq * Nk * (Dqk + Dv)`` with ``batch`` every leading axis of ``q``."""
    q, k, v = inputs[:3]
    if q is None or k is None or v is None:
        raise ValueError("scaled_dot_product_attention needs tensor shapes for q, k and v")
    return math.prod(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


register_mac_formula("aten::scaled_dot_product_attention", sdpa_macs)


def flop_counter_mapping() -> dict[object, Callable[..., int]]:
    """``custom_mapping`` for :class:`~torch.utils.flop_counter.FlopCounterMode`.

    Adds the CPU flash-attention kernel that ``FlopCounterMode`` does not count, and every op
    registered here with a ``torch_op``. Values are FLOPs (two per multiply-add).
    """
    mapping: dict[object, Callable[..., int]] = {}

    def cpu_sdpa(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return 2 * sdpa_macs([query, key, value], [])

    mapping[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = cpu_sdpa
    for name, op in _TORCH_OPS.items():
        formula = _FORMULAS[name]

        def counted(*shapes, out_shape=None, _formula=formula, **kwargs) -> int:
            inputs = [s if isinstance(s, (tuple, list, torch.Size)) else None for s in shapes]
            outputs = out_shape if isinstance(out_shape, (tuple, list)) else [out_shape]
            outputs = [s if isinstance(s, (tuple, list, torch.Size)) else None for s in outputs]
            return 2 * _formula(inputs, outputs)

        mapping[op()] = counted
    return mapping
