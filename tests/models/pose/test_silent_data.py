"""Issue 16, "Nothing silent": bad data, damaged checkpoints, a full disk and foreign official
weights get clear errors (or, for single bad annotations, one counted warning) naming the file,
the record and the field, instead of loading silently or failing later."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.oracles.fixtures import load_fixture
from tokenprune_models.common.checkpoint import (
    DIGEST_KEY,
    load_state_dict_file,
    read_weights_only,
    save_atomic,
    with_digest,
)
from tokenprune_models.common.engine import Trainer, load_training_checkpoint, load_weights
from tokenprune_models.common.simcc import SimCCCodec
from tokenprune_models.pose.data import AnnotationWarning, KeypointDataset, load_annotations
from tokenprune_models.pose.engine import PoseTask, PoseTrainConfig
from tokenprune_models.pose.synthetic import generate_split
from tokenprune_models.pose3d.h36m import load_sequences
from tokenprune_models.pose3d.synthetic import write_dataset

# ----------------------------------------------------------------------------- COCO files


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("silent_coco")
    path = generate_split(root, "val", 4, seed=5, image_size=(96, 96), max_people=2)
    return root, json.loads(path.read_text())


def _write(root: Path, data: dict, name: str = "person_keypoints_bad.json") -> Path:
    path = root / "annotations" / name
    path.write_text(json.dumps(data))  # NaN and Infinity are written as JavaScript literals
    return path


def _labelled(ann: dict) -> int:
    """Index of the first labelled keypoint's x in ``ann["keypoints"]``."""
    return next(3 * k for k in range(17) if ann["keypoints"][3 * k + 2] > 0)


def test_non_finite_and_absurd_values_are_skipped_with_one_counted_warning(coco):
    root, data = coco
    data = json.loads(json.dumps(data))
    anns = data["annotations"]
    assert len(anns) >= 6
    anns[0]["keypoints"][_labelled(anns[0])] = float("nan")
    anns[1]["bbox"][2] = float("inf")
    anns[2]["bbox"] = [1e30, 1e30, 1e30, 1e30]
    anns[3]["keypoints"][_labelled(anns[3]) + 2] = 7  # visibility 7
    anns[4]["area"] = float("nan")
    path = _write(root, data)
    with pytest.warns(AnnotationWarning) as record:
        people = load_annotations(path, root / "images" / "val")
    assert len(record) == 1
    message = str(record[0].message)
    assert "skipped 5 annotation(s) of" in message and "person_keypoints_bad.json" in message
    assert f"first: annotation {anns[0]['id']}, field 'keypoints'" in message
    assert len(people) == len(anns) - 5
    assert {p.annotation_id for p in people} == {a["id"] for a in anns[5:]}
    for person in people:
        assert np.isfinite(person.keypoints).all() and np.isfinite(person.box).all()


def test_the_dataset_never_yields_nan_targets_or_fails_in_a_transform(coco):
    root, data = coco
    data = json.loads(json.dumps(data))
    anns = data["annotations"]
    anns[0]["keypoints"][_labelled(anns[0])] = float("nan")  # NaN SimCC targets with weight 1
    anns[1]["bbox"][3] = float("-inf")  # numpy LinAlgError in affine_matrix
    path = _write(root, data)
    with pytest.warns(AnnotationWarning, match=r"skipped 2 annotation\(s\)"):
        dataset = KeypointDataset(path, root / "images" / "val", (64, 48),
                                  codec=SimCCCodec((64, 48)))  # fmt: skip
    assert len(dataset) == len(anns) - 2
    for index in range(len(dataset)):
        item = dataset[index]
        for key in ("target_x", "target_y", "target_weight", "keypoints"):
            assert torch.isfinite(item[key]).all(), (index, key)


def test_a_file_of_only_unusable_annotations_is_rejected(coco):
    root, data = coco
    data = json.loads(json.dumps(data))
    for ann in data["annotations"]:
        ann["bbox"][0] = float("nan")
    path = _write(root, data)
    first = data["annotations"][0]["id"]
    with pytest.raises(ValueError, match=rf"person_keypoints_bad\.json.*first: annotation "
                                         rf"{first}, field 'bbox'"):  # fmt: skip
        load_annotations(path, root / "images" / "val")


def test_duplicate_image_ids_reject_the_file(coco):
    root, data = coco
    data = json.loads(json.dumps(data))
    data["images"][1]["id"] = data["images"][0]["id"]
    path = _write(root, data)
    with pytest.raises(ValueError, match=r"person_keypoints_bad\.json.*image id 1 appears "
                                         r"twice .*field 'id'"):  # fmt: skip
        load_annotations(path, root / "images" / "val")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"images": None}, r"field 'images' must be a list of records, got null"),
        ({"annotations": {"1": {}}}, r"field 'annotations' must be a list of records, got an "
                                     r"object"),
        ({"annotations": ["x"]}, r"annotations\[0\] must be an object, got a string"),
    ],
)  # fmt: skip
def test_malformed_json_structure_is_a_value_error_naming_the_field(coco, change, message):
    root, data = coco
    path = _write(root, {**data, **change})
    with pytest.raises(ValueError, match=r"person_keypoints_bad\.json.*" + message):
        load_annotations(path, root / "images" / "val")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("bbox", ["1", "2", "3", "4"], r"field 'bbox' must be a list of numbers"),
        ("bbox", [1, 2, 3], r"field 'bbox' must have 4 numbers, got 3"),
        ("image_id", 999, r"field 'image_id' refers to image 999, which 'images' lacks"),
        ("image_id", "1", r"field 'image_id' must be an integer, got a string"),
        ("id", "seven", r"field 'id' must be an integer"),
    ],
)  # fmt: skip
def test_malformed_annotations_name_the_annotation_and_field(coco, field, value, message):
    root, data = coco
    data = json.loads(json.dumps(data))
    data["annotations"][2][field] = value
    ann_id = value if field == "id" else data["annotations"][2]["id"]
    path = _write(root, data)
    with pytest.raises(ValueError, match=rf"bad\.json.*malformed annotation {ann_id!r}: "
                                         + message):  # fmt: skip
        load_annotations(path, root / "images" / "val")


def test_fractional_wholebody_visibility_counts_as_labelled(tmp_path):
    # COCO-WholeBody stores some hand/face visibilities as confidences in (0, 1)
    path = generate_split(tmp_path, "val", 1, seed=2, wholebody=True, image_size=(96, 96),
                          max_people=1)  # fmt: skip
    data = json.loads(path.read_text())
    hand = data["annotations"][0]["lefthand_kpts"]
    hand[0:3] = [40.0, 40.0, 0.14]
    path.write_text(json.dumps(data))
    dataset = KeypointDataset(path, tmp_path / "images" / "val", (64, 48), num_keypoints=133)
    assert dataset.people[0].keypoints[91, 2] == pytest.approx(0.14)  # 17 + 6 + 68
    assert dataset[0]["visible"][91] == 1


# ----------------------------------------------------------------------------- Human3.6M files


@pytest.fixture(scope="module")
def motion(tmp_path_factory):
    root = tmp_path_factory.mktemp("silent_motion")
    paths = write_dataset(root, frames=12, seed=3, subjects=("S1",), actions=("Walking",))
    return paths


def _read(path):
    with np.load(path, allow_pickle=True) as z:
        return {key: z[key].item() if z[key].dtype == object else z[key] for key in z.files}


def test_nan_in_a_3d_array_rejects_the_file(motion, tmp_path):
    path_3d, path_2d, _ = motion
    data = _read(path_3d)
    data["positions_3d"]["S1"]["Walking"][5, 3, 1] = np.nan
    bad = tmp_path / "data_3d_nan.npz"
    np.savez(bad, **data)
    with pytest.raises(ValueError, match=r"data_3d_nan\.npz.*positions_3d\['S1'\]\['Walking'\] "
                                         r"holds non-finite values .* at frame 5, joint 3"):
        load_sequences(bad, path_2d)


def test_inf_in_a_2d_array_rejects_the_file(motion, tmp_path):
    path_3d, path_2d, _ = motion
    data = _read(path_2d)
    data["positions_2d"]["S1"]["Walking"][2][7, 0, 0] = np.inf
    bad = tmp_path / "data_2d_inf.npz"
    np.savez(bad, **data)
    with pytest.raises(ValueError, match=r"data_2d_inf\.npz.*positions_2d\['S1'\]\['Walking'\]"
                                         r"\[2\] holds non-finite values .* at frame 7, joint 0"):
        load_sequences(path_3d, bad)


# ----------------------------------------------------------------------------- checkpoints


class TinyTask(PoseTask):
    image_size = (8, 8)
    num_keypoints = 2
    flip_pairs = ()

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))

    def loss(self, outputs, batch, epoch):
        raise NotImplementedError

    def predict(self, model, images, flip):
        raise NotImplementedError


def test_pose_evaluation_uses_eval_batch_size(tmp_path, monkeypatch):
    from tokenprune_models.pose import engine as pose_engine

    seen = []
    monkeypatch.setattr(pose_engine, "evaluate_model",
                        lambda task, model, data, annotations, device, batch_size, *rest:
                        seen.append(batch_size) or {})  # fmt: skip
    data = type("Data", (), {"annotation_file": None})()
    config = PoseTrainConfig(output=str(tmp_path), batch_size=8, eval_batch_size=5)
    TinyTask().evaluate(nn.Linear(1, 1), data, torch.device("cpu"), config)
    assert seen == [5] and PoseTrainConfig(output=str(tmp_path)).eval_batch_size == 64


PATTERN = torch.arange(12, dtype=torch.float32).reshape(3, 4) * 1.25 + 1000.0


def _tiny_trainer(output: Path) -> Trainer:
    trainer = Trainer(TinyTask(), PoseTrainConfig(output=str(output), ema=True, progress=False),
                      train_set=None, device="cpu")  # fmt: skip
    with torch.no_grad():
        trainer.model[0].weight.copy_(PATTERN)
    trainer.model(torch.randn(4, 4)).sum().backward()
    trainer.optimizer.step()  # the optimiser holds moments now
    return trainer


def _flip_a_byte_of(path: Path, tensor: torch.Tensor) -> None:
    data = bytearray(path.read_bytes())
    start = data.find(tensor.numpy().tobytes())
    assert start >= 0 and data.find(tensor.numpy().tobytes(), start + 1) < 0
    data[start + 4 * 6 + 2] ^= 0x40  # inside element 6
    path.write_bytes(bytes(data))


def test_engine_checkpoints_carry_a_digest_that_catches_flipped_bytes(tmp_path):
    trainer = _tiny_trainer(tmp_path / "run")
    path = trainer.save()
    state = torch.load(path, weights_only=True)
    assert "model/0.weight" in state[DIGEST_KEY]["tensors"]
    assert "optimizer/state/[0]/exp_avg" in state[DIGEST_KEY]["tensors"]
    _flip_a_byte_of(path, PATTERN)
    damaged = torch.load(path, weights_only=True)  # torch itself loads it without a word
    assert not torch.equal(damaged["model"]["0.weight"], PATTERN)
    message = r"last\.pt.* is damaged: entry 'model/0\.weight' does not match the digest"
    with pytest.raises(ValueError, match=message):
        _tiny_trainer(tmp_path / "other").resume(path)
    with pytest.raises(ValueError, match=message):
        load_training_checkpoint(path)
    with pytest.raises(ValueError, match=message):
        load_weights(path)


def test_checkpoints_without_a_digest_still_load_and_resume(tmp_path):
    trainer = _tiny_trainer(tmp_path / "run")
    trainer.position.global_step = 5
    old = tmp_path / "old.pt"
    torch.save(trainer.checkpoint_state(), old)  # as written before digests
    resumed = _tiny_trainer(tmp_path / "resumed")
    resumed.resume(old)
    assert resumed.position.global_step == 5
    assert torch.equal(resumed.model[0].weight, trainer.model[0].weight)
    assert load_weights(old).keys() == trainer.model.state_dict().keys()


def test_checkpoints_hold_and_restore_the_gpus_random_state(tmp_path, monkeypatch):
    """With CUDA, every GPU's generator is saved and restored (exact resume of dropout and
    stochastic depth on GPUs); checkpoints without it (CPU runs, older ones) still resume."""
    trainer = _tiny_trainer(tmp_path / "run")
    assert "cuda_rng" in trainer.checkpoint_state()
    without = tmp_path / "without.pt"
    state = trainer.checkpoint_state()
    state.pop("cuda_rng")
    torch.save(with_digest(state), without)
    _tiny_trainer(tmp_path / "a").resume(without)  # tolerated

    gpu_states = [torch.arange(16, dtype=torch.uint8), torch.arange(16, 32, dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [s.clone() for s in gpu_states])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.extend)
    state = trainer.checkpoint_state()
    assert all(torch.equal(a, b) for a, b in zip(state["cuda_rng"], gpu_states, strict=True))
    path = tmp_path / "cuda.pt"
    torch.save(with_digest(state), path)
    _tiny_trainer(tmp_path / "b").resume(path)
    assert all(torch.equal(a, b) for a, b in zip(restored, gpu_states, strict=True))

    state["cuda_rng"] = [torch.zeros(3)]
    torch.save(with_digest(state), path)
    with pytest.raises(ValueError, match=r"cuda\.pt.* entry 'cuda_rng' must be a list of uint8"):
        _tiny_trainer(tmp_path / "c").resume(path)


def _edited(trainer: Trainer, path: Path, edit, digest: bool = True) -> Path:
    """A checkpoint of ``trainer`` changed by ``edit`` (and its digest renewed: a consistent
    file of something else, not a damaged one)."""
    state = trainer.checkpoint_state()
    edit(state)
    torch.save(with_digest(state) if digest else state, path)
    return path


def test_resume_names_the_file_and_entry_that_does_not_fit(tmp_path):
    trainer = _tiny_trainer(tmp_path / "run")
    fresh = _tiny_trainer(tmp_path / "fresh")

    def drop_optimizer(state):
        del state["optimizer"]

    path = _edited(trainer, tmp_path / "no_optimizer.pt", drop_optimizer)
    with pytest.raises(ValueError, match=r"no_optimizer\.pt.* lacks the entry 'optimizer'"):
        fresh.resume(path)

    def misshape_model(state):
        state["model"]["0.weight"] = torch.zeros(5, 4)

    path = _edited(trainer, tmp_path / "shape.pt", misshape_model, digest=False)
    with pytest.raises(ValueError, match=r"shape\.pt.* entry 'model' does not fit the model: 1 "
                                         r"of the wrong shape: '0\.weight' \[5, 4\] \(expected "
                                         r"\[3, 4\]\)"):  # fmt: skip
        fresh.resume(path)

    def misshape_moment(state):
        state["optimizer"]["state"][0]["exp_avg"] = torch.zeros(4, 3)

    path = _edited(trainer, tmp_path / "moment.pt", misshape_moment)
    with pytest.raises(ValueError, match=r"moment\.pt.* entry 'optimizer': state 'exp_avg' of "
                                         r"'0\.weight' has shape \[4, 3\]"):  # fmt: skip
        fresh.resume(path)
    assert torch.equal(fresh.model[0].weight, PATTERN)  # nothing was restored

    def int_key(state):
        state["model"][0] = torch.zeros(1)

    path = _edited(trainer, tmp_path / "int_key.pt", int_key)
    with pytest.raises(ValueError, match=r"int_key\.pt.* entry 'model' has a key that is not a "
                                         r"string: 0"):  # fmt: skip
        fresh.resume(path)
    with pytest.raises(ValueError, match=r"int_key\.pt.* key that is not a string"):
        load_weights(path)


def test_a_state_dict_file_with_a_non_string_key_names_it(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"a.weight": torch.ones(1), 3: torch.ones(1)}, path)
    with pytest.raises(ValueError, match=r"weights\.pth.* key that is not a string: 3 \(int\)"):
        load_state_dict_file(path)


def _torch_write_failure(obj, handle):
    handle.write(b"partial")
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")


def test_a_full_disk_names_the_path_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    trainer = _tiny_trainer(tmp_path / "run")
    good = trainer.save()
    before = good.read_bytes()
    trainer.position.global_step = 9
    monkeypatch.setattr(torch, "save", _torch_write_failure)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: shutil._ntuple_diskusage(
        10**9, 10**9 - 4096, 4096))  # fmt: skip
    with pytest.raises(OSError, match=r"cannot write .*run/last\.pt.*: the disk is full "
                                      r"\(4096 bytes free\).*inline_container.*previous file "
                                      r"there is unchanged") as info:  # fmt: skip
        trainer.save()
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert good.read_bytes() == before
    assert sorted(p.name for p in good.parent.iterdir()) == ["last.pt"]  # no temporary file
    assert load_training_checkpoint(good)["position"]["global_step"] == 0


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_real_enospc_from_the_file_system(tmp_path, monkeypatch):
    real_save = torch.save

    def save_to_a_full_device(obj, handle):
        with open("/dev/full", "wb") as full:  # every write fails with ENOSPC
            real_save(obj, full)

    save_atomic({"w": torch.ones(3)}, tmp_path / "w.pt")
    monkeypatch.setattr(torch, "save", save_to_a_full_device)
    with pytest.raises(OSError, match=r"cannot write .*w\.pt.*No space left on device") as info:
        save_atomic({"w": torch.zeros(300_000)}, tmp_path / "w.pt")
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert torch.equal(read_weights_only(tmp_path / "w.pt")["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["w.pt"]


def test_lifting_checkpoints_go_through_the_same_checks(tmp_path):
    from tokenprune_models.common.presets import resolve_config
    from tokenprune_models.hot import PRESETS
    from tokenprune_models.hot.train import LiftingTask, LiftingTrainConfig

    def trainer(dim: int = 16) -> Trainer:
        task = LiftingTask(resolve_config("hot_mixste", PRESETS, {"num_frames": 9, "dim": dim,
                                                                  "num_kept": 3, "prune_loop": 1}))
        return Trainer(task, LiftingTrainConfig(output=str(tmp_path)), None, device="cpu")

    first = trainer()
    with torch.no_grad():
        first.model.joint_embed.weight.view(-1)[:12].copy_(PATTERN.view(-1))
    path = first.save()
    assert "model/joint_embed.weight" in torch.load(path, weights_only=True)[DIGEST_KEY]["tensors"]
    trainer().resume(path)  # a good file resumes

    other = trainer(dim=32).checkpoint_state()  # another width
    torch.save(other, tmp_path / "shapes.pt")
    with pytest.raises(ValueError, match=r"shapes\.pt.* entry 'model' does not fit the model: .*"
                                         r"of the wrong shape: .*'joint_embed\.weight' \[32, 2\]"):
        trainer().resume(tmp_path / "shapes.pt")

    _flip_a_byte_of(path, PATTERN)
    with pytest.raises(ValueError, match=r"last\.pt.* is damaged: entry "
                                         r"'model/joint_embed\.weight'"):  # fmt: skip
        trainer().resume(path)


# ----------------------------------------------------------------------------- converters


def test_gtpt_head_axis_must_be_x_or_y():
    from tokenprune_models.gtpt import convert_official_state_dict

    with pytest.raises(ValueError, match=r"not in the official GTPT layout: "
                                         r"\['ema_mlp_head_z\.0\.weight'\]"):  # fmt: skip
        convert_official_state_dict({"ema_features.human_token": torch.zeros(1, 1, 8),
                                     "ema_mlp_head_z.0.weight": torch.zeros(3)})  # fmt: skip
    with pytest.raises(ValueError, match=r"\['mlp_head_xy\.0\.weight'\]"):
        convert_official_state_dict({"ema_features.human_token": torch.zeros(1, 1, 8),
                                     "mlp_head_xy.0.weight": torch.zeros(3)})  # fmt: skip


@pytest.mark.parametrize("module", ["gtpt", "tokenpose", "hot"])
def test_converters_reject_non_string_keys(module):
    convert = __import__(f"tokenprune_models.{module}", fromlist=["x"]).convert_official_state_dict
    with pytest.raises(TypeError, match=r"the key 0 \(int\)"):
        convert({0: torch.zeros(1)})


def test_gtpt_official_file_errors_list_official_names_and_the_file(tmp_path):
    from tokenprune_models.gtpt import load_official_checkpoint

    official, _ = load_fixture("gtpt_t_coco")  # the official layout, both branches
    official = dict(official)
    gone = "ema_features.transformer.group_layers.1.0.fn.fn.to_qkv.weight"
    del official[gone]
    official["ema_mlp_head_x.0.weight"] = torch.zeros(3, 3)
    official["ema_mlp_head_z.0.weight"] = torch.zeros(3)  # there is no head axis z
    path = tmp_path / "gtpt_t.pth"
    torch.save({"state_dict": official}, path)
    with pytest.raises(ValueError) as info:
        load_official_checkpoint(path, "gtpt_t_coco")
    message = str(info.value)
    assert "gtpt_t.pth" in message and "in the official GTPT layout" in message
    assert f"1 missing: {gone!r}" in message
    assert "1 unexpected (not in the official GTPT layout of this model): " \
           "'ema_mlp_head_z.0.weight'" in message  # fmt: skip
    assert "1 of the wrong shape: 'ema_mlp_head_x.0.weight' [3, 3] (expected" in message
    assert "blocks." not in message  # nothing under our names


def test_tokenpose_official_file_errors_list_official_names_and_the_file(tmp_path):
    from tokenprune_models.tokenpose import build_tokenpose, load_official_checkpoint

    official, _ = load_fixture("ppt_s_coco")
    official = dict(official)
    official["features.transformer.layers.3.0.norm.weight"] = torch.zeros(7)
    del official["features.mlp_head.1.bias"]
    path = tmp_path / "ppt_s.pth"
    torch.save(official, path)
    with pytest.raises(ValueError, match=r"ppt_s\.pth.* does not fit the model in the official "
                                         r"TokenPose/PPT layout: 1 missing: "
                                         r"'features\.mlp_head\.1\.bias'; 1 of the wrong shape: "
                                         r"'features\.transformer\.layers\.3\.0\.norm\.weight' "
                                         r"\[7\] \(expected \[192\]\)"):  # fmt: skip
        load_official_checkpoint(path, build_tokenpose("ppt_s", backend="torch"))


def test_hot_official_file_errors_list_official_names_and_the_file(tmp_path):
    from tokenprune_models.hot import build_hot_mixste, load_official_checkpoint
    from tokenprune_models.hot.train import LiftingTask, load_official

    sizes = {"num_frames": 27, "dim": 64, "num_kept": 9, "prune_loop": 1}
    official, _ = load_fixture("hot_mixste_small")
    official = dict(official, **{"STEblocks.0.attn.qkv.weight": torch.zeros(3, 64)})
    path = tmp_path / "hot.pth"
    torch.save({"model": official}, path)
    message = (r"hot\.pth.* does not fit the model in the official MixSTE/HoT layout: 1 of the "
               r"wrong shape: 'STEblocks\.0\.attn\.qkv\.weight' \[3, 64\] \(expected \[192, 64\]")
    with pytest.raises(ValueError, match=message):
        load_official_checkpoint(path, "hot_mixste", **sizes)
    task = LiftingTask(build_hot_mixste("hot_mixste", **sizes).config)
    with pytest.raises(ValueError, match=message):
        load_official(path, task)  # --eval-only --official-checkpoint
    model = build_hot_mixste("hot_mixste", **sizes)
    mine = tmp_path / "mine.pt"
    torch.save({k: v for k, v in model.state_dict().items() if k != "head.bias"}, mine)
    with pytest.raises(ValueError, match=r"mine\.pt.* does not fit the model: 1 missing: "
                                         r"'head\.bias'"):  # --eval-only --checkpoint
        task.load_initial_weights(task.build_model(), load_weights(mine), repr(str(mine)))


@pytest.mark.parametrize(
    ("case", "module", "kwargs"),
    [("gtpt_t_coco", "gtpt", {}), ("ppt_s_coco", "tokenpose", {"ppt": True}),
     ("hot_mixste_small", "hot", {})],
)  # fmt: skip
def test_official_names_invert_the_converters_on_the_fixtures(case, module, kwargs):
    convert = __import__(f"tokenprune_models.{module}.convert", fromlist=["x"])
    state_dict, _ = load_fixture(case)
    converted = convert.convert_official_state_dict(state_dict)
    for ours, value in converted.items():
        name = convert.official_name(ours, **kwargs)
        assert state_dict[name] is value, (ours, name)
