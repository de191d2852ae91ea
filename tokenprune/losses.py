"""Losses over discrete 1-D distributions (SimCC bins), GTPT's self-distillation, and the
distillation of a pruned student from an unpruned teacher (attention over the student's kept
tokens, token features).

Shapes: logits and targets are ``[B, K, bins]`` per axis (``K`` keypoints); weights ``[B, K]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import (
    check_finite,
    check_floating,
    check_index,
    check_same_device,
    check_tensor,
    check_tensor_sequence,
    check_values,
)

__all__ = [
    "bin_kl_divergence",
    "global_perceived_loss",
    "kept_attention_distillation_loss",
    "keypoint_kl_loss",
    "token_feature_distillation_loss",
]


def bin_kl_divergence(logits: Tensor, target: Tensor) -> Tensor:
    """``KL(target || softmax(logits))`` averaged over the bins of the last axis.

    ``target`` holds (not necessarily normalised) probabilities; zero entries contribute zero,
    also against a ``-inf`` logit.

    Returns:
        ``logits.shape[:-1]``.

    Raises:
        TypeError: ``logits`` or ``target`` is not a floating-point tensor.
        ValueError: they differ in shape or device, have no bin axis or zero bins, or
            ``target`` has an entry that is negative, NaN or infinite.
    """
    logits, target = _check_bins(logits, target)
    _check_target_values("target", target)
    return _bin_kl(logits, target)


def _check_bins(
    logits: object, target: object, logits_name: str = "logits", target_name: str = "target"
) -> tuple[Tensor, Tensor]:
    logits = check_floating(logits_name, logits)
    target = check_floating(target_name, target)
    if logits.shape != target.shape:
        raise ValueError(
            f"{logits_name} and {target_name} must have one shape, got {tuple(logits.shape)} "
            f"and {tuple(target.shape)}"
        )
    check_same_device(**{logits_name: logits, target_name: target})
    if logits.ndim == 0 or logits.shape[-1] == 0:
        raise ValueError(
            f"{logits_name} must have a last (bin) axis with at least one bin, got shape "
            f"{tuple(logits.shape)}"
        )
    return logits, target


def _check_target_values(name: str, target: Tensor) -> None:
    check_finite(name, target)
    if target.numel():
        check_values(~(target < 0).any(), f"{name} must be >= 0 (probabilities)")


def _bin_kl(logits: Tensor, target: Tensor) -> Tensor:
    """:func:`bin_kl_divergence` on validated arguments."""
    # a zero target entry contributes 0, also where the logit is -inf (0 * -inf would be NaN)
    log_probs = F.log_softmax(logits, dim=-1).masked_fill(target == 0, 0.0)
    return (torch.xlogy(target, target) - target * log_probs).mean(dim=-1)


def _check_axes(name: str, value: object) -> list[Tensor]:
    return check_tensor_sequence(name, value, what="axis")


def _check_weight(weight: object, shape: tuple[int, ...], reference: Tensor) -> Tensor:
    weight = check_tensor("weight", weight)
    if weight.is_complex():
        raise TypeError(f"weight must be a real-valued tensor, got {weight.dtype}")
    if tuple(weight.shape) != tuple(shape):
        raise ValueError(f"weight must have shape {tuple(shape)}, got {tuple(weight.shape)}")
    check_same_device(logits=reference, weight=weight)
    check_finite("weight", weight)
    if weight.numel():
        check_values(~(weight < 0).any(), "weight must be >= 0 (keypoint weights)")
    return weight


def _keypoint_kl(
    logits: list[Tensor], targets: list[Tensor], weight: object, check_targets: bool = True
) -> Tensor:
    """:func:`keypoint_kl_loss`; the targets' values are only checked if ``check_targets``."""
    per_keypoint = None
    for axis, (z, y) in enumerate(zip(logits, targets, strict=True)):
        z, y = _check_bins(z, y, f"logits[{axis}]", f"targets[{axis}]")
        if check_targets:
            _check_target_values(f"targets[{axis}]", y)
        if per_keypoint is not None and z.shape[:-1] != per_keypoint.shape:
            raise ValueError(
                f"logits[{axis}] must have the leading shape {tuple(per_keypoint.shape)} of "
                f"logits[0], got {tuple(z.shape)}"
            )
        term = _bin_kl(z, y)
        per_keypoint = term if per_keypoint is None else per_keypoint + term
    assert per_keypoint is not None
    weight = _check_weight(weight, tuple(per_keypoint.shape), logits[0])
    weighted = per_keypoint * weight
    if weighted.numel() == 0:  # no sample or no keypoint: nothing to fit (mean would be NaN)
        return weighted.sum() * 0.0
    return weighted.mean(dim=0).mean()


def keypoint_kl_loss(logits: Sequence[Tensor], targets: Sequence[Tensor], weight: Tensor) -> Tensor:
    """SimCC's KL loss: ``(1/K) sum_k mean_b w[b, k] sum_axes KL_axis[b, k]``.

    Args:
        logits, targets: one ``[B, K, bins]`` tensor per axis (a list or tuple).
        weight: ``[B, K]`` keypoint weights (visibility), finite and non-negative.

    Returns:
        A scalar; 0 when ``B`` or ``K`` is 0.

    Raises:
        TypeError: ``logits`` or ``targets`` is not a list or tuple of floating-point tensors,
            ``weight`` not a real-valued tensor.
        ValueError: the counts of axes differ, shapes or devices disagree, a target entry is
            negative, NaN or infinite, or a weight is negative, NaN or infinite.
    """
    logits = _check_axes("logits", logits)
    targets = _check_axes("targets", targets)
    if len(logits) != len(targets):
        raise ValueError(
            "logits and targets need one tensor per axis each, got "
            f"{len(logits)} and {len(targets)}"
        )
    return _keypoint_kl(logits, targets, weight)


def global_perceived_loss(
    pruned: Sequence[Tensor],
    entire: Sequence[Tensor],
    targets: Sequence[Tensor],
    weight: Tensor,
) -> Tensor:
    """GTPT's Global Perceived loss.

    Both passes (pruned keep rates, and every keep rate 1) fit the targets, and the pruned pass
    also fits the detached softmax of the entire pass (self-distillation with temperature 1)::

        L = KL(y || p_entire) + KL(y || p_pruned) + KL(sg(softmax z_entire) || p_pruned)

    each term as in :func:`keypoint_kl_loss`.

    Args:
        pruned, entire: per-axis logits ``[B, K, bins]`` of the two passes (lists or tuples).
        targets: per-axis targets.
        weight: ``[B, K]``.

    Raises:
        TypeError: ``pruned``, ``entire`` or ``targets`` is not a list or tuple of
            floating-point tensors, ``weight`` not a real-valued tensor.
        ValueError: as :func:`keypoint_kl_loss`, or the three differ in their number of axes.
    """
    pruned = _check_axes("pruned", pruned)
    entire = _check_axes("entire", entire)
    targets = _check_axes("targets", targets)
    if not len(pruned) == len(entire) == len(targets):
        raise ValueError(
            "pruned, entire and targets need one tensor per axis each, got "
            f"{len(pruned)}, {len(entire)} and {len(targets)}"
        )
    for axis, (p, e) in enumerate(zip(pruned, entire, strict=True)):
        check_floating(f"entire[{axis}]", e)
        if p.shape != e.shape:
            raise ValueError(
                f"pruned[{axis}] and entire[{axis}] must have one shape, got "
                f"{tuple(p.shape)} and {tuple(e.shape)}"
            )
    teacher = [torch.softmax(z.detach(), dim=-1) for z in entire]
    # The teacher derives from the entire pass's logits: a NaN there shows in the loss already.
    return (
        _keypoint_kl(entire, targets, weight)
        + _keypoint_kl(pruned, targets, weight)
        + _keypoint_kl(pruned, teacher, weight, check_targets=False)
    )


def kept_attention_distillation_loss(
    student_logits: Tensor, teacher_logits: Tensor, kept: Tensor
) -> Tensor:
    """Attention distillation of a pruned student: ``KL(teacher || student)`` per query row,
    with the teacher's row restricted to the tokens the student still has.

    The student attends over ``n`` tokens, the teacher over all ``N``; column ``i`` of the
    student is token ``kept[b, i]`` of the teacher. Restricting the teacher's attention to
    those columns and renormalising it (mass on pruned tokens is something the student cannot
    match) is a softmax over the teacher's logits at the kept columns::

        p_T = softmax(teacher_logits[..., kept]),  p_S = softmax(student_logits)
        loss = mean over b, h, q of  sum_i p_T[i] * (log p_T[i] - log p_S[i])

    The teacher is used as given: detach it (or run it under ``no_grad``) to train only the
    student.

    Args:
        student_logits: ``[B, H, Q, n]`` pre-softmax logits of the student's query rows over the
            tokens it kept (other columns, e.g. the queries' own tokens, left out).
        teacher_logits: ``[B, H, Q, N]`` the teacher's logits of the same queries over all
            tokens.
        kept: ``[B, n]`` int64 indices into ``N`` (distinct within a row).

    ``-inf`` logits (masked keys) are allowed: a column the teacher gives ``-inf`` contributes
    nothing, a row without any finite teacher logit contributes 0, and a column the teacher
    weighs but the student gives ``-inf`` makes the loss ``+inf``.

    Returns:
        A scalar; 0 when ``n == 1`` (both distributions are one-hot) and for empty inputs.

    Raises:
        TypeError: the logits are not floating-point tensors, ``kept`` not an integer tensor.
        ValueError: shapes or devices disagree, or ``kept`` has an index out of range or
            twice in a row.
    """
    student_logits = check_floating("student_logits", student_logits, ndim=4)
    teacher_logits = check_floating("teacher_logits", teacher_logits, ndim=4)
    kept = check_index("kept", kept)
    check_same_device(student_logits=student_logits, teacher_logits=teacher_logits, kept=kept)
    batch, heads, queries, num_kept = student_logits.shape
    if teacher_logits.shape[:3] != student_logits.shape[:3]:
        raise ValueError(
            "teacher_logits must be [B, H, Q, N] with the student's B, H and Q "
            f"{(batch, heads, queries)}, got {tuple(teacher_logits.shape)}"
        )
    if tuple(kept.shape) != (batch, num_kept):
        raise ValueError(
            f"kept must have shape {(batch, num_kept)} (student's B and n), got {tuple(kept.shape)}"
        )
    num_tokens = teacher_logits.shape[-1]
    if num_kept > num_tokens:
        raise ValueError(f"the student keeps {num_kept} tokens but the teacher has {num_tokens}")
    if kept.numel():
        check_values(
            (kept >= 0).all() & (kept < num_tokens).all(),
            lambda: (
                f"kept must index [0, {num_tokens}), got values in "
                f"[{int(kept.min())}, {int(kept.max())}]"
            ),
        )
        ordered = kept.sort(dim=-1).values
        check_values(
            (ordered[:, 1:] != ordered[:, :-1]).all(),
            "kept must hold distinct indices within a row (a token the student kept once)",
        )
    if student_logits.numel() == 0:
        return student_logits.sum() * 0.0
    index = kept[:, None, None, :].expand(batch, heads, queries, num_kept)
    teacher = _masked_log_softmax(teacher_logits.gather(-1, index).float())
    student = _masked_log_softmax(student_logits.float())
    # KL(p_T || p_S) = sum_i p_T[i] (log p_T[i] - log p_S[i]), with 0 where p_T[i] = 0 (a
    # -inf teacher logit), which F.kl_div would turn into 0 * -inf = NaN.
    weighs = teacher != float("-inf")
    safe_teacher = teacher.masked_fill(~weighs, 0.0)
    terms = safe_teacher.exp() * (safe_teacher - student.masked_fill(~weighs, 0.0))
    kl = terms.masked_fill(~weighs, 0.0).sum(dim=-1)
    return kl.mean().to(student_logits.dtype)


def _masked_log_softmax(logits: Tensor) -> Tensor:
    """``log_softmax`` over the last axis where ``-inf`` logits (masked keys) give ``-inf`` and
    a row of only ``-inf`` gives ``-inf`` throughout (not NaN), with NaN-free gradients."""
    masked = logits == float("-inf")
    filled = logits.masked_fill(masked, torch.finfo(logits.dtype).min)
    return F.log_softmax(filled, dim=-1).masked_fill(masked, float("-inf"))


def token_feature_distillation_loss(
    student_tokens: Sequence[Tensor], teacher_tokens: Sequence[Tensor]
) -> Tensor:
    """Feature distillation of tokens both networks have (e.g. keypoint tokens):
    ``(1 / (L B J)) sum_l sum_b sum_j ||s_lbj - t_lbj||^2``, the squared distance per token
    averaged over tokens, batch and the ``L`` recorded layers.

    Args:
        student_tokens, teacher_tokens: one ``[B, J, D]`` tensor per recorded layer each (the
            teacher as given: detach it to train only the student), in lists or tuples.

    Returns:
        A scalar; a layer with ``B = 0`` or ``J = 0`` contributes 0.

    Raises:
        TypeError: an argument is not a list or tuple of floating-point tensors.
        ValueError: the layer counts differ or are 0, or a layer's shapes or devices differ.
    """
    for name, value in (("student_tokens", student_tokens), ("teacher_tokens", teacher_tokens)):
        if not isinstance(value, (list, tuple)):
            raise TypeError(
                f"{name} must be a list or tuple of tensors (one [B, J, D] tensor per layer), "
                f"got {type(value).__name__}"
            )
    if len(student_tokens) != len(teacher_tokens) or not student_tokens:
        raise ValueError(
            "student_tokens and teacher_tokens need one [B, J, D] tensor per layer each, got "
            f"{len(student_tokens)} and {len(teacher_tokens)}"
        )
    total = 0.0
    for layer, (student, teacher) in enumerate(zip(student_tokens, teacher_tokens, strict=True)):
        student = check_floating(f"student_tokens[{layer}]", student, ndim=3)
        teacher = check_floating(f"teacher_tokens[{layer}]", teacher, ndim=3)
        if student.shape != teacher.shape:
            raise ValueError(
                f"layer {layer}: student tokens {tuple(student.shape)} and teacher tokens "
                f"{tuple(teacher.shape)} differ in shape"
            )
        check_same_device(
            **{f"student_tokens[{layer}]": student, f"teacher_tokens[{layer}]": teacher}
        )
        squared = (student - teacher).pow(2).sum(dim=-1)
        # no sample or no token: this layer contributes 0 (a mean over nothing would be NaN)
        total = total + (squared.mean() if squared.numel() else squared.sum())
    return total / len(student_tokens)
