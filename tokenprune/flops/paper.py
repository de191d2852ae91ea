"""Paper-convention multiply-adds: the module-hook counting of ``thop`` 0.1.1.

The GTPT, PPT and TokenPose tables report "GFLOPs" that are really ``thop`` MACs. ``thop``
hooks modules by their exact type and counts, per call:

=====================================  ================================================
module                                 count
=====================================  ================================================
``Linear``                             ``in_features * output.numel()``
``Conv*d``, ``ConvTranspose*d``        ``output.numel() * in_channels / groups * kernel``
``BatchNorm*``, ``LayerNorm``,         ``2 * input.numel()``, doubled when affine
``InstanceNorm*``, ``SyncBatchNorm``
``AvgPool*``                           ``output.numel()``
``AdaptiveAvgPool*``                   ``(prod(input_size / output_size) + 1) * output.numel()``
``Softmax``                            ``rows * (3 * features - 1)``
``PReLU``                              ``input.numel()``
``Upsample*``                          ``output.numel()`` times 1 / 5 / 11 / 259 for
                                       nearest / linear / bilinear / bicubic (else 0)
=====================================  ================================================

Everything else counts zero, in particular functional calls: attention matmuls
(``scaled_dot_product_attention``, ``einsum``), so paper numbers exclude attention. This module
re-derives those rules (facts of the convention, not ``thop``'s code) so that ``thop`` is not a
dependency; the tests check them against hand-computed counts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["PaperCount", "paper_macs"]

_Rule = Callable[[nn.Module, Tensor, Tensor], int]


def _linear(module: nn.Module, inp: Tensor, out: Tensor) -> int:
    return module.in_features * out.numel()


def _conv(module: nn.Module, inp: Tensor, out: Tensor) -> int:
    kernel = math.prod(module.weight.shape[2:])
    return out.numel() * (inp.shape[1] // module.groups) * kernel


def _norm(module: nn.Module, inp: Tensor, out: Tensor) -> int:
    affine = getattr(module, "affine", False) or getattr(module, "elementwise_affine", False)
    return 2 * inp.numel() * (2 if affine else 1)


def _avgpool(module: nn.Module, inp: Tensor, out: Tensor) -> int:
    return out.numel()


def _adaptive_avgpool(module: nn.Module, inp: Tensor, out: Tensor) -> int:
    spatial = out.ndim - 2
    sizes = zip(inp.shape[-spatial:], out.shape[-spatial:], strict=True)
    ratio = math.prod(i / o for i, o in sizes)
    return int((ratio + 1) * out.numel())


def _softmax(module: nn.Module, inp: Tensor, out: Tensor) -> int:
    features = inp.shape[module.dim]
    return (inp.numel() // features) * (3 * features - 1)


def _prelu(module: nn.Module, inp: Tensor, out: Tensor) -> int:
    return inp.numel()


_UPSAMPLE_FACTOR = {"nearest": 1, "linear": 5, "bilinear": 11, "bicubic": 259}


def _upsample(module: nn.Module, inp: Tensor, out: Tensor) -> int:
    return out.numel() * _UPSAMPLE_FACTOR.get(module.mode, 0)


_RULES: dict[type, tuple[str, _Rule]] = {
    nn.Linear: ("linear", _linear),
    **{cls: ("conv", _conv) for cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d)},
    **{
        cls: ("conv", _conv)
        for cls in (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    },
    **{
        cls: ("norm", _norm)
        for cls in (
            nn.BatchNorm1d,
            nn.BatchNorm2d,
            nn.BatchNorm3d,
            nn.SyncBatchNorm,
            nn.LayerNorm,
            nn.InstanceNorm1d,
            nn.InstanceNorm2d,
            nn.InstanceNorm3d,
        )
    },
    **{cls: ("other", _avgpool) for cls in (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)},
    **{
        cls: ("other", _adaptive_avgpool)
        for cls in (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
    },
    nn.Softmax: ("other", _softmax),
    nn.PReLU: ("other", _prelu),
    **{
        cls: ("other", _upsample)
        for cls in (nn.Upsample, nn.UpsamplingBilinear2d, nn.UpsamplingNearest2d)
    },
}


class PaperCount:
    """Result of :func:`paper_macs`: totals by category and by module."""

    def __init__(self) -> None:
        self.by_category: Counter[str] = Counter()
        self.by_module: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.by_category.values())


def paper_macs(model: nn.Module, inputs: tuple) -> PaperCount:
    """Count paper-convention MACs of one forward pass (eval mode, no grad).

    Args:
        model: the module; restored to its training mode afterwards.
        inputs: positional inputs of ``model``.

    Returns:
        :class:`PaperCount` with ``by_category`` keys ``"linear"``, ``"conv"``, ``"norm"`` and
        ``"other"``, and ``by_module`` totals for every module and its ancestors (``""`` is the
        whole model).
    """
    count = PaperCount()
    handles = []
    for name, module in model.named_modules():
        rule = _RULES.get(type(module))  # exact type, as thop matches
        if rule is None:
            continue
        category, fn = rule

        def hook(mod: nn.Module, args: tuple, out: Tensor, *, _n=name, _c=category, _f=fn) -> None:
            macs = _f(mod, args[0], out)
            count.by_category[_c] += macs
            parts = _n.split(".") if _n else []
            for depth in range(len(parts) + 1):
                count.by_module[".".join(parts[:depth])] += macs

        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(*inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return count
