"""Test configuration.

Triton runs in interpreter mode without a GPU; the variable must be set before any
``@triton.jit`` function is defined, hence before the library is imported.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
from hypothesis import HealthCheck, settings

# The first call of a case may pay one-off costs (kernel compilation, interpreter warm-up), so
# no per-example deadline. "ci" keeps the suite within its time budget; "thorough" explores more.
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "thorough", parent=settings.get_profile("ci"), max_examples=500
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def synthetic_pose_data(tmp_path_factory):
    """A tiny synthetic COCO-format data set (6 training and 3 validation images)."""
    from tokenprune_models.pose.synthetic import generate_split

    root = tmp_path_factory.mktemp("synthetic_pose")
    generate_split(root, "train", 6, seed=1, image_size=(96, 96), max_people=2)
    generate_split(root, "val", 3, seed=2, image_size=(96, 96), max_people=2)
    return root
