"""The Human3.6M pinhole camera with radial and tangential distortion, as VideoPose3D uses it.

Conventions:

* a camera's ``orientation`` is a unit quaternion ``(w, x, y, z)`` rotating camera axes into
  world axes and its ``translation`` is the camera centre in world coordinates (metres), so
  ``X_cam = R^T (X_world - t)``;
* camera axes: x to the image's right, y down the image, z along the optical axis;
* pixels: ``(u, v)`` with the image's top-left corner at ``(0, 0)``;
* normalised screen coordinates map ``u in [0, w]`` to ``[-1, 1]`` and ``v`` by the same
  factor (``[0, h]`` to ``[-h/w, h/w]``), keeping the aspect ratio.

Arrays are numpy, computed in float64.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "Camera", "camera_to_world", "image_coordinates", "matrix_to_quaternion",
    "normalize_screen_coordinates", "project_to_2d", "quaternion_to_matrix", "world_to_camera",
]  # fmt: skip


def _points(x: object, name: str, dims: int) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.ndim < 1 or x.shape[-1] != dims:
        raise ValueError(f"{name} must have shape [..., {dims}], got {list(x.shape)}")
    return x.astype(np.float64, copy=False)


def _vector(x: ArrayLike, name: str, size: int) -> np.ndarray:
    try:
        v = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {size} numbers, got {x!r}") from None
    if v.shape != (size,):
        raise ValueError(f"{name} must have shape [{size}], got {list(v.shape)}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} must be finite, got {v.tolist()}")
    return v


def normalize_screen_coordinates(x: np.ndarray, w: int, h: int) -> np.ndarray:
    """Pixels ``[..., 2]`` to normalised screen coordinates: ``x / w * 2 - (1, h / w)``."""
    x = _points(x, "x", 2)
    return x / w * 2 - np.array([1.0, h / w])


def image_coordinates(x: np.ndarray, w: int, h: int) -> np.ndarray:
    """Normalised screen coordinates ``[..., 2]`` back to pixels."""
    x = _points(x, "x", 2)
    return (x + np.array([1.0, h / w])) * w / 2


def quaternion_to_matrix(q: ArrayLike) -> np.ndarray:
    """The ``[3, 3]`` rotation matrix of a quaternion ``(w, x, y, z)`` (normalised first)."""
    q = _vector(q, "q", 4)
    norm = np.linalg.norm(q)
    if norm == 0:
        raise ValueError("q must be a non-zero quaternion")
    w, x, y, z = q / norm
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip


def matrix_to_quaternion(matrix: ArrayLike) -> np.ndarray:
    """The unit quaternion ``(w, x, y, z)``, ``w >= 0``, of a ``[3, 3]`` rotation matrix."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (3, 3):
        raise ValueError(f"matrix must have shape [3, 3], got {list(m.shape)}")
    if not np.allclose(m @ m.T, np.eye(3), atol=1e-6) or np.linalg.det(m) <= 0:
        raise ValueError("matrix must be a rotation (orthonormal, determinant +1)")
    # The largest of |w|, |x|, |y|, |z| is computed from the diagonal, the rest from it.
    trace = np.trace(m)
    candidates = [trace, m[0, 0], m[1, 1], m[2, 2]]
    i = int(np.argmax(candidates))
    if i == 0:
        w = np.sqrt(1 + trace) / 2
        q = [w, (m[2, 1] - m[1, 2]) / (4 * w), (m[0, 2] - m[2, 0]) / (4 * w),
             (m[1, 0] - m[0, 1]) / (4 * w)]  # fmt: skip
    else:
        a = i - 1
        b, c = (a + 1) % 3, (a + 2) % 3
        big = np.sqrt(1 + m[a, a] - m[b, b] - m[c, c]) / 2
        vec = np.empty(3)
        vec[a] = big
        vec[b] = (m[b, a] + m[a, b]) / (4 * big)
        vec[c] = (m[c, a] + m[a, c]) / (4 * big)
        q = [(m[c, b] - m[b, c]) / (4 * big), *vec]
    q = np.asarray(q)
    return q if q[0] >= 0 else -q


def world_to_camera(x: np.ndarray, orientation: ArrayLike, translation: ArrayLike) -> np.ndarray:
    """World points ``[..., 3]`` to camera coordinates ``[..., 3]``: ``R^T (x - t)``."""
    x = _points(x, "x", 3)
    rotation = quaternion_to_matrix(orientation)
    return (x - _vector(translation, "translation", 3)) @ rotation


def camera_to_world(x: np.ndarray, orientation: ArrayLike, translation: ArrayLike) -> np.ndarray:
    """Camera points ``[..., 3]`` to world coordinates ``[..., 3]``: ``R x + t``."""
    x = _points(x, "x", 3)
    rotation = quaternion_to_matrix(orientation)
    return x @ rotation.T + _vector(translation, "translation", 3)


def project_to_2d(
    x: np.ndarray,
    focal_length: ArrayLike,
    center: ArrayLike,
    radial_distortion: ArrayLike = (0.0, 0.0, 0.0),
    tangential_distortion: ArrayLike = (0.0, 0.0),
) -> np.ndarray:
    """Project camera-coordinate points ``[..., 3]`` to pixels ``[..., 2]``.

    With ``(x', y') = (x/z, y/z)`` clipped to ``[-1, 1]`` (as VideoPose3D does), ``r2 = x'^2 +
    y'^2``, ``radial = 1 + k1 r2 + k2 r2^2 + k3 r2^3`` and ``tan = p1 x' + p2 y'``, the pixel is
    ``f * ((x', y') * (radial + tan) + (p1, p2) * r2) + c``: VideoPose3D's form of the
    Human3.6M distortion model, with which its 2-D ground truth was made. Points must be in
    front of the camera (``z > 0``).
    """
    x = _points(x, "x", 3)
    f = _vector(focal_length, "focal_length", 2)
    c = _vector(center, "center", 2)
    k = _vector(radial_distortion, "radial_distortion", 3)
    p = _vector(tangential_distortion, "tangential_distortion", 2)
    xy = np.clip(x[..., :2] / x[..., 2:], -1.0, 1.0)
    r2 = (xy**2).sum(-1, keepdims=True)
    radial = 1 + k[0] * r2 + k[1] * r2**2 + k[2] * r2**3
    tan = (p * xy).sum(-1, keepdims=True)
    return f * (xy * (radial + tan) + p * r2) + c


_CAMERA_KEYS = ("res_w", "res_h", "focal_length", "center", "radial_distortion",
                "tangential_distortion", "orientation", "translation")  # fmt: skip


@dataclass(frozen=True)
class Camera:
    """One calibrated camera (see the module's conventions).

    Attributes:
        res_w, res_h: image size in pixels.
        focal_length: ``[2]`` pixels; center: ``[2]`` principal point in pixels.
        radial_distortion: ``[3]`` k1-k3; tangential_distortion: ``[2]`` p1, p2.
        orientation: ``[4]`` quaternion ``(w, x, y, z)``, camera-to-world rotation.
        translation: ``[3]`` camera centre in world coordinates, metres.
        id: a name, e.g. Human3.6M's camera serial number.
    """

    res_w: int
    res_h: int
    focal_length: np.ndarray
    center: np.ndarray
    radial_distortion: np.ndarray = field(default_factory=lambda: np.zeros(3))
    tangential_distortion: np.ndarray = field(default_factory=lambda: np.zeros(2))
    orientation: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.0, 0.0]))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    id: str = ""

    def __post_init__(self) -> None:
        for name in ("res_w", "res_h"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name, size in (("focal_length", 2), ("center", 2), ("radial_distortion", 3),
                           ("tangential_distortion", 2), ("orientation", 4),
                           ("translation", 3)):  # fmt: skip
            object.__setattr__(self, name, _vector(getattr(self, name), name, size))
        if np.linalg.norm(self.orientation) == 0:
            raise ValueError("orientation must be a non-zero quaternion")
        object.__setattr__(self, "id", str(self.id))

    def world_to_camera(self, x: np.ndarray) -> np.ndarray:
        """World points ``[..., 3]`` to this camera's coordinates ``[..., 3]``."""
        return world_to_camera(x, self.orientation, self.translation)

    def camera_to_world(self, x: np.ndarray) -> np.ndarray:
        """This camera's coordinates ``[..., 3]`` to world points ``[..., 3]``."""
        return camera_to_world(x, self.orientation, self.translation)

    def project(self, x: np.ndarray) -> np.ndarray:
        """Camera-coordinate points ``[..., 3]`` to distorted pixels ``[..., 2]``."""
        return project_to_2d(x, self.focal_length, self.center, self.radial_distortion,
                             self.tangential_distortion)  # fmt: skip

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels ``[..., 2]`` to normalised screen coordinates ``[..., 2]``."""
        return normalize_screen_coordinates(pixels, self.res_w, self.res_h)

    def to_dict(self) -> dict:
        """Plain-Python form (lists of floats), as stored in a ``cameras`` npz entry."""
        out: dict = {"id": self.id, "res_w": self.res_w, "res_h": self.res_h}
        for key in _CAMERA_KEYS[2:]:
            out[key] = getattr(self, key).tolist()
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> Camera:
        """Inverse of :meth:`to_dict`; names a missing key in the error."""
        if not isinstance(data, Mapping):
            raise TypeError(f"a camera must be a dict, got {type(data).__name__}")
        missing = [key for key in _CAMERA_KEYS if key not in data]
        if missing:
            raise ValueError(f"camera {data.get('id', '?')!r} lacks key(s) {missing}")
        return cls(**{key: data[key] for key in _CAMERA_KEYS}, id=data.get("id", ""))
