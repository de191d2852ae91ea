"""Evaluation of 3-D lifting models: whole sequences in, MPJPE and P-MPJPE (mm) out."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..pose3d.h36m import PoseSequence
from ..pose3d.metrics import action_average, mpjpe, p_mpjpe
from ..pose3d.skeleton import flip_pose
from .model import MixSTE

__all__ = ["evaluate", "predict_clips", "predict_sequence", "score_sequences"]


def predict_clips(model: MixSTE, clips: Tensor, flip: bool) -> tuple[Tensor, Tensor | None]:
    """Poses of a batch of clips ``[B, F, J, 2]``: ``([B, F or num_kept, J, 3], kept frames)``,
    averaged with the mirrored clip's when ``flip``. The seq2frame model reuses the unflipped
    clip's frames for the mirrored one, as HoT does; seq2seq models cluster each on its own."""
    out = model(clips)
    if not flip:
        return out.poses, out.kept_idx
    reuse = out.kept_idx if model.recovery is None else None
    mirrored = model(flip_pose(clips), kept_idx=reuse).poses
    return (out.poses + flip_pose(mirrored)) / 2, out.kept_idx


def _edge_pad(frames: Tensor, before: int, after: int) -> Tensor:
    """Repeat the first / last frame of ``[T, ...]`` ``before`` / ``after`` times."""
    return torch.cat([frames[:1].expand(before, *frames.shape[1:]), frames,
                      frames[-1:].expand(after, *frames.shape[1:])])  # fmt: skip


@torch.no_grad()
def predict_sequence(
    model: MixSTE, inputs: Tensor, flip: bool = True, batch_size: int = 64
) -> Tensor:
    """Root-relative poses ``[T, J, 3]`` of a whole sequence ``inputs [T, J, 2]``, computed on
    the model's device and returned on the CPU.

    A seq2seq model reads consecutive clips of ``F`` frames; the last clip ends at the last
    frame (overlapping the one before; a sequence shorter than ``F`` is edge-padded). A
    seq2frame model predicts every frame as the centre of its own clip, the sequence
    edge-padded by half a clip on both sides. The root joint is set to 0, as in the targets.
    """
    model.eval()
    inputs = inputs.to(next((p.device for p in model.parameters()), inputs.device))
    frames, length = model.config.num_frames, len(inputs)
    seq2frame = model.cluster is not None and model.recovery is None
    out = inputs.new_full((length, inputs.shape[1], 3), float("nan"))
    if seq2frame:
        centre = (frames - 1) // 2
        padded = _edge_pad(inputs, centre, frames - 1 - centre)
        for first in range(0, length, batch_size):
            starts = range(first, min(first + batch_size, length))
            poses, kept = predict_clips(model, torch.stack([padded[s:s + frames] for s in starts]),
                                        flip)  # fmt: skip
            slots = (kept == centre).int().argmax(dim=1)  # the centre frame is always kept
            out[first:first + len(starts)] = poses[torch.arange(len(starts)), slots]
    else:
        padded = _edge_pad(inputs, 0, max(frames - length, 0))
        starts = list(range(0, len(padded) - frames + 1, frames))
        if starts[-1] + frames < len(padded):
            starts.append(len(padded) - frames)
        for first in range(0, len(starts), batch_size):
            batch = starts[first:first + batch_size]
            poses, _ = predict_clips(model, torch.stack([padded[s:s + frames] for s in batch]),
                                     flip)  # fmt: skip
            for clip, start in zip(poses, batch, strict=True):
                end = min(start + frames, length)
                new = out[start:end].isnan().any(dim=(1, 2))  # frames no earlier clip covered
                out[start:end][new] = clip[: end - start][new]
    out[:, 0] = 0.0
    return out.cpu()


@torch.no_grad()
def evaluate(model: MixSTE, sequences: Sequence[PoseSequence], flip: bool = True,
             batch_size: int = 64) -> dict:  # fmt: skip
    """Protocol #1 and #2 errors of ``model`` on ``sequences``, every frame scored.

    Returns:
        ``{"MPJPE": mm, "P-MPJPE": mm, "per_action": {action: MPJPE mm}}``: frames pooled per
        action, then averaged over actions.
    """
    predictions = [predict_sequence(model, torch.from_numpy(s.inputs_2d), flip, batch_size)
                   for s in sequences]  # fmt: skip
    return score_sequences(predictions, sequences)


def score_sequences(predictions: Sequence[Tensor], sequences: Sequence[PoseSequence]) -> dict:
    """MPJPE / P-MPJPE (mm) of root-relative ``predictions`` (``[T, J, 3]`` per sequence), in
    the format of :func:`evaluate`."""
    errors, aligned = [], []
    for pred, sequence in zip(predictions, sequences, strict=True):
        truth = torch.from_numpy(sequence.targets_3d)
        errors.append((sequence.action, mpjpe(pred, truth, "none") * 1000))
        aligned.append((sequence.action, p_mpjpe(pred, truth, "none") * 1000))
    per_action, mean = action_average(errors)
    return {"MPJPE": mean, "P-MPJPE": action_average(aligned)[1], "per_action": per_action}
