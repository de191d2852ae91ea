"""Synthetic 3-D human motion in the Human3.6M npz layout: the embedded default data set.

Each subject is an articulated 17-joint skeleton (:mod:`.skeleton`) with adult bone lengths,
scaled per subject. Each action drives the joint angles with smooth signals (a few sinusoids
of random frequency and phase per angle on top of the action's pattern: walking on a circle
with swinging legs and arms, waving, squatting, turning on the spot), places the feet on the
ground and moves the body along a path. Four cameras with Human3.6M's intrinsics stand around
the capture area and project the joints to pixels; the "detections" add Gaussian noise of a few
pixels. Everything is deterministic given the seed.

Written files (see :mod:`.h36m`): ``data_3d_<name>.npz`` (17-joint world positions, metres),
``data_2d_<name>_gt.npz`` (exact projections) and ``data_2d_<name>_<detector>.npz`` (noisy);
both 2-D files carry the ``cameras`` entry.

    python -m tokenprune_models.pose3d.synthetic --output data/synthetic3d
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common.atomic import atomic_path
from ..common.cli import HelpFormatter, float_at_least, int_at_least
from .camera import Camera, matrix_to_quaternion
from .h36m import TEST_SUBJECTS, TRAIN_SUBJECTS, h36m_cameras
from .skeleton import H36M_PARENTS, JOINTS_LEFT, JOINTS_RIGHT, NUM_JOINTS

__all__ = [
    "ACTIONS", "SUBJECTS", "SyntheticData", "generate_dataset", "generate_motion",
    "look_at_camera", "skeleton_offsets", "write_dataset",
]  # fmt: skip

SUBJECTS = TRAIN_SUBJECTS + TEST_SUBJECTS
ACTIONS = ("Walking", "Waving", "Squatting", "Turning")
FPS = 50.0
ANKLE_HEIGHT = 0.08  # metres above the floor

# Offset of each joint from its parent for a 1.75 m adult in the body frame (x: the subject's
# right, y: forward, z: up), metres. The root's offset is unused.
_REST_OFFSETS = np.array([
    [0.0, 0.0, 0.0],                                           # pelvis
    [0.13, 0.0, 0.0], [0.0, 0.0, -0.45], [0.0, 0.0, -0.44],    # right leg
    [-0.13, 0.0, 0.0], [0.0, 0.0, -0.45], [0.0, 0.0, -0.44],   # left leg
    [0.0, 0.01, 0.23], [0.0, 0.0, 0.25],                       # spine, thorax
    [0.0, 0.04, 0.10], [0.0, -0.03, 0.12],                     # neck/nose, head
    [-0.14, 0.0, -0.03], [0.0, 0.0, -0.28], [0.0, 0.0, -0.25],  # left arm
    [0.14, 0.0, -0.03], [0.0, 0.0, -0.28], [0.0, 0.0, -0.25],   # right arm
])  # fmt: skip

# Joints whose rotation moves a bone (their children hang from them); end joints have none.
_MOVABLE = (0, 1, 2, 4, 5, 7, 8, 9, 11, 12, 14, 15)
# +1 for the subject's right side, -1 for the left (abduction signs differ).
_SIDE = {1: 1.0, 2: 1.0, 14: 1.0, 15: 1.0, 4: -1.0, 5: -1.0, 11: -1.0, 12: -1.0}
R_HIP, R_KNEE, L_HIP, L_KNEE, SPINE, THORAX, NECK = 1, 2, 4, 5, 7, 8, 9
L_SHOULDER, L_ELBOW, R_SHOULDER, R_ELBOW = 11, 12, 14, 15


def skeleton_offsets(rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """Bone offsets ``[17, 3]`` of one subject: the adult template times ``scale``, each
    left/right bone pair jittered by up to 4 % (symmetrically)."""
    offsets = _REST_OFFSETS * scale
    jitter = rng.uniform(0.96, 1.04, NUM_JOINTS)
    for left, right in zip(JOINTS_LEFT, JOINTS_RIGHT, strict=True):
        jitter[left] = jitter[right]
    return offsets * jitter[:, None]


def _rotations(angles: np.ndarray) -> np.ndarray:
    """``Rz(c) Ry(b) Rx(a)`` for angles ``[..., 3] = (a, b, c)``: ``[..., 3, 3]``."""
    a, b, c = np.moveaxis(angles, -1, 0)
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    one, zero = np.ones_like(a), np.zeros_like(a)
    rx = np.stack([one, zero, zero, zero, ca, -sa, zero, sa, ca], -1)
    ry = np.stack([cb, zero, sb, zero, one, zero, -sb, zero, cb], -1)
    rz = np.stack([cc, -sc, zero, sc, cc, zero, zero, zero, one], -1)
    shape = (*angles.shape[:-1], 3, 3)
    return rz.reshape(shape) @ ry.reshape(shape) @ rx.reshape(shape)


def _forward_kinematics(angles: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Joint positions ``[T, 17, 3]`` (root at the origin) from local angles ``[T, 17, 3]``;
    a joint's rotation turns the bones of its children."""
    local = _rotations(angles)
    frames = len(angles)
    positions = np.zeros((frames, NUM_JOINTS, 3))
    glob = [local[:, 0]] + [None] * (NUM_JOINTS - 1)
    for joint in range(1, NUM_JOINTS):
        parent = H36M_PARENTS[joint]  # parents precede their children
        positions[:, joint] = positions[:, parent] + glob[parent] @ offsets[joint]
        glob[joint] = glob[parent] @ local[:, joint]
    return positions


def _sines(rng: np.random.Generator, t: np.ndarray, amplitude: float, count: int = 3,
           band: tuple[float, float] = (0.1, 1.0)) -> np.ndarray:  # fmt: skip
    """A smooth random signal ``[T]``: ``count`` sinusoids of random frequency (Hz), phase and
    amplitude, summing to at most ``amplitude``."""
    amps = amplitude * rng.dirichlet(np.ones(count))
    freqs = rng.uniform(*band, count)
    phases = rng.uniform(0, 2 * math.pi, count)
    return (amps[:, None] * np.sin(2 * math.pi * freqs[:, None] * t + phases[:, None])).sum(0)


def _abduct(angles: np.ndarray, joint: int, value: np.ndarray | float) -> None:
    """Move a limb away from the body's midline by ``value`` radians (either side)."""
    angles[:, joint, 1] += -_SIDE[joint] * value


def generate_motion(
    action: str, frames: int, rng: np.random.Generator, offsets: np.ndarray, fps: float = FPS
) -> np.ndarray:
    """World joint positions ``[frames, 17, 3]`` (z up, metres) of one action.

    Args:
        action: one of :data:`ACTIONS`.
        frames: number of frames.
        rng: the source of the action's random parameters.
        offsets: the subject's bones, ``[17, 3]`` (see :func:`skeleton_offsets`).
        fps: frame rate, Hz.
    """
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    if frames < 1:
        raise ValueError(f"frames must be positive, got {frames}")
    t = np.arange(frames) / fps
    angles = np.zeros((frames, NUM_JOINTS, 3))
    for joint in _MOVABLE:  # idle sway everywhere
        for axis in range(3):
            angles[:, joint, axis] = _sines(rng, t, 0.06 if joint else 0.03)
    for joint in (L_SHOULDER, R_SHOULDER):  # arms hang slightly away from the body
        _abduct(angles, joint, rng.uniform(0.05, 0.2))
    for joint in (L_ELBOW, R_ELBOW):
        angles[:, joint, 0] += rng.uniform(0.1, 0.4)
    centre = rng.uniform(-0.5, 0.5, 2)
    path = np.stack([centre[0] + _sines(rng, t, 0.15, band=(0.05, 0.3)),
                     centre[1] + _sines(rng, t, 0.15, band=(0.05, 0.3))], -1)  # fmt: skip
    yaw = rng.uniform(-math.pi, math.pi) + _sines(rng, t, 0.3, band=(0.05, 0.3))

    if action == "Walking":
        omega = 2 * math.pi * rng.uniform(0.8, 1.05) * t + rng.uniform(0, 2 * math.pi)
        swing, arm_swing = rng.uniform(0.3, 0.45), rng.uniform(0.2, 0.45)
        for hip, knee, shoulder, elbow, phase in ((R_HIP, R_KNEE, R_SHOULDER, R_ELBOW, 0.0),
                                                  (L_HIP, L_KNEE, L_SHOULDER, L_ELBOW, math.pi)):
            angles[:, hip, 0] += 0.1 + swing * np.sin(omega + phase)
            angles[:, knee, 0] -= 0.1 + 0.6 * (0.5 + 0.5 * np.sin(omega + phase - 1.2)) ** 2
            angles[:, shoulder, 0] -= arm_swing * np.sin(omega + phase)
            angles[:, elbow, 0] += 0.2 * (0.5 + 0.5 * np.sin(omega + phase + math.pi))
        angles[:, SPINE, 2] += 0.08 * np.sin(omega)
        radius, speed = rng.uniform(1.0, 1.4), rng.uniform(0.9, 1.3)
        direction = rng.choice([-1.0, 1.0])
        theta = rng.uniform(0, 2 * math.pi) + direction * speed / radius * t
        path = radius * np.stack([np.cos(theta), np.sin(theta)], -1)
        yaw = theta + (0.0 if direction > 0 else math.pi)  # facing along the circle
    elif action == "Waving":
        arms = (R_SHOULDER, R_ELBOW), (L_SHOULDER, L_ELBOW)
        shoulder, elbow = arms[int(rng.integers(2))]
        _abduct(angles, shoulder, rng.uniform(1.0, 1.5) + _sines(rng, t, 0.2))
        angles[:, shoulder, 0] += rng.uniform(0.0, 0.6)
        wave = 2 * math.pi * rng.uniform(1.0, 2.0) * t
        angles[:, elbow, 0] += rng.uniform(0.9, 1.4) + 0.45 * np.sin(wave)
        angles[:, NECK, 2] += _sines(rng, t, 0.3, band=(0.1, 0.4))
    elif action == "Squatting":
        depth = 0.5 - 0.5 * np.cos(2 * math.pi * rng.uniform(0.25, 0.45) * t + rng.uniform(-1, 1))
        depth *= rng.uniform(0.6, 1.0)
        for hip, knee, shoulder in ((R_HIP, R_KNEE, R_SHOULDER), (L_HIP, L_KNEE, L_SHOULDER)):
            angles[:, hip, 0] += 1.5 * depth
            angles[:, knee, 0] -= 2.0 * depth
            angles[:, shoulder, 0] += 1.3 * depth  # arms forward for balance
            _abduct(angles, hip, 0.15 * depth)
        angles[:, SPINE, 0] -= 0.4 * depth  # lean forward
    else:  # Turning: spin on the spot, arms swinging up and down at the sides
        rate = rng.choice([-1.0, 1.0]) * rng.uniform(0.6, 1.2)
        yaw = yaw + rate * t
        lift = 0.5 - 0.5 * np.cos(2 * math.pi * rng.uniform(0.3, 0.6) * t)
        for shoulder in (L_SHOULDER, R_SHOULDER):
            _abduct(angles, shoulder, 1.2 * lift)
        angles[:, THORAX, 2] += _sines(rng, t, 0.25)
    angles[:, 0, 2] += yaw

    positions = _forward_kinematics(angles, offsets)
    ankles = positions[:, [JOINTS_RIGHT[2], JOINTS_LEFT[2]], 2]
    positions[..., 2] += ANKLE_HEIGHT - ankles.min(1, keepdims=True)  # feet on the floor
    positions[..., :2] += path[:, None, :]
    return positions


def look_at_camera(
    position: np.ndarray, target: np.ndarray, intrinsics: Camera, id: str = ""
) -> Camera:
    """A camera at ``position`` (world, metres, z up) aimed at ``target``, with the image
    size, focal length, centre and distortion of ``intrinsics``."""
    forward = target - position
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward], 1)  # columns: camera axes in world axes
    return Camera(
        intrinsics.res_w, intrinsics.res_h, intrinsics.focal_length, intrinsics.center,
        intrinsics.radial_distortion, intrinsics.tangential_distortion,
        matrix_to_quaternion(rotation), position, id=id,
    )  # fmt: skip


def _cameras(rng: np.random.Generator) -> list[Camera]:
    """Four cameras round the capture area, like Human3.6M's (azimuths ±70° and ±110°)."""
    cameras = []
    for intrinsics, azimuth in zip(h36m_cameras()["S1"], (70, -70, 110, -110), strict=True):
        angle = math.radians(azimuth + rng.uniform(-5, 5))
        distance, height = rng.uniform(4.9, 5.5), rng.uniform(1.45, 1.65)
        position = np.array([distance * math.cos(angle), distance * math.sin(angle), height])
        target = np.array([*rng.uniform(-0.2, 0.2, 2), rng.uniform(0.8, 1.0)])
        cameras.append(look_at_camera(position, target, intrinsics, id=f"synthetic-{azimuth}"))
    return cameras


@dataclass
class SyntheticData:
    """A generated data set.

    Attributes:
        positions_3d: ``{subject: {action: float32 [T, 17, 3]}}`` world positions, metres.
        positions_2d: ``{subject: {action: [4 x float32 [T, 17, 2]]}}`` exact pixels.
        detections_2d: the same plus Gaussian pixel noise.
        cameras: ``{subject: [4 cameras]}``.
    """

    positions_3d: dict[str, dict[str, np.ndarray]]
    positions_2d: dict[str, dict[str, list[np.ndarray]]]
    detections_2d: dict[str, dict[str, list[np.ndarray]]]
    cameras: dict[str, list[Camera]]


def generate_dataset(
    subjects: Sequence[str] = SUBJECTS,
    actions: Sequence[str] = ACTIONS,
    frames: int = 300,
    noise_px: float = 3.0,
    seed: int = 0,
) -> SyntheticData:
    """Generate motions, cameras and projections.

    Args:
        subjects: subject names (the default split needs S1, S5-S9, S11).
        actions: actions of each subject, from :data:`ACTIONS`.
        frames: frames per sequence, at 50 fps; each sequence gets up to 20 % more.
        noise_px: standard deviation of the detections' pixel noise.
        seed: everything follows from it; subject ``i``'s data depends only on ``(seed, i)``.
    """
    if frames < 1:
        raise ValueError(f"frames must be positive, got {frames}")
    if noise_px < 0:
        raise ValueError(f"noise_px must be non-negative, got {noise_px}")
    data = SyntheticData({}, {}, {}, {})
    for s, subject in enumerate(subjects):
        # distinct tags: numpy pads short entropy, so [seed, s] and [seed, s, 0] would share bits
        rng = np.random.default_rng([seed, 0, s])
        offsets = skeleton_offsets(rng, rng.uniform(0.9, 1.1))
        cameras = data.cameras[subject] = _cameras(rng)
        for name in ("positions_3d", "positions_2d", "detections_2d"):
            getattr(data, name)[subject] = {}
        for a, action in enumerate(actions):
            action_rng = np.random.default_rng([seed, 1, s, a])
            length = frames + int(action_rng.integers(0, frames // 5 + 1))
            world = generate_motion(action, length, action_rng, offsets)
            data.positions_3d[subject][action] = world.astype(np.float32)
            exact = [camera.project(camera.world_to_camera(world)) for camera in cameras]
            data.positions_2d[subject][action] = [p.astype(np.float32) for p in exact]
            data.detections_2d[subject][action] = [
                (p + action_rng.normal(0.0, noise_px, p.shape)).astype(np.float32) for p in exact
            ]
    return data


def _save_npz(path: Path, **entries: object) -> None:
    """Write an npz archive atomically (a temporary file, then a rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **entries)


def write_dataset(
    root: str | os.PathLike,
    name: str = "synthetic",
    detector: str = "noisy",
    **kwargs: object,
) -> tuple[Path, Path, Path]:
    """Generate a data set (``kwargs`` go to :func:`generate_dataset`) and write it to ``root``.

    Returns:
        ``(data_3d_<name>.npz, data_2d_<name>_gt.npz, data_2d_<name>_<detector>.npz)``.
    """
    if detector == "gt":
        raise ValueError("detector 'gt' is reserved for the exact projections")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    data = generate_dataset(**kwargs)
    metadata = {"layout_name": "h36m", "num_joints": NUM_JOINTS,
                "keypoints_symmetry": [list(JOINTS_LEFT), list(JOINTS_RIGHT)]}  # fmt: skip
    cameras = {subject: [c.to_dict() for c in cams] for subject, cams in data.cameras.items()}
    paths = (root / f"data_3d_{name}.npz", root / f"data_2d_{name}_gt.npz",
             root / f"data_2d_{name}_{detector}.npz")  # fmt: skip
    _save_npz(paths[0], positions_3d=data.positions_3d)
    for path, positions in zip(paths[1:], (data.positions_2d, data.detections_2d), strict=True):
        _save_npz(path, positions_2d=positions, metadata=metadata, cameras=cameras)
    return paths


def main(argv: list[str] | None = None) -> int:
    """The command line: write a data set of every subject and action into ``--output``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)  # fmt: skip
    parser.add_argument("--output", type=Path, default=Path("data/synthetic3d"),
                        help="data set folder (created; files of the same names are replaced)")
    parser.add_argument("--name", default="synthetic",
                        help="data set name: data_3d_<name>.npz, data_2d_<name>_*.npz")
    parser.add_argument("--frames", type=int_at_least(1), default=300,
                        help="frames per sequence (50 fps; each gets up to 20%% more)")
    parser.add_argument("--noise", type=float_at_least(0), default=3.0,
                        help="standard deviation of the detections' 2-D noise, pixels")
    parser.add_argument("--seed", type=int_at_least(0), default=0,
                        help="everything follows from it")  # fmt: skip
    args = parser.parse_args(argv)
    paths = write_dataset(args.output, args.name, frames=args.frames, noise_px=args.noise,
                          seed=args.seed)  # fmt: skip
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
