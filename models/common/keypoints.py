"""Keypoint sets: names of the layouts, left/right flip pairs and OKS sigmas."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from tokenprune.checks import check_floating

COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip

#: Left/right pairs of COCO's 17 body keypoints.
COCO_FLIP_PAIRS = tuple((i, i + 1) for i in range(1, 17, 2))


def _face_flip_pairs() -> list[tuple[int, int]]:
    """Mirror pairs of the 68-point face layout (0-based within the face)."""
    pairs = [(i, 16 - i) for i in range(8)]  # jaw line
    pairs += [(17 + i, 26 - i) for i in range(5)]  # eyebrows
    pairs += [(31, 35), (32, 34)]  # nostrils
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]  # outer lips
    pairs += [(60, 64), (61, 63), (65, 67)]  # inner lips
    return pairs


#: COCO-WholeBody layout: 0-16 body, 17-22 feet, 23-90 face, 91-111 left hand, 112-132 right.
WHOLEBODY_PARTS = {
    "body": range(0, 17),
    "foot": range(17, 23),
    "face": range(23, 91),
    "left_hand": range(91, 112),
    "right_hand": range(112, 133),
}

#: Left/right pairs of the 133 COCO-WholeBody keypoints.
WHOLEBODY_FLIP_PAIRS = (
    COCO_FLIP_PAIRS
    + tuple((17 + i, 20 + i) for i in range(3))
    + tuple((23 + a, 23 + b) for a, b in _face_flip_pairs())
    + tuple((91 + i, 112 + i) for i in range(21))
)

#: COCO's per-keypoint OKS sigmas.
COCO_SIGMAS = (
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
    0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089,
)  # fmt: skip


def flip_permutation(num_keypoints: int, pairs: Sequence[tuple[int, int]]) -> list[int]:
    """``perm[i]``: the keypoint that keypoint ``i`` becomes in a horizontally flipped image
    (``pairs``: left/right pairs, e.g. :data:`COCO_FLIP_PAIRS`). Every flip of keypoints (data
    augmentation, the flip test) uses it.

    Raises:
        ValueError: a pair names a keypoint outside ``[0, num_keypoints)``.
    """
    perm = list(range(num_keypoints))
    for a, b in pairs:
        if not (0 <= a < num_keypoints and 0 <= b < num_keypoints):
            raise ValueError(f"flip pair {(a, b)} is out of range for {num_keypoints} keypoints")
        perm[a], perm[b] = b, a
    return perm


#: COCO-WholeBody's per-keypoint OKS sigmas (body 17, feet 6, face 68, hands 2 x 21).
WHOLEBODY_SIGMAS = (
    *COCO_SIGMAS,
    0.068, 0.066, 0.066, 0.092, 0.094, 0.094,
    0.042, 0.043, 0.044, 0.043, 0.040, 0.035, 0.031, 0.025, 0.020, 0.023, 0.029, 0.032, 0.037,
    0.038, 0.043, 0.041, 0.045, 0.013, 0.012, 0.011, 0.011, 0.012, 0.012, 0.011, 0.011, 0.013,
    0.015, 0.009, 0.007, 0.007, 0.007, 0.012, 0.009, 0.008, 0.016, 0.010, 0.017, 0.011, 0.009,
    0.011, 0.009, 0.007, 0.013, 0.008, 0.011, 0.012, 0.010, 0.034, 0.008, 0.008, 0.009, 0.008,
    0.008, 0.007, 0.010, 0.008, 0.009, 0.009, 0.009, 0.007, 0.007, 0.008, 0.011, 0.008, 0.008,
    0.008, 0.010, 0.008,
    0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024, 0.022, 0.026,
    0.017, 0.021, 0.021, 0.032, 0.020, 0.019, 0.022, 0.031,
    0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024, 0.022, 0.026,
    0.017, 0.021, 0.021, 0.032, 0.020, 0.019, 0.022, 0.031,
)  # fmt: skip


def check_keypoint_inputs(keypoints: object, visible: object) -> Tensor:
    """Require ``keypoints [B, K, 2]`` (floating) and ``visible`` of shape ``[B, K]``; returns
    the keypoints."""
    keypoints = check_floating("keypoints", keypoints, ndim=3)
    if keypoints.shape[-1] != 2:
        raise ValueError(f"keypoints must be [B, K, 2], got {tuple(keypoints.shape)}")
    if tuple(getattr(visible, "shape", ())) != tuple(keypoints.shape[:2]):
        raise ValueError(
            f"visible must have shape {tuple(keypoints.shape[:2])}, "
            f"got {tuple(getattr(visible, 'shape', ()))}"
        )
    return keypoints
