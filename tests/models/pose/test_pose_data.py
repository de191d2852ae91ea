"""Synthetic data, COCO loading, top-down transforms and OKS evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from tokenprune_models.common.heatmap import HeatmapCodec
from tokenprune_models.common.keypoints import COCO_FLIP_PAIRS
from tokenprune_models.common.simcc import SimCCCodec
from tokenprune_models.pose.data import KeypointDataset, load_annotations
from tokenprune_models.pose.evaluation import (
    evaluate_keypoints,
    evaluate_wholebody,
    keypoint_results,
)
from tokenprune_models.pose.synthetic import generate_split, render_image
from tokenprune_models.pose.transforms import Augmentation, affine_matrix, transform_points, warp


@pytest.fixture(scope="module")
def coco_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return root, generate_split(root, "val", 12, seed=3, image_size=(128, 128))


@pytest.fixture(scope="module")
def wholebody_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_wb")
    return root, generate_split(root, "val", 8, seed=4, wholebody=True, image_size=(128, 128))


def test_generation_is_deterministic(tmp_path):
    a = generate_split(tmp_path / "a", "train", 3, seed=7, image_size=(96, 96))
    b = generate_split(tmp_path / "b", "train", 3, seed=7, image_size=(96, 96))
    assert a.read_text() == b.read_text()
    first = np.asarray(Image.open(tmp_path / "a" / "images" / "train" / "000001.jpg"))
    second = np.asarray(Image.open(tmp_path / "b" / "images" / "train" / "000001.jpg"))
    assert np.array_equal(first, second)
    c = generate_split(tmp_path / "c", "train", 3, seed=8, image_size=(96, 96))
    assert a.read_text() != c.read_text()


def test_annotations_round_trip(coco_set):
    root, path = coco_set
    data = json.loads(path.read_text())
    people = load_annotations(path, root / "images" / "val")
    assert len(people) == len(data["annotations"]) > 12  # several people per image
    for person, ann in zip(people, data["annotations"], strict=True):
        assert np.allclose(person.keypoints.reshape(-1), ann["keypoints"])
        assert person.box == tuple(ann["bbox"]) and person.area == ann["area"]
        labelled = person.keypoints[:, 2] > 0
        assert ann["num_keypoints"] == labelled.sum()
        # labelled keypoints lie in the image; unlabelled ones are zeros
        assert (person.keypoints[labelled, :2] >= -0.5).all()
        assert (person.keypoints[labelled, :2] <= 127.5).all()
        assert (person.keypoints[~labelled] == 0).all()
    assert {v for p in people for v in p.keypoints[:, 2]} <= {0, 1, 2}


def test_rendered_keypoints_sit_on_the_figure():
    _, keypoints, visibility, silhouettes = render_image(5, (160, 160), max_people=1)
    mask = np.asarray(silhouettes[0]) > 0
    for (x, y), v in zip(keypoints[0][:17], visibility[0][:17], strict=True):
        if v == 2:
            xi, yi = round(float(x)), round(float(y))
            near = mask[max(yi - 2, 0) : yi + 3, max(xi - 2, 0) : xi + 3]
            assert near.any(), (x, y)


def test_wholebody_annotations_round_trip(wholebody_set):
    root, path = wholebody_set
    people = load_annotations(path, root / "images" / "val", num_keypoints=133)
    data = json.loads(path.read_text())
    assert people[0].keypoints.shape == (133, 3)
    ann = data["annotations"][0]
    assert np.allclose(people[0].keypoints[23:91].reshape(-1), ann["face_kpts"])
    assert np.allclose(people[0].keypoints[112:].reshape(-1), ann["righthand_kpts"])


def test_a_coco_file_is_not_a_wholebody_file(coco_set):
    root, path = coco_set
    with pytest.raises(ValueError, match=r"malformed annotation .*foot_kpts"):
        load_annotations(path, root / "images" / "val", num_keypoints=133)


@given(
    x=st.integers(8, 111), y=st.integers(8, 87),
    cx=st.floats(30, 90), cy=st.floats(25, 65), width=st.floats(50, 140),
    rotation=st.floats(-60, 60), flip=st.booleans(),
)  # fmt: skip
def test_transforms_move_keypoints_exactly_as_pixels(x, y, cx, cy, width, rotation, flip):
    # a bright Gaussian dot at (x, y); after the same transform, the dot's centroid in the crop
    # must sit where the transformed keypoint says (a smooth dot keeps a well-defined centroid
    # when the crop shrinks it below a pixel)
    yy, xx = np.mgrid[0:96, 0:120]
    canvas = 255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.5**2))
    image = Image.fromarray(canvas.round().astype(np.uint8))
    point = np.array([[float(x), float(y)]])
    centre = np.array([cx, cy])
    if flip:  # as the dataset flips: mirror the image, then the coordinates
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        point[:, 0] = canvas.shape[1] - 1 - point[:, 0]
        centre[0] = canvas.shape[1] - 1 - centre[0]
    matrix = affine_matrix(centre, np.array([width, width * 4 / 3]), rotation, (64, 48))
    crop = np.asarray(warp(image, matrix, (64, 48)), dtype=np.float64)
    target = transform_points(point, matrix)[0]
    if not (6 <= target[0] <= 41 and 6 <= target[1] <= 57):
        return  # the dot (or its tail) left the crop
    yy, xx = np.mgrid[0:64, 0:48]
    total = crop.sum()
    centroid = np.array([(crop * xx).sum() / total, (crop * yy).sum() / total])
    assert np.abs(centroid - target).max() < 0.15
    inverse = affine_matrix(centre, np.array([width, width * 4 / 3]), rotation, (64, 48),
                            inverse=True)  # fmt: skip
    assert np.allclose(transform_points(target[None], inverse), point)


def test_dataset_items_and_deterministic_augmentation(coco_set):
    root, path = coco_set
    codec = SimCCCodec((64, 48))
    dataset = KeypointDataset(
        path, root / "images" / "val", (64, 48), codec=codec,
        augmentation=Augmentation(), flip_pairs=COCO_FLIP_PAIRS, seed=1,
    )  # fmt: skip
    item = dataset[2]
    assert item["image"].shape == (3, 64, 48)
    assert item["target_x"].shape == (17, 96) and item["target_y"].shape == (17, 128)
    # the targets are the codec's encoding of the item's (augmented) keypoints
    targets = codec.encode(item["keypoints"][None], item["visible"][None])
    assert all(torch.equal(item[key], value[0]) for key, value in targets.items())
    again = dataset[2]
    assert all((item[k] == again[k]).all() for k in item)
    dataset.set_epoch(1)
    assert not (dataset[2]["image"] == item["image"]).all()


def test_heatmap_targets_of_dataset_items_peak_at_the_keypoints(coco_set):
    root, path = coco_set
    codec = HeatmapCodec((64, 48), (16, 12))
    dataset = KeypointDataset(path, root / "images" / "val", (64, 48), codec=codec)
    item = dataset[0]
    assert item["target_heatmaps"].shape == (17, 16, 12)
    labelled = item["target_weight"] > 0
    assert labelled.sum() > 5
    coords, _ = codec.decode(item["target_heatmaps"][None])
    error = (coords[0] - item["keypoints"]).abs()[labelled]
    assert (error <= 2.0).all()  # within half a cell
    with pytest.raises(ValueError, match=r"codec.image_size \(64, 48\) must equal image_size"):
        KeypointDataset(path, root / "images" / "val", (128, 96), codec=codec)
    with pytest.raises(ValueError, match=r"flip pair \(17, 18\) is out of range for 17"):
        KeypointDataset(path, root / "images" / "val", (64, 48), flip_pairs=[(17, 18)])


def test_ground_truth_scores_ap_one_and_noise_less(coco_set, wholebody_set):
    root, path = coco_set
    people = load_annotations(path, root / "images" / "val")
    ids = [p.image_id for p in people]
    exact = np.stack([p.keypoints[:, :2] for p in people])
    scores = np.ones((len(people), 17))
    exact_ap = evaluate_keypoints(path, keypoint_results(ids, exact, scores))["AP"]
    assert exact_ap == pytest.approx(1.0)
    noisy = exact + np.random.default_rng(0).normal(0, 4, exact.shape)
    perturbed = evaluate_keypoints(path, keypoint_results(ids, noisy, scores))
    assert 0.0 < perturbed["AP"] < 0.99
    root, path = wholebody_set
    people = load_annotations(path, root / "images" / "val", num_keypoints=133)
    ids = [p.image_id for p in people]
    exact = np.stack([p.keypoints[:, :2] for p in people])
    stats = evaluate_wholebody(path, keypoint_results(ids, exact, np.ones((len(people), 133))))
    assert set(stats) == {"body", "foot", "face", "hand", "wholebody"}
    assert all(s["AP"] == pytest.approx(1.0) for s in stats.values())


def test_bad_data_gets_errors_naming_the_file(tmp_path, coco_set):
    root, path = coco_set
    with pytest.raises(FileNotFoundError, match=r"image folder .*missing"):
        load_annotations(path, tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"annotation file .*nothing\.json"):
        load_annotations(tmp_path / "nothing.json", root / "images" / "val")
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [')
    with pytest.raises(ValueError, match=r"broken\.json.* is not valid JSON"):
        load_annotations(broken, root / "images" / "val")
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"people": []}')
    with pytest.raises(ValueError, match=r"wrong\.json.* not in the COCO format"):
        load_annotations(wrong, root / "images" / "val")
    # an image that fails to decode
    images = tmp_path / "images"
    images.mkdir()
    data = json.loads(path.read_text())
    (images / data["images"][0]["file_name"]).write_bytes(b"not a jpeg")
    dataset = KeypointDataset(path, images, (64, 48))
    first = next(i for i, p in enumerate(dataset.people) if p.image_id == data["images"][0]["id"])
    with pytest.raises(ValueError, match=r"cannot decode image .*000001\.jpg"):
        dataset[first]
    other = next(i for i, p in enumerate(dataset.people) if p.image_id != data["images"][0]["id"])
    with pytest.raises(FileNotFoundError, match=r"image .*\.jpg.* does not exist"):
        dataset[other]
