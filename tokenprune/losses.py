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

from ._validation import check_floating, check_index, check_values

__all__ = [
    "bin_kl_divergence",
    "global_perceived_loss",
    "kept_attention_distillation_loss",
    "keypoint_kl_loss",
    "token_feature_distillation_loss",
]


def bin_kl_divergence(logits: Tensor, target: Tensor) -> Tensor:
    """``KL(target || softmax(logits))`` averaged over the bins of the last axis.

    ``target`` holds (not necessarily normalised) probabilities; zero entries contribute zero.

    Returns:
        ``logits.shape[:-1]``.
    """
    logits = check_floating("logits", logits)
    target = check_floating("target", target)
    if logits.shape != target.shape:
        raise ValueError(
            f"logits and target must have one shape, got {tuple(logits.shape)} and "
            f"{tuple(target.shape)}"
        )
    log_probs = F.log_softmax(logits, dim=-1)
    return (torch.xlogy(target, target) - target * log_probs).mean(dim=-1)


def keypoint_kl_loss(logits: Sequence[Tensor], targets: Sequence[Tensor], weight: Tensor) -> Tensor:
    """SimCC's KL loss: ``(1/K) sum_k mean_b w[b, k] sum_axes KL_axis[b, k]``.

    Args:
        logits, targets: one ``[B, K, bins]`` tensor per axis.
        weight: ``[B, K]`` keypoint weights (visibility).
    """
    if len(logits) != len(targets) or not logits:
        raise ValueError("logits and targets need one tensor per axis each")
    per_keypoint = sum(bin_kl_divergence(z, y) for z, y in zip(logits, targets, strict=True))
    if tuple(weight.shape) != tuple(per_keypoint.shape):
        raise ValueError(
            f"weight must have shape {tuple(per_keypoint.shape)}, got {tuple(weight.shape)}"
        )
    return (per_keypoint * weight).mean(dim=0).mean()


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
        pruned, entire: per-axis logits ``[B, K, bins]`` of the two passes.
        targets: per-axis targets.
        weight: ``[B, K]``.
    """
    teacher = [torch.softmax(z.detach(), dim=-1) for z in entire]
    return (
        keypoint_kl_loss(entire, targets, weight)
        + keypoint_kl_loss(pruned, targets, weight)
        + keypoint_kl_loss(pruned, teacher, weight)
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

    Returns:
        A scalar; 0 when ``n == 1`` (both distributions are one-hot) and for empty inputs.
    """
    student_logits = check_floating("student_logits", student_logits, ndim=4)
    teacher_logits = check_floating("teacher_logits", teacher_logits, ndim=4)
    kept = check_index("kept", kept)
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
    if student_logits.numel() == 0:
        return student_logits.sum() * 0.0
    index = kept[:, None, None, :].expand(batch, heads, queries, num_kept)
    teacher = F.log_softmax(teacher_logits.gather(-1, index).float(), dim=-1)
    student = F.log_softmax(student_logits.float(), dim=-1)
    kl = F.kl_div(student, teacher, log_target=True, reduction="none").sum(dim=-1)
    return kl.mean().to(student_logits.dtype)


def token_feature_distillation_loss(
    student_tokens: Sequence[Tensor], teacher_tokens: Sequence[Tensor]
) -> Tensor:
    """Feature distillation of tokens both networks have (e.g. keypoint tokens):
    ``(1 / (L B J)) sum_l sum_b sum_j ||s_lbj - t_lbj||^2``, the squared distance per token
    averaged over tokens, batch and the ``L`` recorded layers.

    Args:
        student_tokens, teacher_tokens: one ``[B, J, D]`` tensor per recorded layer each (the
            teacher as given: detach it to train only the student).
    """
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
        total = total + (student - teacher).pow(2).sum(dim=-1).mean()
    return total / len(student_tokens)
