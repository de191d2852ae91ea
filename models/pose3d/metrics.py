"""3-D pose errors: MPJPE (Protocol #1), P-MPJPE (Protocol #2) and per-action averaging.

All errors are in the units of the input (metres for the data of this package; multiply by
1000 for the millimetres papers report).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["action_average", "canonical_action", "mpjpe", "p_mpjpe", "procrustes_align",
           "root_relative"]  # fmt: skip


def _check_pair(pred: object, target: object) -> tuple[Tensor, Tensor]:
    for name, value in (("pred", pred), ("target", target)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
        if value.ndim < 2 or value.shape[-1] != 3 or value.shape[-2] < 1:
            raise ValueError(f"{name} must have shape [..., J, 3], got {list(value.shape)}")
        if not value.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape [..., J, 3], got {list(pred.shape)} "
            f"and {list(target.shape)}"
        )
    dtype = torch.promote_types(torch.promote_types(pred.dtype, target.dtype), torch.float32)
    return pred.to(dtype), target.to(dtype)


def _reduce(errors: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return errors.mean()
    if reduction == "none":
        return errors
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def mpjpe(pred: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean per-joint position error: the Euclidean distance averaged over joints and frames.

    Args:
        pred, target: ``[..., J, 3]`` poses of the same shape.
        reduction: ``"mean"`` (a scalar) or ``"none"`` (per pose, ``[...]``, averaged over
            joints only).
    """
    pred, target = _check_pair(pred, target)
    return _reduce(torch.linalg.vector_norm(pred - target, dim=-1).mean(-1), reduction)


def procrustes_align(pred: Tensor, target: Tensor) -> Tensor:
    """Align each pose of ``pred`` to ``target`` with the best similarity transform.

    Per pose, finds the rotation ``R`` (a proper rotation: reflections are not allowed), the
    uniform scale ``s`` and the translation ``t`` minimising ``||s * pred @ R + t - target||``
    (Umeyama's method) and returns ``s * pred @ R + t``.

    Args:
        pred, target: ``[..., J, 3]`` poses of the same shape.

    Returns:
        The aligned ``pred``, ``[..., J, 3]``, in float32 or float64.
    """
    pred, target = _check_pair(pred, target)
    mu_pred, mu_target = pred.mean(-2, keepdim=True), target.mean(-2, keepdim=True)
    y, x = pred - mu_pred, target - mu_target
    u, s, vh = torch.linalg.svd(y.transpose(-1, -2) @ x)  # y^T x = u diag(s) vh
    # Reflection fix: flip the axis of the smallest singular value when det(u vh) < 0.
    sign = torch.sign(torch.linalg.det(u @ vh))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    d = torch.ones_like(s)
    d[..., -1] = sign
    rotation = (u * d.unsqueeze(-2)) @ vh
    norm = y.square().sum((-2, -1))
    scale = (s * d).sum(-1) / norm.clamp_min(torch.finfo(norm.dtype).tiny)
    return scale[..., None, None] * (y @ rotation) + mu_target


def p_mpjpe(pred: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """MPJPE after per-pose Procrustes alignment of ``pred`` to ``target``.

    Rotation, uniform scale and translation are removed (see :func:`procrustes_align`); a
    mirror image is not.

    Args:
        pred, target: ``[..., J, 3]`` poses of the same shape.
        reduction: ``"mean"`` (a scalar) or ``"none"`` (per pose, ``[...]``).
    """
    aligned = procrustes_align(pred, target)
    return mpjpe(aligned, target.to(aligned.dtype), reduction)


def root_relative(poses: Tensor, root: int = 0) -> Tensor:
    """Subtract the root joint from every joint: ``[..., J, C] -> [..., J, C]``, root zero."""
    if not isinstance(poses, Tensor):
        raise TypeError(f"poses must be a torch.Tensor, got {type(poses).__name__}")
    if poses.ndim < 2 or poses.shape[-2] < 1:
        raise ValueError(f"poses must have shape [..., J, C], got {list(poses.shape)}")
    joints = poses.shape[-2]
    if not -joints <= root < joints:
        raise ValueError(f"root must index one of the {joints} joints, got {root}")
    return poses - poses.narrow(-2, root % joints, 1)


def canonical_action(action: str) -> str:
    """The action group of a sequence name: ``"Walking 1"`` and ``"Walking"`` both give
    ``"Walking"`` (Human3.6M numbers the repetitions of an action)."""
    return action.split(" ")[0]


def action_average(errors: Iterable[tuple[str, Tensor]]) -> tuple[dict[str, float], float]:
    """Protocol averaging: pool the frames of each action, then average over actions.

    Args:
        errors: ``(action, per-frame errors [T])`` pairs, e.g. one per (subject, action,
            camera) sequence from ``mpjpe(..., reduction="none")``. Actions are grouped by
            :func:`canonical_action`.

    Returns:
        ``(per-action mean error, mean over actions)``.
    """
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for action, values in errors:
        if not isinstance(values, Tensor):
            raise TypeError(f"errors of {action!r} must be a tensor, got {type(values).__name__}")
        key = canonical_action(action)
        sums[key] = sums.get(key, 0.0) + float(values.double().sum())
        counts[key] = counts.get(key, 0) + values.numel()
    per_action = {key: sums[key] / counts[key] for key in sorted(sums) if counts[key] > 0}
    if not per_action:
        raise ValueError("errors holds no frames")
    return per_action, sum(per_action.values()) / len(per_action)
