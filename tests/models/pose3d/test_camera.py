"""tokenprune_models.pose3d.camera: quaternions, world/camera frames, projection, H36M
calibration."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenprune_models.pose3d.camera import (
    Camera,
    camera_to_world,
    image_coordinates,
    matrix_to_quaternion,
    normalize_screen_coordinates,
    project_to_2d,
    quaternion_to_matrix,
    world_to_camera,
)  # fmt: skip
from tokenprune_models.pose3d.h36m import (
    h36m_cameras,
)  # fmt: skip


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


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
