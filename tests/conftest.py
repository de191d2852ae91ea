"""Test configuration.

Triton runs in interpreter mode without a GPU; the variable must be set before any
``@triton.jit`` function is defined, hence before the library is imported.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

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
