"""3-D pose layer: skeleton, MPJPE/P-MPJPE, camera, VideoPose3D-format loading, synthetic data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from models.pose3d.camera import (
    Camera,
    camera_to_world,
    image_coordinates,
    matrix_to_quaternion,
    normalize_screen_coordinates,
    project_to_2d,
    quaternion_to_matrix,
    world_to_camera,
)  # fmt: skip
from models.pose3d.h36m import (
    ClipDataset,
    PoseSequence,
    dataset_files,
    h36m_cameras,
    load_sequences,
    load_split,
)  # fmt: skip
from models.pose3d.metrics import (
    action_average,
    canonical_action,
    mpjpe,
    p_mpjpe,
    procrustes_align,
    root_relative,
)  # fmt: skip
from models.pose3d.skeleton import (
    FLIP_PERMUTATION,
    H36M_KEPT_JOINTS,
    H36M_PARENTS,
    JOINTS_LEFT,
    JOINTS_RIGHT,
    flip_pose,
    reduce_h36m_32,
)  # fmt: skip
from models.pose3d.synthetic import generate_dataset, main, write_dataset

# Reference facts: the 32-joint Human3.6M mocap skeleton's parents and its left/right joints.
PARENTS_32 = (-1, 0, 1, 2, 3, 4, 0, 6, 7, 8, 9, 0, 11, 12, 13, 14, 12, 16, 17, 18, 19, 20, 19,
              22, 12, 24, 25, 26, 27, 28, 27, 30)  # fmt: skip
LEFT_32 = {6, 7, 8, 9, 10, 16, 17, 18, 19, 20, 21, 22, 23}
RIGHT_32 = {1, 2, 3, 4, 5, 24, 25, 26, 27, 28, 29, 30, 31}


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


# ------------------------------------------------------------------------------- camera


@given(q=st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(
    lambda q: np.linalg.norm(q) > 0.1))  # fmt: skip
def test_quaternion_matrix_round_trip(q):
    q = np.array(q) / np.linalg.norm(q)
    matrix = quaternion_to_matrix(q)
    assert np.allclose(matrix @ matrix.T, np.eye(3)) and np.linalg.det(matrix) > 0
    back = matrix_to_quaternion(matrix)
    assert np.allclose(back, q if q[0] >= 0 else -q, atol=1e-7) or np.allclose(
        quaternion_to_matrix(back), matrix, atol=1e-9)  # w = 0: both signs are valid


def test_world_camera_round_trip_and_axes():
    rng = np.random.default_rng(3)
    q, t = rng.normal(size=4), rng.normal(size=3)
    points = rng.normal(size=(6, 17, 3))
    assert np.allclose(camera_to_world(world_to_camera(points, q, t), q, t), points)
    # the camera centre is the origin of camera coordinates; its optical axis is +z
    rotation = quaternion_to_matrix(q)
    assert np.allclose(world_to_camera(t, q, t), 0)
    assert np.allclose(world_to_camera(t + 2 * rotation[:, 2], q, t), [0, 0, 2])


def test_projection_pinhole_and_distortion():
    f, c = (1000.0, 1100.0), (500.0, 400.0)
    points = np.array([[0.2, -0.1, 2.0], [0.0, 0.0, 5.0]])
    assert np.allclose(project_to_2d(points, f, c), [[600.0, 345.0], [500.0, 400.0]])
    # x' = 0.1, y' = -0.05: r2 = 0.0125, radial = 1 + k1 r2, tan = p1 x' + p2 y'
    k, p = (-0.2, 0.0, 0.0), (0.01, 0.02)
    r2, radial, tan = 0.0125, 1 - 0.2 * 0.0125, 0.01 * 0.1 + 0.02 * -0.05
    expected = np.array(f) * (np.array([0.1, -0.05]) * (radial + tan) + np.array(p) * r2) + c
    assert np.allclose(project_to_2d(points[:1], f, c, k, p)[0], expected)


def test_screen_coordinates():
    pixels = np.array([[0.0, 501.0], [1000.0, 0.0], [500.0, 1002.0]])
    screen = normalize_screen_coordinates(pixels, 1000, 1002)
    assert np.allclose(screen, [[-1.0, 0.0], [1.0, -1.002], [0.0, 1.002]])
    assert np.allclose(image_coordinates(screen, 1000, 1002), pixels)
    with pytest.raises(ValueError, match=r"x must have shape \[\.\.\., 2\]"):
        normalize_screen_coordinates(np.zeros((3, 3)), 1000, 1000)


def test_h36m_cameras_look_at_the_capture_area():
    table = h36m_cameras()
    assert sorted(table) == ["S1", "S11", "S5", "S6", "S7", "S8", "S9"]
    for subject, cameras in table.items():
        assert [cam.id for cam in cameras] == ["54138969", "55011271", "58860488", "60457274"]
        for cam in cameras:
            # cameras stand ~5 m from the centre, ~1.5 m high; the centre of the floor area at
            # 1 m height is in front of each camera and inside its image
            assert 4.0 < np.linalg.norm(cam.translation[:2]) < 6.0, subject
            assert 1.3 < cam.translation[2] < 1.8
            local = cam.world_to_camera(np.array([0.0, 0.0, 1.0]))
            assert local[2] > 3.0
            u, v = cam.project(local)
            assert 0 < u < cam.res_w and 0 < v < cam.res_h, (subject, cam.id)
            # the world's up (+z) points up the image (camera -y)
            assert cam.world_to_camera(cam.translation + [0.0, 0.0, 1.0])[1] < -0.9


def test_camera_dict_round_trip_and_errors():
    cam = h36m_cameras()["S9"][2]
    back = Camera.from_dict(cam.to_dict())
    assert back.id == cam.id and back.res_h == cam.res_h
    assert np.array_equal(back.orientation, cam.orientation)
    data = cam.to_dict()
    del data["focal_length"]
    with pytest.raises(ValueError, match=r"camera '58860488' lacks key\(s\) \['focal_length'\]"):
        Camera.from_dict(data)
    with pytest.raises(ValueError, match=r"center must have shape \[2\]"):
        Camera(1000, 1000, (1.0, 1.0), (1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="res_w must be a positive integer"):
        Camera(0, 1000, (1.0, 1.0), (1.0, 2.0))


# ------------------------------------------------------------------- synthetic + loader


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic3d")
    paths = write_dataset(root, actions=("Walking", "Squatting"), frames=40, noise_px=2.0,
                          seed=5)  # fmt: skip
    return root, paths


def test_write_dataset_files(synthetic):
    root, paths = synthetic
    assert sorted(p.name for p in root.iterdir()) == sorted(p.name for p in paths)  # no temp
    assert [p.name for p in paths] == ["data_3d_synthetic.npz", "data_2d_synthetic_gt.npz",
                                       "data_2d_synthetic_noisy.npz"]  # fmt: skip
    assert paths[0:3:2] == dataset_files(root, "synthetic", "noisy")
    with np.load(paths[2], allow_pickle=True) as z:
        metadata, cameras = z["metadata"].item(), z["cameras"].item()
    assert metadata["num_joints"] == 17 and metadata["layout_name"] == "h36m"
    assert sorted(cameras) == ["S1", "S11", "S5", "S6", "S7", "S8", "S9"]


def test_generation_is_deterministic_and_plausible():
    a = generate_dataset(subjects=("S1",), actions=("Walking", "Turning"), frames=50, seed=1)
    b = generate_dataset(subjects=("S1",), actions=("Walking", "Turning"), frames=50, seed=1)
    c = generate_dataset(subjects=("S1",), actions=("Walking", "Turning"), frames=50, seed=2)
    walk = a.positions_3d["S1"]["Walking"]
    assert np.array_equal(walk, b.positions_3d["S1"]["Walking"])
    assert np.array_equal(a.detections_2d["S1"]["Turning"][3], b.detections_2d["S1"]["Turning"][3])
    assert not np.allclose(walk[: len(c.positions_3d["S1"]["Walking"])][:50],
                           c.positions_3d["S1"]["Walking"][:50])  # fmt: skip
    # rigid bones, feet on the floor, head up high, smooth motion, walking moves
    bones = np.linalg.norm(walk[:, 1:] - walk[:, list(H36M_PARENTS[1:])], axis=-1)
    assert np.allclose(bones, bones[0], atol=1e-5)
    assert np.allclose(walk[:, [3, 6], 2].min(1), 0.08, atol=1e-5)
    assert (walk[:, 10, 2] > 1.3).all()
    assert np.abs(np.diff(walk, axis=0)).max() < 0.1  # < 5 m/s at 50 fps
    assert np.linalg.norm(walk[-1, 0, :2] - walk[0, 0, :2]) > 0.3


def test_loader_round_trips_synthetic_files(synthetic):
    path_3d, path_gt, _ = synthetic[1]
    sequences = load_sequences(path_3d, path_gt)
    assert len(sequences) == 7 * 2 * 4
    with np.load(path_3d, allow_pickle=True) as z:
        world = z["positions_3d"].item()
    with np.load(path_gt, allow_pickle=True) as z:
        pixels = z["positions_2d"].item()
    for seq in sequences:
        frames = len(world[seq.subject][seq.action])
        assert seq.inputs_2d.shape == (frames, 17, 2) and seq.inputs_2d.dtype == np.float32
        assert seq.targets_3d.shape == (frames, 17, 3) and seq.trajectory.shape == (frames, 3)
        assert (seq.targets_3d[:, 0] == 0).all()
        assert (seq.trajectory[:, 2] > 2.5).all()  # in front of the camera
        assert np.abs(seq.inputs_2d).max() < 1.2
        cam = seq.camera_params
        local = seq.targets_3d + seq.trajectory[:, None]
        # projecting the loaded 3-D with the stored camera gives the loaded (exact) 2-D
        assert np.allclose(cam.normalize(cam.project(local)), seq.inputs_2d, atol=1e-5)
        assert np.allclose(image_coordinates(seq.inputs_2d, cam.res_w, cam.res_h),
                           pixels[seq.subject][seq.action][seq.camera], atol=1e-2)  # fmt: skip
        assert np.allclose(cam.camera_to_world(local), world[seq.subject][seq.action], atol=1e-5)


def test_detections_are_noisy_versions(synthetic):
    path_3d, path_gt, path_noisy = synthetic[1]
    exact = load_sequences(path_3d, path_gt, subjects=["S9"])
    noisy = load_sequences(path_3d, path_noisy, subjects=["S9"])
    residual = np.concatenate([(n.inputs_2d - e.inputs_2d).ravel()
                               for n, e in zip(noisy, exact, strict=True)])  # fmt: skip
    assert residual.std() * 1000 / 2 == pytest.approx(2.0, rel=0.1)  # 2 px
    assert np.array_equal(noisy[0].targets_3d, exact[0].targets_3d)


def test_default_split(synthetic):
    root, _ = synthetic
    train = load_split(root, "train", name="synthetic", detector="noisy")
    test = load_split(root, "test", name="synthetic", detector="gt", actions=["Walking"])
    assert sorted({s.subject for s in train}) == ["S1", "S5", "S6", "S7", "S8"]
    assert {(s.subject, s.action) for s in test} == {("S11", "Walking"), ("S9", "Walking")}
    with pytest.raises(ValueError, match="split must be one of"):
        load_split(root, "val", name="synthetic", detector="gt")


def _write(path, **entries):
    np.savez(path, **entries)
    return path


def test_loader_reduces_32_joints_and_uses_the_h36m_calibration(tmp_path):
    """A Human3.6M-like file: 32 mocap joints, no cameras entry, 2-D longer than 3-D."""
    rng = np.random.default_rng(4)
    world_17 = generate_dataset(subjects=("S1",), actions=("Walking",), frames=30,
                                seed=6).positions_3d["S1"]["Walking"]  # fmt: skip
    world_32 = rng.normal(size=(len(world_17), 32, 3)).astype(np.float32)
    world_32[:, list(H36M_KEPT_JOINTS)] = world_17
    cameras = h36m_cameras()["S1"]
    views = [
        np.concatenate([cam.project(cam.world_to_camera(world_17)), np.zeros((5, 17, 2))])
        .astype(np.float32) for cam in cameras
    ]  # fmt: skip
    metadata = {"layout_name": "h36m", "num_joints": 17,
                "keypoints_symmetry": [list(JOINTS_LEFT), list(JOINTS_RIGHT)]}  # fmt: skip
    path_3d = _write(tmp_path / "data_3d_h36m.npz",
                     positions_3d={"S1": {"Walking 1": world_32}})  # fmt: skip
    path_2d = _write(tmp_path / "data_2d_h36m_gt.npz",
                     positions_2d={"S1": {"Walking 1": views}}, metadata=metadata)  # fmt: skip
    sequences = load_sequences(path_3d, path_2d)
    assert [s.camera_params.id for s in sequences] == [c.id for c in cameras]
    for seq, cam in zip(sequences, cameras, strict=True):
        local = cam.world_to_camera(world_17)
        assert len(seq) == len(world_17)  # 2-D frames past the 3-D end are dropped
        assert np.allclose(seq.targets_3d, local - local[:, :1], atol=1e-5)
        assert np.allclose(seq.inputs_2d, cam.normalize(views[seq.camera][: len(world_17)]))
    # 2-D shorter than 3-D, and an unknown subject without cameras, are errors
    short = _write(tmp_path / "short.npz", metadata=metadata,
                   positions_2d={"S1": {"Walking 1": [v[:10] for v in views]}})  # fmt: skip
    message = rf"\['Walking 1'\]\[0\] must have shape \[T >= {len(world_17)}, 17, 2\], got \[10,"
    with pytest.raises(ValueError, match=message):
        load_sequences(path_3d, short)
    other = _write(tmp_path / "other.npz", positions_3d={"S99": {"Walking 1": world_32}})
    with pytest.raises(ValueError, match="no camera parameters for subject 'S99'"):
        load_sequences(other, path_2d)


def test_loader_errors(synthetic, tmp_path):
    path_3d, path_gt, _ = synthetic[1]
    with pytest.raises(FileNotFoundError, match=r"data file .*missing\.npz.* does not exist"):
        load_sequences(tmp_path / "missing.npz", path_gt)
    text = tmp_path / "text.npz"
    text.write_text("not an archive")
    with pytest.raises(ValueError, match=r"text\.npz.* is not an npz archive"):
        load_sequences(text, path_gt)
    with pytest.raises(ValueError, match=r"lacks the entry 'positions_3d'"):
        load_sequences(path_gt, path_gt)
    with pytest.raises(ValueError, match=r"lacks the entry 'positions_2d'"):
        load_sequences(path_3d, path_3d)
    with pytest.raises(ValueError, match=r"subject 'S2' is not in"):
        load_sequences(path_3d, path_gt, subjects=["S1", "S2"])

    with np.load(path_gt, allow_pickle=True) as z:
        gt = {key: z[key].item() for key in z.files}
    bad_meta = _write(tmp_path / "meta.npz", positions_2d=gt["positions_2d"],
                      cameras=gt["cameras"], metadata={"num_joints": 17})  # fmt: skip
    with pytest.raises(ValueError, match=r"metadata lacks the key 'keypoints_symmetry'"):
        load_sequences(path_3d, bad_meta)
    coco = dict(gt["metadata"], keypoints_symmetry=[[1, 3], [2, 4]], layout_name="coco")
    bad_layout = _write(tmp_path / "coco.npz", positions_2d=gt["positions_2d"],
                        cameras=gt["cameras"], metadata=coco)  # fmt: skip
    with pytest.raises(ValueError, match=r"\['keypoints_symmetry'\] must be .*'coco'"):
        load_sequences(path_3d, bad_layout)
    three_views = {s: {a: v[:3] for a, v in acts.items()} for s, acts in gt["positions_2d"].items()}
    bad_views = _write(tmp_path / "views.npz", positions_2d=three_views,
                       cameras=gt["cameras"], metadata=gt["metadata"])  # fmt: skip
    with pytest.raises(ValueError, match=r"list of 4 arrays \(one per camera\), got 3 of them"):
        load_sequences(path_3d, bad_views)
    bad_3d = _write(tmp_path / "bad3d.npz",
                    positions_3d={"S1": {"Walking": np.zeros((40, 16, 3), np.float32)}})
    with pytest.raises(ValueError, match=r"\['S1'\]\['Walking'\] must be a float array "
                                         r"\[T, 32 or 17, 3\], got float32 \[40, 16, 3\]"):
        load_sequences(bad_3d, path_gt)
    broken = dict(gt["cameras"], S1=[{"id": "x"}] * 4)
    bad_cams = _write(tmp_path / "cams.npz", positions_2d=gt["positions_2d"], cameras=broken,
                      metadata=gt["metadata"])  # fmt: skip
    with pytest.raises(ValueError, match=r"cameras\['S1'\]: camera 'x' lacks key"):
        load_sequences(path_3d, bad_cams)


# -------------------------------------------------------------------------------- clips


def _sequence(frames: int, seed: int = 0) -> PoseSequence:
    rng = np.random.default_rng(seed)
    targets = rng.normal(size=(frames, 17, 3)).astype(np.float32)
    targets -= targets[:, :1]
    return PoseSequence("S1", "Walking", 0, rng.normal(size=(frames, 17, 2)).astype(np.float32),
                        targets, rng.normal(size=(frames, 3)).astype(np.float32),
                        h36m_cameras()["S1"][0])  # fmt: skip


@pytest.mark.parametrize("length", [1, 9, 10, 23])
def test_non_overlapping_clips_cover_each_sequence_once(length):
    dataset = ClipDataset([_sequence(length), _sequence(7, seed=1)], frames=5)
    clips = [dataset[i] for i in range(len(dataset))]
    assert len(dataset) == math.ceil(length / 5) + 2
    first = [c for c in clips if c["sequence"] == 0]
    inputs = torch.cat([c["inputs_2d"][c["valid"]] for c in first])
    targets = torch.cat([c["targets_3d"][c["valid"]] for c in first])
    assert torch.equal(inputs, torch.from_numpy(dataset.sequences[0].inputs_2d))
    assert torch.equal(targets, torch.from_numpy(dataset.sequences[0].targets_3d))
    last = first[-1]
    assert last["inputs_2d"].shape == (5, 17, 2) and last["targets_3d"].shape == (5, 17, 3)
    assert int(last["valid"].sum()) == length - 5 * (len(first) - 1)
    padded = last["inputs_2d"][~last["valid"]]
    assert (padded == torch.from_numpy(dataset.sequences[0].inputs_2d[-1])).all()  # edge pad
    assert [int(c["start"]) for c in first] == list(range(0, length, 5))


def test_strided_clips_stop_at_the_end():
    dataset = ClipDataset([_sequence(10)], frames=4, stride=2)
    assert dataset.clips == [(0, 0), (0, 2), (0, 4), (0, 6)]  # the clip at 6 reaches frame 9
    assert bool(dataset[3]["valid"].all())


def test_flip_augmentation():
    sequence = _sequence(12)
    plain = ClipDataset([sequence], frames=6)
    always = ClipDataset([sequence], frames=6, flip_prob=1.0)
    item, flipped = plain[1], always[1]
    assert bool(flipped["flipped"]) and not bool(item["flipped"])
    assert torch.equal(flipped["inputs_2d"], flip_pose(item["inputs_2d"]))
    assert torch.equal(flipped["targets_3d"], flip_pose(item["targets_3d"]))
    assert torch.equal(flip_pose(flipped["targets_3d"]), item["targets_3d"])
    assert (flipped["targets_3d"][:, 0] == 0).all()  # still root-relative
    half = ClipDataset([_sequence(200)], frames=2, flip_prob=0.5, seed=3)
    draws = [bool(half[i]["flipped"]) for i in range(len(half))]
    assert draws == [bool(half[i]["flipped"]) for i in range(len(half))]  # reproducible
    assert 20 < sum(draws) < 80
    half.set_epoch(1)
    assert draws != [bool(half[i]["flipped"]) for i in range(len(half))]


def test_clip_dataset_rejects_bad_arguments():
    with pytest.raises(ValueError, match="frames must be a positive integer"):
        ClipDataset([_sequence(5)], frames=0)
    with pytest.raises(ValueError, match="stride must be a positive integer"):
        ClipDataset([_sequence(5)], frames=3, stride=0)
    with pytest.raises(ValueError, match=r"flip_prob must be in \[0, 1\]"):
        ClipDataset([_sequence(5)], frames=3, flip_prob=1.5)
    with pytest.raises(TypeError, match=r"sequences\[0\] must be a PoseSequence"):
        ClipDataset([np.zeros((5, 17, 2))], frames=3)


def test_command_line(tmp_path, capsys):
    assert main(["--output", str(tmp_path / "out"), "--frames", "10", "--noise", "1"]) == 0
    assert "data_2d_synthetic_noisy.npz" in capsys.readouterr().out
    sequences = load_split(tmp_path / "out", "test", name="synthetic", detector="noisy")
    assert len(sequences) == 2 * 4 * 4  # S9, S11 x 4 actions x 4 cameras
