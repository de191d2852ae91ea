"""The Human3.6M 17-joint skeleton used by VideoPose3D, MixSTE and HoT.

Joint order (index: joint)::

    0 pelvis (root)   4 left hip      8 thorax         12 left elbow      16 right wrist
    1 right hip       5 left knee     9 neck/nose      13 left wrist
    2 right knee      6 left ankle   10 head           14 right shoulder
    3 right ankle     7 spine        11 left shoulder  15 right elbow

The raw Human3.6M motion-capture arrays have 32 joints; :data:`H36M_KEPT_JOINTS` lists the 17
of them that remain once the static and duplicate joints are dropped, in the order above.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from torch import Tensor

__all__ = [
    "FLIP_PERMUTATION", "H36M_JOINTS", "H36M_KEPT_JOINTS", "H36M_PARENTS", "JOINTS_LEFT",
    "JOINTS_RIGHT", "NUM_JOINTS", "ROOT", "flip_pose", "reduce_h36m_32",
]  # fmt: skip

H36M_JOINTS = (
    "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "spine", "thorax", "neck_nose", "head", "left_shoulder", "left_elbow", "left_wrist",
    "right_shoulder", "right_elbow", "right_wrist",
)  # fmt: skip
NUM_JOINTS = len(H36M_JOINTS)
#: The root joint (pelvis); root-relative poses subtract it.
ROOT = 0

#: Parent of each joint (-1 for the root): legs hang from the pelvis, arms from the thorax.
H36M_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)

#: The subject's left and right joints (not the image's).
JOINTS_LEFT = (4, 5, 6, 11, 12, 13)
JOINTS_RIGHT = (1, 2, 3, 14, 15, 16)


def _flip_permutation() -> tuple[int, ...]:
    perm = list(range(NUM_JOINTS))
    for left, right in zip(JOINTS_LEFT, JOINTS_RIGHT, strict=True):
        perm[left], perm[right] = right, left
    return tuple(perm)


#: ``flipped[..., j, :] = pose[..., FLIP_PERMUTATION[j], :]`` swaps left and right joints.
FLIP_PERMUTATION = _flip_permutation()

#: Indices, in the 32-joint Human3.6M mocap skeleton, of the 17 joints kept (in 17-joint order).
H36M_KEPT_JOINTS = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)


def reduce_h36m_32(positions: np.ndarray) -> np.ndarray:
    """Keep the 17 joints of a 32-joint Human3.6M mocap array: ``[..., 32, C] -> [..., 17, C]``."""
    if not isinstance(positions, np.ndarray):
        raise TypeError(f"positions must be a numpy array, got {type(positions).__name__}")
    if positions.ndim < 2 or positions.shape[-2] != 32:
        raise ValueError(f"positions must have shape [..., 32, C], got {list(positions.shape)}")
    return positions[..., list(H36M_KEPT_JOINTS), :]


def flip_pose(pose: ArrayT, permutation: tuple[int, ...] = FLIP_PERMUTATION) -> ArrayT:
    """Mirror poses horizontally: negate x and swap left/right joints.

    Works on 2-D screen coordinates (centred on the image, as after normalisation) and on 3-D
    camera coordinates alike. Flipping twice gives the input back.

    Args:
        pose: ``[..., J, C]`` numpy array or tensor, ``C >= 1``, x first.
        permutation: the joint permutation, of length ``J``.

    Returns:
        A new array/tensor of the same shape and type.
    """
    if not isinstance(pose, np.ndarray | Tensor):
        raise TypeError(f"pose must be a numpy array or a tensor, got {type(pose).__name__}")
    if pose.ndim < 2 or pose.shape[-2] != len(permutation) or pose.shape[-1] < 1:
        raise ValueError(
            f"pose must have shape [..., {len(permutation)}, C], got {list(pose.shape)}"
        )
    flipped = pose[..., list(permutation), :]  # advanced indexing copies
    flipped[..., 0] = -flipped[..., 0]
    return flipped
