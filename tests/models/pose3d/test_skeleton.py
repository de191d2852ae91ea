"""tokenprune_models.pose3d.skeleton: the Human3.6M skeletons and flipping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tokenprune_models.pose3d.skeleton import (
    FLIP_PERMUTATION,
    H36M_KEPT_JOINTS,
    H36M_PARENTS,
    JOINTS_LEFT,
    JOINTS_RIGHT,
    flip_pose,
    reduce_h36m_32,
)  # fmt: skip

# Reference facts: the 32-joint Human3.6M mocap skeleton's parents and its left/right joints.
PARENTS_32 = (-1, 0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 0, 11, 12, 13, 14, 12, 16, 17, 18, 19, 20, 19,
              22, 12, 24, 25, 26, 27, 28, 27, 30)  # fmt: skip
LEFT_32 = {6, 7, 8, 9, 10, 16, 17, 18, 19, 20, 21, 22, 23}
RIGHT_32 = {1, 2, 3, 4, 5, 24, 25, 26, 27, 28, 29, 30, 31}

# ----------------------------------------------------------------------------- skeleton


def test_skeleton_matches_the_32_joint_mocap_tree():
    assert len(H36M_PARENTS) == len(H36M_KEPT_JOINTS) == 17 and H36M_PARENTS[0] == -1
    for joint, parent in enumerate(H36M_PARENTS[1:], start=1):
        assert 0 <= parent < joint  # parents come first
        # the 17-joint parent is an ancestor of the joint in the 32-joint tree, except for the
        # shoulders: the mocap tree hangs them from the spine (7) via dropped joints, the
        # 17-joint skeleton from the thorax (8)
        if joint in (11, 14):
            assert parent == 8
            parent = 7
        ancestor, wanted = PARENTS_32[H36M_KEPT_JOINTS[joint]], H36M_KEPT_JOINTS[parent]
        while ancestor not in (wanted, -1):
            ancestor = PARENTS_32[ancestor]
        assert ancestor == wanted, joint
    assert {H36M_KEPT_JOINTS[j] for j in JOINTS_LEFT} <= LEFT_32
    assert {H36M_KEPT_JOINTS[j] for j in JOINTS_RIGHT} <= RIGHT_32
    # the arms hang from the thorax (8), the legs from the pelvis
    assert [H36M_PARENTS[j] for j in (11, 14, 1, 4)] == [8, 8, 0, 0]


def test_flip_permutation_swaps_sides():
    perm = np.array(FLIP_PERMUTATION)
    assert (perm[perm] == np.arange(17)).all()
    assert [perm[j] for j in JOINTS_LEFT] == list(JOINTS_RIGHT)
    centre = [j for j in range(17) if j not in JOINTS_LEFT + JOINTS_RIGHT]
    assert centre == [0, 7, 8, 9, 10] and (perm[centre] == centre).all()


def test_reduce_h36m_32():
    poses = np.random.default_rng(0).normal(size=(5, 32, 3))
    reduced = reduce_h36m_32(poses)
    assert reduced.shape == (5, 17, 3)
    assert np.array_equal(reduced[:, 9], poses[:, 14])  # neck/nose is mocap joint 14
    with pytest.raises(ValueError, match=r"positions must have shape \[\.\.\., 32, C\]"):
        reduce_h36m_32(poses[:, :17])


@given(seed=st.integers(0, 2**16), dims=st.sampled_from([2, 3]), lead=st.integers(0, 2),
       as_tensor=st.booleans())  # fmt: skip
def test_flip_twice_is_identity(seed, dims, lead, as_tensor):
    pose = np.random.default_rng(seed).normal(size=(*[3] * lead, 17, dims))
    x = torch.from_numpy(pose) if as_tensor else pose
    once = flip_pose(x)
    assert type(once) is type(x) and once.shape == x.shape
    once_np = np.asarray(once)
    assert np.array_equal(once_np[..., 0, 0], -pose[..., 0, 0])  # pelvis: x negated
    assert np.array_equal(once_np[..., 4, 1:], pose[..., 1, 1:])  # left hip <- right hip
    assert np.array_equal(np.asarray(flip_pose(once)), pose)
    assert np.array_equal(np.asarray(x), pose)  # input untouched


def test_flip_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"pose must have shape \[\.\.\., 17, C\]"):
        flip_pose(np.zeros((4, 16, 3)))
    with pytest.raises(TypeError, match="pose must be a numpy array or a tensor"):
        flip_pose([[0.0] * 3] * 17)
