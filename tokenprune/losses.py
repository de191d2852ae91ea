"""Distillation of a pruned student from an unpruned teacher: attention over the student's
kept tokens (:func:`kept_attention_distillation_loss`) and token features
(:func:`token_feature_distillation_loss`). (SimCC's KL losses and GTPT's Global Perceived loss
are with the SimCC codec, ``tokenprune_models.common.simcc``.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import check_floating, check_index, check_same_device, check_values

__all__ = ["kept_attention_distillation_loss", "token_feature_distillation_loss"]


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
