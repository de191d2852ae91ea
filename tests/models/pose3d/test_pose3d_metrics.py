"""tokenprune_models.pose3d.metrics: MPJPE, P-MPJPE (against Horn's method), action averages."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tokenprune_models.pose3d.camera import (
    quaternion_to_matrix,
)  # fmt: skip
from tokenprune_models.pose3d.metrics import (
    action_average,
    canonical_action,
    mpjpe,
    p_mpjpe,
    procrustes_align,
    root_relative,
)  # fmt: skip


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def horn_p_mpjpe(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Reference P-MPJPE per pose ``[N]`` by Horn's quaternion method (no SVD, rotations only)."""
    out = []
    for p, t in zip(pred, target, strict=True):
        p0, t0 = p - p.mean(0), t - t.mean(0)
        s = p0.T @ t0
        (xx, xy, xz), (yx, yy, yz), (zx, zy, zz) = s
        n = np.array([
            [xx + yy + zz, yz - zy, zx - xz, xy - yx],
            [yz - zy, xx - yy - zz, xy + yx, zx + xz],
            [zx - xz, xy + yx, -xx + yy - zz, yz + zy],
            [xy - yx, zx + xz, yz + zy, -xx - yy + zz],
        ])  # fmt: skip
        values, vectors = np.linalg.eigh(n)
        rotation = quaternion_to_matrix(vectors[:, np.argmax(values)])
        rotated = p0 @ rotation.T
        scale = (rotated * t0).sum() / (p0**2).sum()
        out.append(np.linalg.norm(scale * rotated - t0, axis=-1).mean())
    return np.array(out)

# ------------------------------------------------------------------------------ metrics


@given(seed=st.integers(0, 2**16), lead=st.lists(st.integers(1, 4), max_size=2),
       joints=st.integers(1, 20))  # fmt: skip
def test_mpjpe_of_a_translated_copy_is_the_translation_norm(seed, lead, joints):
    rng = np.random.default_rng(seed)
    target = torch.from_numpy(rng.normal(size=(*lead, joints, 3)))
    shift = torch.from_numpy(rng.normal(size=3))
    assert mpjpe(target + shift, target).item() == pytest.approx(shift.norm().item(), rel=1e-9)
    per_pose = mpjpe(target + shift, target, reduction="none")
    assert per_pose.shape == tuple(lead) and per_pose.dtype == torch.float64


def test_mpjpe_known_value():
    target = torch.zeros(2, 4, 3)
    pred = target.clone()
    pred[0, 1] = torch.tensor([3.0, 4.0, 0.0])  # one joint 5 away in frame 0
    assert torch.allclose(mpjpe(pred, target, reduction="none"), torch.tensor([1.25, 0.0]))
    assert mpjpe(pred, target).item() == pytest.approx(0.625)


@given(seed=st.integers(0, 2**16), frames=st.integers(1, 5), joints=st.integers(4, 20))
def test_p_mpjpe_removes_rotation_scale_and_translation(seed, frames, joints):
    rng = np.random.default_rng(seed)
    target = rng.normal(size=(frames, joints, 3))
    pred = np.stack([
        rng.uniform(0.2, 5.0) * pose @ random_rotation(rng) + rng.normal(size=3) * 10
        for pose in target
    ])  # fmt: skip
    pred_t, target_t = torch.from_numpy(pred), torch.from_numpy(target)
    assert p_mpjpe(pred_t, target_t).item() < 1e-9
    assert torch.allclose(procrustes_align(pred_t, target_t), target_t, atol=1e-9)
    assert mpjpe(pred_t, target_t).item() > 1e-3  # the plain error sees the transform


@given(seed=st.integers(0, 2**16), frames=st.integers(1, 4), joints=st.integers(3, 17))
def test_p_mpjpe_matches_horn_reference_and_is_least_squares_optimal(seed, frames, joints):
    rng = np.random.default_rng(seed)
    pred, target = rng.normal(size=(2, frames, joints, 3))
    pred_t, target_t = torch.from_numpy(pred), torch.from_numpy(target)
    errors = p_mpjpe(pred_t, target_t, reduction="none")
    assert np.allclose(errors.numpy(), horn_p_mpjpe(pred, target), rtol=1e-6, atol=1e-9)
    # the alignment never has larger squared error than no alignment or another similarity
    aligned = procrustes_align(pred_t, target_t)
    best = (aligned - target_t).square().sum((-2, -1))
    other = 1.3 * pred_t @ torch.from_numpy(random_rotation(rng)) + 0.1
    assert (best <= (pred_t - target_t).square().sum((-2, -1)) + 1e-9).all()
    assert (best <= (other - target_t).square().sum((-2, -1)) + 1e-9).all()


def test_p_mpjpe_does_not_undo_a_reflection():
    rng = np.random.default_rng(1)
    target = torch.from_numpy(rng.normal(size=(3, 17, 3)))
    mirrored = target * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    aligned = procrustes_align(mirrored, target)
    assert p_mpjpe(mirrored, target).item() > 0.1
    # the fitted transforms are proper rotations: the aligned pose keeps its handedness
    def volume(x):
        return torch.linalg.det(x[..., 1:4, :] - x[..., :1, :])
    assert (torch.sign(volume(aligned)) == torch.sign(volume(mirrored))).all()


def test_metrics_dtypes():
    rng = np.random.default_rng(2)
    pred, target = (torch.from_numpy(rng.normal(size=(4, 17, 3))) for _ in range(2))
    assert p_mpjpe(pred, target).dtype == torch.float64
    assert p_mpjpe(pred.float(), target.float()).dtype == torch.float32
    half = p_mpjpe(pred.half(), target.half())
    assert half.dtype == torch.float32 and math.isfinite(half.item())
    assert mpjpe(pred.float(), target).dtype == torch.float64  # promoted


def test_metrics_reject_bad_inputs():
    good = torch.zeros(4, 17, 3)
    with pytest.raises(ValueError, match=r"pred and target must have the same shape"):
        mpjpe(good, torch.zeros(4, 16, 3))
    with pytest.raises(ValueError, match=r"pred must have shape \[\.\.\., J, 3\]"):
        p_mpjpe(torch.zeros(4, 17, 2), good)
    with pytest.raises(ValueError, match=r"target must have shape"):
        mpjpe(good, torch.zeros(3))
    with pytest.raises(TypeError, match=r"pred must be a torch\.Tensor"):
        mpjpe(np.zeros((4, 17, 3)), good)
    with pytest.raises(TypeError, match="target must be a floating-point tensor"):
        mpjpe(good, torch.zeros(4, 17, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="reduction must be"):
        mpjpe(good, good, reduction="sum")


def test_root_relative():
    poses = torch.randn(2, 5, 17, 3)
    out = root_relative(poses)
    assert (out[..., 0, :] == 0).all()
    assert torch.allclose(out[..., 3, :] - out[..., 2, :], poses[..., 3, :] - poses[..., 2, :])
    assert (root_relative(poses, root=-1)[..., 16, :] == 0).all()
    with pytest.raises(ValueError, match="root must index one of the 17 joints"):
        root_relative(poses, root=17)
    with pytest.raises(TypeError, match=r"poses must be a torch\.Tensor"):
        root_relative(poses.numpy())


def test_action_average_pools_frames_then_averages_actions():
    errors = [("Walking 1", torch.tensor([1.0, 3.0])), ("Walking", torch.tensor([5.0])),
              ("Eating", torch.tensor([10.0]))]  # fmt: skip
    per_action, mean = action_average(errors)
    # frames pooled: (1 + 3 + 5) / 3 (not the mean of the sequence means, 3.5)
    assert per_action == {"Eating": 10.0, "Walking": 3.0}
    assert mean == pytest.approx(6.5)
    assert canonical_action("Photo 1") == "Photo"
    with pytest.raises(ValueError, match="no frames"):
        action_average([])
