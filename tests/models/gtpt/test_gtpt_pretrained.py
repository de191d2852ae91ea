"""The shipped GTPT weights: they load through the user's loader and beat chance.

A cheap check on a few images; the accuracy itself is measured by ``make demo`` (README)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tokenprune_models.gtpt.demo import mean_pose, pck
from tokenprune_models.gtpt.pretrained import PRETRAINED, load_pretrained
from tokenprune_models.gtpt.train import make_task
from tokenprune_models.pose.cli import load_config
from tokenprune_models.pose.data import KeypointDataset
from tokenprune_models.pose.engine import predict_dataset
from tokenprune_models.pose.synthetic import generate_split


def test_every_entry_has_its_files():
    for entry in PRETRAINED.values():
        assert entry.path.is_file(), entry.path
        assert entry.config_path.is_file(), entry.config_path
        assert entry.card_path.is_file(), entry.card_path
        assert entry.path.stat().st_size < 10 * 2**20  # weights only, half precision


def test_load_pretrained_checks_its_name():
    with pytest.raises(ValueError, match="gtpt_t_synthetic"):
        load_pretrained("gtpt_x")


@pytest.fixture(scope="module")
def few_images(tmp_path_factory):
    """Six validation images of the demo's data (seed 0) and 24 training images for the mean
    pose, at the renderer's default size."""
    root = tmp_path_factory.mktemp("synthetic")
    generate_split(root, "train", 24, seed=0)
    generate_split(root, "val", 6, seed=0)
    return root


def test_shipped_weights_load_and_beat_the_mean_pose(few_images):
    torch.manual_seed(0)
    entry = PRETRAINED["gtpt_t_synthetic"]
    model = load_pretrained("gtpt_t_synthetic")
    assert not model.training and model.keep_rates == (1.0, 0.7, 0.3, 0.1)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    task = make_task(load_config(entry.config_path))
    size = task.image_size
    root = few_images
    train = KeypointDataset(root / "annotations/person_keypoints_train.json",
                            root / "images/train", size)  # fmt: skip
    val = KeypointDataset(root / "annotations/person_keypoints_val.json", root / "images/val",
                          size)  # fmt: skip
    _, points, _ = predict_dataset(task, model, val, "cpu", 16, 0, flip=True)
    relative = mean_pose(train.people)
    chance = np.stack([relative * p.box[2:] + p.box[:2] for p in val.people])
    model_pck, chance_pck = pck(points, val.people), pck(chance, val.people)
    assert model_pck > chance_pck + 0.2, (model_pck, chance_pck)
