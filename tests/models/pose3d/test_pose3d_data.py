"""tokenprune_models.pose3d.synthetic and tokenprune_models.pose3d.h36m: the synthetic motion set,
the VideoPose3D-format loader and the clip dataset."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tokenprune_models.pose3d.camera import (
    image_coordinates,
)  # fmt: skip
from tokenprune_models.pose3d.h36m import (
    ClipDataset,
    PoseSequence,
    dataset_files,
    h36m_cameras,
    load_sequences,
    load_split,
)  # fmt: skip
from tokenprune_models.pose3d.skeleton import (
    H36M_KEPT_JOINTS,
    H36M_PARENTS,
    JOINTS_LEFT,
    JOINTS_RIGHT,
    flip_pose,
)  # fmt: skip
from tokenprune_models.pose3d.synthetic import generate_dataset, main, write_dataset

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
