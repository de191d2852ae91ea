"""Human3.6M-style 3-D pose data in VideoPose3D's npz layout, and fixed-length clips of it.

Two files make a data set (``root/data_3d_<name>.npz`` and ``root/data_2d_<name>_<detector>.npz``):

* ``positions_3d``: ``{subject: {action: float [T, 32 or 17, 3]}}``, world coordinates in
  metres (32-joint mocap arrays are reduced to the 17 joints of :mod:`.skeleton`);
* ``positions_2d``: ``{subject: {action: [camera 0 [T', 17, 2], camera 1, ...]}}`` in pixels,
  ``T' >= T`` (extra frames are cut); ``metadata``: ``{"num_joints": 17,
  "keypoints_symmetry": [left joints, right joints], "layout_name": ...}``;
* optionally ``cameras`` (in either file): ``{subject: [Camera.to_dict(), ...]}``. Without it the
  published Human3.6M calibration below is used.

The entries are pickled Python objects, so loading runs ``np.load(..., allow_pickle=True)``,
which can execute code from the file: **load only files you trust**.

Each (subject, action, camera) becomes a :class:`PoseSequence`: 2-D inputs normalised to
screen coordinates and 3-D targets in that camera's coordinates, root-relative.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .camera import Camera
from .skeleton import JOINTS_LEFT, JOINTS_RIGHT, NUM_JOINTS, flip_pose, reduce_h36m_32

__all__ = [
    "SPLITS", "TEST_SUBJECTS", "TRAIN_SUBJECTS", "ClipDataset", "PoseSequence", "dataset_files",
    "h36m_cameras", "load_sequences", "load_split",
]  # fmt: skip

TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")
SPLITS = {"train": TRAIN_SUBJECTS, "test": TEST_SUBJECTS}

# Published Human3.6M calibration (as distributed with VideoPose3D). Intrinsics per camera:
# serial, (res_w, res_h), centre px, focal length px, radial k1-k3, tangential p1-p2.
_H36M_INTRINSICS = (
    ("54138969", (1000, 1002), (512.54150390625, 515.4514770507812),
     (1145.0494384765625, 1143.7811279296875),
     (-0.20709891617298126, 0.24777518212795258, -0.0030751503072679043),
     (-0.0009756988729350269, -0.00142447161488235)),
    ("55011271", (1000, 1000), (508.8486328125, 508.0649108886719),
     (1149.6756591796875, 1147.5916748046875),
     (-0.1942136287689209, 0.2404085397720337, 0.006819975562393665),
     (-0.0016190266469493508, -0.0027408944442868233)),
    ("58860488", (1000, 1000), (519.8158569335938, 501.40264892578125),
     (1149.1407470703125, 1148.7989501953125),
     (-0.2083381861448288, 0.25548800826072693, -0.0024604974314570427),
     (0.0014843869721516967, -0.0007599993259645998)),
    ("60457274", (1000, 1002), (514.9682006835938, 501.88201904296875),
     (1145.5113525390625, 1144.77392578125),
     (-0.198384091258049, 0.21832367777824402, -0.008947807364165783),
     (-0.0005872055771760643, -0.0018133620033040643)),
)  # fmt: skip

# Extrinsics per subject and camera (same camera order): orientation quaternion (w, x, y, z)
# and camera centre in millimetres.
_H36M_EXTRINSICS = {
    "S1": (
        ((0.1407056450843811, -0.1500701755285263, -0.755240797996521, 0.6223280429840088),
         (1841.1070556640625, 4955.28466796875, 1563.4454345703125)),
        ((0.6157187819480896, -0.764836311340332, -0.14833825826644897, 0.11794740706682205),
         (1761.278564453125, -5078.0068359375, 1606.2650146484375)),
        ((0.14651472866535187, -0.14647851884365082, 0.7653023600578308, -0.6094175577163696),
         (-1846.7777099609375, 5215.04638671875, 1491.972412109375)),
        ((0.5834008455276489, -0.7853162288665771, 0.14548823237419128, -0.14749594032764435),
         (-1794.7896728515625, -3722.698974609375, 1574.8927001953125)),
    ),
    "S5": (
        ((0.1467377245426178, -0.162370964884758, -0.7551892995834351, 0.6178938746452332),
         (2097.3916015625, 4880.94482421875, 1605.732421875)),
        ((0.6159758567810059, -0.7626792192459106, -0.15728192031383514, 0.1189815029501915),
         (2031.7008056640625, -5167.93310546875, 1612.923095703125)),
        ((0.14291371405124664, -0.12907841801643372, 0.7678384780883789, -0.6110143065452576),
         (-1620.5948486328125, 5171.65869140625, 1496.43701171875)),
        ((0.5920479893684387, -0.7814217805862427, 0.1274748593568802, -0.15036417543888092),
         (-1637.1737060546875, -3867.3173828125, 1547.033203125)),
    ),
    "S6": (
        ((0.1337897777557373, -0.15692396461963654, -0.7571090459823608, 0.6198879480361938),
         (1935.4517822265625, 4950.24560546875, 1618.0838623046875)),
        ((0.6147197484970093, -0.7628812789916992, -0.16174767911434174, 0.11819244921207428),
         (1969.803955078125, -5128.73876953125, 1632.77880859375)),
        ((0.1529948115348816, -0.13529130816459656, 0.7646096348762512, -0.6112781167030334),
         (-1769.596435546875, 5185.361328125, 1476.993408203125)),
        ((0.5916101336479187, -0.7804774045944214, 0.12832270562648773, -0.1561593860387802),
         (-1721.668701171875, -3884.13134765625, 1540.4879150390625)),
    ),
    "S7": (
        ((0.1435241848230362, -0.1631336808204651, -0.7548328638076782, 0.6188824772834778),
         (1974.512939453125, 4926.3544921875, 1597.8326416015625)),
        ((0.6141672730445862, -0.7638262510299683, -0.1596645563840866, 0.1177929937839508),
         (1937.0584716796875, -5119.7900390625, 1631.5665283203125)),
        ((0.14550060033798218, -0.12874816358089447, 0.7660516500473022, -0.6127139329910278),
         (-1741.8111572265625, 5208.24951171875, 1464.8245849609375)),
        ((0.5912848114967346, -0.7821764349937439, 0.12445473670959473, -0.15196487307548523),
         (-1734.7105712890625, -3832.42138671875, 1548.5830078125)),
    ),
    "S8": (
        ((0.14110587537288666, -0.15589867532253265, -0.7561917304992676, 0.619644045829773),
         (2150.65185546875, 4896.1611328125, 1611.9046630859375)),
        ((0.6169601678848267, -0.7647668123245239, -0.14846350252628326, 0.11158157885074615),
         (2219.965576171875, -5148.453125, 1613.0440673828125)),
        ((0.1471444070339203, -0.13377119600772858, 0.7670128345489502, -0.6100369691848755),
         (-1571.2215576171875, 5137.0185546875, 1498.1761474609375)),
        ((0.5927824378013611, -0.7825870513916016, 0.12147816270589828, -0.14631995558738708),
         (-1476.913330078125, -3896.7412109375, 1547.97216796875)),
    ),
    "S9": (
        ((0.15540587902069092, -0.15548215806484222, -0.7532095313072205, 0.6199594736099243),
         (2044.45849609375, 4935.1171875, 1481.2275390625)),
        ((0.618784487247467, -0.7634735107421875, -0.14132238924503326, 0.11933968216180801),
         (1990.959716796875, -5123.810546875, 1568.8048095703125)),
        ((0.13357827067375183, -0.1367100477218628, 0.7689454555511475, -0.6100738644599915),
         (-1670.9921875, 5211.98583984375, 1528.387939453125)),
        ((0.5879399180412292, -0.7823407053947449, 0.1427614390850067, -0.14794869720935822),
         (-1696.04345703125, -3827.099853515625, 1591.4127197265625)),
    ),
    "S11": (
        ((0.15232472121715546, -0.15442320704460144, -0.7547563314437866, 0.6191070079803467),
         (2098.440185546875, 4926.5546875, 1500.278564453125)),
        ((0.6189449429512024, -0.7600917220115662, -0.15300633013248444, 0.1255258321762085),
         (2083.182373046875, -4912.1728515625, 1561.07861328125)),
        ((0.14943228662014008, -0.15650227665901184, 0.7681233882904053, -0.6026304364204407),
         (-1609.8153076171875, 5177.3359375, 1537.896728515625)),
        ((0.5894251465797424, -0.7818877100944519, 0.13991211354732513, -0.14715361595153809),
         (-1590.738037109375, -3854.1689453125, 1578.017578125)),
    ),
}  # fmt: skip


def h36m_cameras() -> dict[str, list[Camera]]:
    """The four calibrated Human3.6M cameras of each subject (S1, S5-S9, S11), metres."""
    out = {}
    for subject, extrinsics in _H36M_EXTRINSICS.items():
        cameras = []
        for intrinsic, (orientation, translation) in zip(_H36M_INTRINSICS, extrinsics,
                                                         strict=True):  # fmt: skip
            serial, (res_w, res_h), centre, focal, radial, tangential = intrinsic
            cameras.append(Camera(
                res_w, res_h, focal, centre, radial, tangential, orientation,
                np.asarray(translation) / 1000, id=serial,
            ))  # fmt: skip
        out[subject] = cameras
    return out


@dataclass(frozen=True)
class PoseSequence:
    """One (subject, action, camera) sequence of ``T`` frames.

    Attributes:
        inputs_2d: ``[T, 17, 2]`` float32 keypoints in normalised screen coordinates.
        targets_3d: ``[T, 17, 3]`` float32 camera-coordinate joints in metres, relative to the
            root (pelvis), so ``targets_3d[:, 0] == 0``.
        trajectory: ``[T, 3]`` float32 root position in camera coordinates, metres.
        camera_params: the camera (index ``camera`` of the subject's cameras).
    """

    subject: str
    action: str
    camera: int
    inputs_2d: np.ndarray
    targets_3d: np.ndarray
    trajectory: np.ndarray
    camera_params: Camera

    def __len__(self) -> int:
        return len(self.inputs_2d)


def dataset_files(
    root: str | os.PathLike, name: str = "h36m", detector: str = "cpn_ft_h36m_dbb"
) -> tuple[Path, Path]:
    """``(root/data_3d_<name>.npz, root/data_2d_<name>_<detector>.npz)``."""
    root = Path(root)
    return root / f"data_3d_{name}.npz", root / f"data_2d_{name}_{detector}.npz"


def _read_npz(path: Path, required: Sequence[str]) -> dict[str, object]:
    """The entries of a trusted npz archive (pickled objects unwrapped).

    The VideoPose3D layout stores dicts as pickles, and unpickling a crafted file runs its code:
    read only files from a source you trust. The zip check below only turns a wrong file type
    into a clear error; it is no protection against a malicious archive.
    """
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
    with open(path, "rb") as handle:
        if handle.read(4) != b"PK\x03\x04":  # an npz is a zip archive
            raise ValueError(f"{str(path)!r} is not an npz archive")
    try:
        with np.load(path, allow_pickle=True) as archive:
            missing = [key for key in required if key not in archive.files]
            if missing:
                raise ValueError(
                    f"{str(path)!r} lacks the entry {missing[0]!r} (has {sorted(archive.files)})"
                )
            out = {}
            for key in archive.files:
                value = archive[key]
                out[key] = value.item() if value.dtype == object and value.shape == () else value
            return out
    except (OSError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ModuleNotFoundError,
            AttributeError) as error:  # fmt: skip
        raise ValueError(f"cannot read {str(path)!r}: {error}") from None


def _mapping(value: object, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a dict, got {type(value).__name__}")
    return value


def _positions_3d(value: object, where: str) -> np.ndarray:
    array = np.asarray(value)
    if (array.ndim != 3 or array.shape[1] not in (32, NUM_JOINTS) or array.shape[2] != 3
            or not np.issubdtype(array.dtype, np.floating)):  # fmt: skip
        raise ValueError(
            f"{where} must be a float array [T, 32 or 17, 3], got {array.dtype} "
            f"{list(array.shape)}"
        )
    array = reduce_h36m_32(array) if array.shape[1] == 32 else array
    _check_finite(array, where)  # the 17 joints used (joint numbers of that layout)
    return array


def _check_finite(array: np.ndarray, where: str) -> None:
    """Raise naming the first frame and joint of ``array [T, J, C]`` that is NaN or infinite."""
    bad = ~np.isfinite(array)
    if bad.any():
        frame, joint, _ = np.argwhere(bad)[0]
        count = int(bad.any(axis=-1).sum())
        raise ValueError(
            f"{where} holds non-finite values (NaN or infinity) at frame {frame}, joint "
            f"{joint} ({count} joint position(s) in all): the file is corrupt or was not "
            "cleaned; fill or drop those frames before loading"
        )


def _stored_cameras(value: object, where: str) -> dict[str, list[Camera]]:
    out = {}
    for subject, cameras in _mapping(value, where).items():
        if not isinstance(cameras, Sequence):
            raise ValueError(f"{where}[{subject!r}] must be a list of cameras")
        try:
            out[subject] = [Camera.from_dict(camera) for camera in cameras]
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}[{subject!r}]: {error}") from None
    return out


def _check_metadata(value: object, where: str) -> None:
    metadata = _mapping(value, where)
    for key in ("num_joints", "keypoints_symmetry"):
        if key not in metadata:
            raise ValueError(f"{where} lacks the key {key!r}")
    if metadata["num_joints"] != NUM_JOINTS:
        raise ValueError(f"{where}['num_joints'] must be {NUM_JOINTS}, got "
                         f"{metadata['num_joints']!r}")  # fmt: skip
    try:
        left, right = (tuple(int(j) for j in side) for side in metadata["keypoints_symmetry"])
    except (TypeError, ValueError):
        left, right = None, None
    if (left, right) != (JOINTS_LEFT, JOINTS_RIGHT):
        raise ValueError(
            f"{where}['keypoints_symmetry'] must be [{list(JOINTS_LEFT)}, {list(JOINTS_RIGHT)}] "
            f"(the Human3.6M joint order, layout {metadata.get('layout_name', '?')!r}), got "
            f"{metadata['keypoints_symmetry']!r}"
        )


def load_sequences(
    data_3d: str | os.PathLike,
    data_2d: str | os.PathLike,
    subjects: Iterable[str] | None = None,
    actions: Iterable[str] | None = None,
    cameras: Mapping[str, Sequence[Camera]] | None = None,
) -> list[PoseSequence]:
    """Load (subject, action, camera) sequences from a trusted pair of npz files.

    Args:
        data_3d: the ``positions_3d`` file; data_2d: the ``positions_2d`` file.
        subjects: subjects to load (each must be in the 3-D file); None for all.
        actions: actions to keep; None for all.
        cameras: ``{subject: [Camera, ...]}`` overriding the files' ``cameras`` entries and
            the Human3.6M calibration.

    Returns:
        The sequences, sorted by subject, action and camera index.

    Raises:
        FileNotFoundError: a file does not exist.
        ValueError: the files are rejected, never partly loaded: naming the file, the
            ``[subject][action]`` (and ``[camera]`` for 2-D) entry and the problem: a missing or
            mis-shaped entry, another joint layout, or NaN or infinite values (the first
            frame and joint given) in a 3-D array or in the 2-D frames that are used; values
            are not repaired or skipped, since dropping frames would break the clips' timing.
    """
    for name, value in (("subjects", subjects), ("actions", actions)):
        if isinstance(value, str):
            raise TypeError(f"{name} must be a list of names, not the string {value!r}")
    path_3d, path_2d = Path(data_3d), Path(data_2d)
    file_3d = _read_npz(path_3d, ["positions_3d"])
    file_2d = _read_npz(path_2d, ["positions_2d", "metadata"])
    where_3d, where_2d = f"{str(path_3d)!r}: positions_3d", f"{str(path_2d)!r}: positions_2d"
    positions_3d = _mapping(file_3d["positions_3d"], where_3d)
    positions_2d = _mapping(file_2d["positions_2d"], where_2d)
    _check_metadata(file_2d["metadata"], f"{str(path_2d)!r}: metadata")
    known = h36m_cameras()
    for path, data in ((path_3d, file_3d), (path_2d, file_2d)):  # the 2-D file's entry wins
        if "cameras" in data:
            known.update(_stored_cameras(data["cameras"], f"{str(path)!r}: cameras"))
    if cameras is not None:
        known.update({subject: list(cams) for subject, cams in cameras.items()})

    wanted = sorted(positions_3d) if subjects is None else list(subjects)
    for subject in wanted:
        if subject not in positions_3d:
            raise ValueError(f"subject {subject!r} is not in {where_3d} (has "
                             f"{sorted(positions_3d)})")  # fmt: skip
    keep = None if actions is None else set(actions)
    out = []
    for subject in wanted:
        if subject not in known:
            raise ValueError(f"no camera parameters for subject {subject!r}: add a 'cameras' "
                             "entry to the data files or pass cameras=")  # fmt: skip
        if subject not in positions_2d:
            raise ValueError(f"{where_2d} lacks subject {subject!r}")
        subject_2d = _mapping(positions_2d[subject], f"{where_2d}[{subject!r}]")
        for action, world in sorted(_mapping(positions_3d[subject],
                                             f"{where_3d}[{subject!r}]").items()):  # fmt: skip
            if keep is not None and action not in keep:
                continue
            world = _positions_3d(world, f"{where_3d}[{subject!r}][{action!r}]")
            if action not in subject_2d:
                raise ValueError(f"{where_2d}[{subject!r}] lacks action {action!r}")
            views = subject_2d[action]
            where = f"{where_2d}[{subject!r}][{action!r}]"
            count = len(known[subject])
            if not isinstance(views, Sequence | np.ndarray) or len(views) != count:
                got = (f"{len(views)} of them" if isinstance(views, Sequence | np.ndarray)
                       else type(views).__name__)  # fmt: skip
                raise ValueError(f"{where} must be a list of {count} arrays (one per camera), "
                                 f"got {got}")  # fmt: skip
            for index, (camera, keypoints) in enumerate(zip(known[subject], views, strict=True)):
                keypoints = np.asarray(keypoints)
                if (keypoints.ndim != 3 or keypoints.shape[1:] != (NUM_JOINTS, 2)
                        or len(keypoints) < len(world)):  # fmt: skip
                    raise ValueError(
                        f"{where}[{index}] must have shape [T >= {len(world)}, {NUM_JOINTS}, 2], "
                        f"got {list(keypoints.shape)}"
                    )
                if not np.issubdtype(keypoints.dtype, np.number):
                    raise ValueError(f"{where}[{index}] must be a numeric array, got "
                                     f"{keypoints.dtype}")  # fmt: skip
                # only the frames kept (those with 3-D targets) must be finite
                _check_finite(keypoints[: len(world)], f"{where}[{index}]")
                local = camera.world_to_camera(world)
                out.append(PoseSequence(
                    subject, action, index,
                    camera.normalize(keypoints[: len(world)]).astype(np.float32),
                    (local - local[:, :1]).astype(np.float32),
                    local[:, 0].astype(np.float32), camera,
                ))  # fmt: skip
    return out


def load_split(
    root: str | os.PathLike,
    split: str = "train",
    name: str = "h36m",
    detector: str = "cpn_ft_h36m_dbb",
    actions: Iterable[str] | None = None,
) -> list[PoseSequence]:
    """The sequences of the training (S1, S5-S8) or test (S9, S11) subjects of a data set in
    ``root`` (see :func:`dataset_files`)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    return load_sequences(*dataset_files(root, name, detector), subjects=SPLITS[split],
                          actions=actions)  # fmt: skip


class ClipDataset(Dataset):
    """Fixed-length clips of pose sequences, for sequence-to-sequence models.

    Clip starts are ``0, stride, 2 * stride, ...`` until a clip reaches the end of its sequence
    (``stride = frames`` gives non-overlapping clips). Frames past the end repeat the last one;
    ``valid`` marks the real frames.

    Args:
        sequences: the sequences to cut.
        frames: clip length ``F``.
        stride: step between clip starts; defaults to ``frames``.
        flip_prob: probability of a horizontal flip (training augmentation), drawn from
            ``(seed, epoch, index)``; call :meth:`set_epoch` before each epoch.
        seed: augmentation seed.

    Each item is a dict of tensors: ``inputs_2d [F, 17, 2]``, ``targets_3d [F, 17, 3]``
    (float32), ``valid [F]`` (bool), ``sequence`` and ``start`` (int64: which sequence, from
    which frame) and ``flipped`` (bool).
    """

    def __init__(
        self,
        sequences: Sequence[PoseSequence],
        frames: int,
        stride: int | None = None,
        flip_prob: float = 0.0,
        seed: int = 0,
    ) -> None:
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise ValueError(f"frames must be a positive integer, got {frames!r}")
        stride = frames if stride is None else stride
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be a positive integer, got {stride!r}")
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob!r}")
        self.sequences = list(sequences)
        self.frames, self.stride, self.flip_prob = frames, stride, flip_prob
        self.seed, self.epoch = seed, 0
        self.clips: list[tuple[int, int]] = []
        for index, sequence in enumerate(self.sequences):
            if not isinstance(sequence, PoseSequence):
                raise TypeError(f"sequences[{index}] must be a PoseSequence, got "
                                f"{type(sequence).__name__}")  # fmt: skip
            length = len(sequence)
            start = 0
            while start < length and (start == 0 or start - stride + frames < length):
                self.clips.append((index, start))
                start += stride

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        sequence_index, start = self.clips[index]
        sequence = self.sequences[sequence_index]
        rows = np.arange(start, start + self.frames)
        valid = rows < len(sequence)
        rows = np.minimum(rows, len(sequence) - 1)
        inputs, targets = sequence.inputs_2d[rows], sequence.targets_3d[rows]
        flipped = False
        if self.flip_prob > 0:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            if rng.random() < self.flip_prob:
                inputs, targets = flip_pose(inputs), flip_pose(targets)
                flipped = True
        return {
            "inputs_2d": torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)),
            "targets_3d": torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32)),
            "valid": torch.from_numpy(valid),
            "sequence": torch.tensor(sequence_index),
            "start": torch.tensor(start),
            "flipped": torch.tensor(flipped),
        }

