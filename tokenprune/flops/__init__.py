"""FLOP and parameter counting under the conventions papers use, side by side.

:func:`count_flops` reports, for one forward pass:

* ``params``: parameters of the model;
* ``paper_macs``: multiply-adds by the published-table convention (``thop``'s module hooks:
  Linear, Conv, normalisation and a few pooling layers; attention matmuls are invisible). This
  is what the GTPT, PPT and TokenPose tables call "GFLOPs". ``linear_conv_macs`` is its Linear
  and Conv part alone;
* ``macs``: the multiply-adds of every matrix product and convolution in the traced graph
  (fvcore), attention included; ``flops`` is twice that, the quantity
  :class:`torch.utils.flop_counter.FlopCounterMode` reports. Normalisation, pooling and
  elementwise ops count zero here and are listed in ``uncounted_ops``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from .formulas import flop_counter_mapping, register_mac_formula, sdpa_macs
from .paper import paper_macs
from .traced import traced_macs

__all__ = [
    "FlopReport",
    "count_flops",
    "flop_counter_mapping",
    "register_mac_formula",
    "sdpa_macs",
]


@dataclass(frozen=True)
class FlopReport:
    """What :func:`count_flops` measured. All counts are for one forward pass of the inputs.

    Attributes:
        params: number of parameters (trainable or not).
        paper_macs: published-table convention (``thop`` module hooks).
        linear_conv_macs: the Linear and Conv part of ``paper_macs``.
        macs: multiply-adds of every matrix product and convolution of the traced graph,
            attention included (fvcore).
        by_module: ``macs`` per module name (``""`` is the whole model).
        paper_by_module: ``paper_macs`` per module name.
        uncounted_ops: ops counted as zero (elementwise, top-k, sort, gather, ...) with their
            call counts: listed so nothing is dropped silently.
        unknown_ops: ops that looked like compute but had no formula (a warning was issued).
    """

    params: int
    paper_macs: int
    linear_conv_macs: int
    macs: int
    by_module: dict[str, int]
    paper_by_module: dict[str, int]
    uncounted_ops: dict[str, int]
    unknown_ops: dict[str, int]

    @property
    def flops(self) -> int:
        """``2 * macs``: FLOPs counting a multiply and an add separately."""
        return 2 * self.macs

    def __str__(self) -> str:
        lines = [
            f"params            {self.params / 1e6:10.3f} M",
            f"paper MACs        {self.paper_macs / 1e9:10.4f} G  (thop convention)",
            f"  linear + conv   {self.linear_conv_macs / 1e9:10.4f} G",
            f"all MACs          {self.macs / 1e9:10.4f} G  (incl. attention; FLOPs = 2x)",
        ]
        if self.uncounted_ops:
            ops = ", ".join(f"{op.split('::')[-1]} x{n}" for op, n in self.uncounted_ops.items())
            lines.append(f"counted as zero:  {ops}")
        if self.unknown_ops:
            lines.append(f"NO FORMULA (zero): {', '.join(self.unknown_ops)}")
        return "\n".join(lines)


def _check_input(name: str, value: object) -> None:
    """Require a tensor, or a (nested) tuple or list of tensors."""
    if isinstance(value, (tuple, list)):
        for index, item in enumerate(value):
            _check_input(f"{name}[{index}]", item)
        return
    if not isinstance(value, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor (or a tuple of them), got {type(value).__name__}; "
            "wrap a model taking other arguments in a small nn.Module"
        )


def count_flops(model: nn.Module, *inputs) -> FlopReport:
    """Count parameters and multiply-adds of ``model(*inputs)`` under both conventions.

    The model runs twice in eval mode without gradients (once with module hooks, once traced
    by ``torch.jit.trace``) and is restored to its previous mode. Inputs must be tensors (or
    tuples of tensors); wrap a model taking other arguments in a small ``nn.Module``. Outputs
    may be any nesting of tuples, lists, dicts and named tuples.

    Args:
        model: any ``nn.Module``.
        *inputs: its positional inputs.

    Returns:
        :class:`FlopReport`.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or an input is not a tensor (or a tuple
            or list of them). Errors of the model's own checks propagate.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    for index, value in enumerate(inputs):
        _check_input(f"inputs[{index}]", value)
    paper = paper_macs(model, inputs)
    traced = traced_macs(model, inputs)
    return FlopReport(
        params=sum(p.numel() for p in model.parameters()),
        paper_macs=paper.total,
        linear_conv_macs=paper.by_category["linear"] + paper.by_category["conv"],
        macs=traced.total,
        by_module=traced.by_module,
        paper_by_module=dict(paper.by_module),
        uncounted_ops=traced.uncounted_ops,
        unknown_ops=traced.unknown_ops,
    )
