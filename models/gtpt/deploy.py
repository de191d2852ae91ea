"""Preparing GTPT for deployment: BatchNorm folding and ONNX export."""

from __future__ import annotations

import copy
import itertools
import os
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..common.atomic import atomic_path
from .model import GTPT


def fuse_batchnorm(model: GTPT) -> GTPT:
    """An eval-mode copy of ``model`` with its BatchNorm layers folded away.

    Every ``Conv2d -> BatchNorm2d`` pair of the stem becomes one convolution
    (:func:`torch.nn.utils.fusion.fuse_conv_bn_eval`), and the BatchNorm in front of the patch
    embedding is folded into that Linear layer: an eval-mode BatchNorm is a per-channel affine
    map, and every input feature of the patch embedding belongs to one channel. Outputs equal
    the original model's up to float rounding; the work per image drops by the BatchNorm
    passes, which are memory-bound and a large share of the stem's CPU time.

    Multiply-add counts in the paper convention describe the published (unfused) architecture:
    count them on the original model.
    """
    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        if isinstance(module, nn.Sequential):
            _fuse_sequential(module)
    _fold_norm_into_patch_embed(fused)
    return fused


def optimize_for_inference(model: GTPT, channels_last: bool = True) -> GTPT:
    """An eval-mode copy of ``model`` prepared for fast inference.

    BatchNorm is folded away (:func:`fuse_batchnorm`) and, with ``channels_last``, the stem runs
    in channels-last memory format, where the CPU convolution kernels of its 1x1 and depthwise
    layers are considerably faster. Outputs equal the original model's up to float rounding.
    """
    fused = fuse_batchnorm(model)
    if channels_last:
        fused.stem.to(memory_format=torch.channels_last)
        fused.channels_last = True
    return fused


def _fuse_sequential(sequence: nn.Sequential) -> None:
    children = list(sequence.named_children())
    for (name, conv), (next_name, norm) in itertools.pairwise(children):
        if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
            setattr(sequence, name, fuse_conv_bn_eval(conv, norm))
            setattr(sequence, next_name, nn.Identity())


@torch.no_grad()
def _fold_norm_into_patch_embed(model: GTPT) -> None:
    norm, linear = model.patch_norm, model.patch_embed
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)  # [C]
    shift = norm.bias - norm.running_mean * scale
    # patch features are ordered (row, col, channel) with the channel fastest
    repeats = model.config.patch_size[0] * model.config.patch_size[1]
    feature_scale, feature_shift = scale.repeat(repeats), shift.repeat(repeats)
    linear.bias += linear.weight @ feature_shift
    linear.weight *= feature_scale
    model.patch_norm = nn.Identity()


def export_onnx(model: GTPT, path: str | os.PathLike, dynamic_batch: bool = True) -> Path:
    """Export the eval model to ONNX (``torch.onnx.export(dynamo=True)``) and write it
    atomically.

    The graph takes ``images [B, 3, H, W]`` (``B`` symbolic with ``dynamic_batch``) and
    returns ``(x_logits, y_logits)``. Token selection exports as ONNX ``TopK``, whose tie rule
    (lower index first) is tokenprune's. Needs the ``onnx`` extra (onnx, onnxscript).
    """
    path = Path(path)
    model = model.eval()
    example = torch.randn(2, 3, *model.image_size, dtype=model.patch_embed.weight.dtype)
    dynamic_shapes = {"images": {0: torch.export.Dim("batch")}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter is chatty about unrelated registries
        program = torch.onnx.export(
            model, (example,), dynamo=True, dynamic_shapes=dynamic_shapes,
            input_names=["images"], output_names=["x_logits", "y_logits"],
        )  # fmt: skip
    with atomic_path(path) as tmp:
        program.save(tmp)
    return path
