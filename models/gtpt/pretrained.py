"""GTPT weights trained by this project and shipped with it, and their loader.

    from models.gtpt.pretrained import load_pretrained

    model = load_pretrained("gtpt_t_synthetic")          # GTPT-T, 128x96, published keep rates
    x_logits, y_logits = model(images)                   # images [B, 3, 128, 96]

Each entry names its weights file (a weights-only, half-precision state_dict under
``models/gtpt/weights/``), the training config whose ``model`` section builds the network, and
a model card (``<file>.md``) with the commands, seed, steps, wall time and learning curve that
produced it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from models.common.checkpoint import check_state_dict, load_state_dict_file
from models.common.presets import config_from_section

from .config import PRESETS, GTPTConfig
from .model import GTPT

__all__ = ["PRETRAINED", "PretrainedWeights", "load_pretrained"]

PACKAGE_DIR = Path(__file__).resolve().parent
WEIGHTS_DIR = PACKAGE_DIR / "weights"
CONFIG_DIR = PACKAGE_DIR / "configs"


@dataclass(frozen=True)
class PretrainedWeights:
    """One set of shipped weights.

    Attributes:
        name: the key of :data:`PRETRAINED`.
        file: the weights file's name under ``models/gtpt/weights/``.
        config: the training config's name under ``models/gtpt/configs/``; its ``model``
            section (a preset and its overrides: input size, keep rates) builds the network.
        summary: one line on what the weights are.
    """

    name: str
    file: str
    config: str
    summary: str

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.file

    @property
    def config_path(self) -> Path:
        return CONFIG_DIR / self.config

    @property
    def card_path(self) -> Path:
        return self.path.with_suffix(".md")

    def model_config(self) -> GTPTConfig:
        """The network of the training config's ``model`` section."""
        config = yaml.safe_load(self.config_path.read_text()) or {}
        return config_from_section(config.get("model", {}), PRESETS)


PRETRAINED: dict[str, PretrainedWeights] = {
    "gtpt_t_synthetic": PretrainedWeights(
        name="gtpt_t_synthetic",
        file="gtpt_t_synthetic_128x96.pt",
        config="synthetic_t_128x96.yaml",
        summary="GTPT-T, COCO-17 layout, 128x96 input, trained from scratch on the synthetic "
        "data set (models.pose.synthetic, seed 0) with the project's two-stage recipe",
    ),
}


def load_pretrained(
    name: str = "gtpt_t_synthetic", keep_rates: Sequence[float] | None = None
) -> GTPT:
    """Build the network of a :data:`PRETRAINED` entry and load its shipped weights (strictly,
    with ``weights_only=True``, in float32).

    Args:
        name: a key of :data:`PRETRAINED`.
        keep_rates: the model's keep rates; the training config's (GTPT's published rates)
            if None. ``[1.0] * 4`` is the unpruned model.

    Returns:
        The model in eval mode.

    Raises:
        ValueError: an unknown name.
        FileNotFoundError: the weights file is missing (e.g. a checkout without it).
    """
    if name not in PRETRAINED:
        raise ValueError(f"name must be one of {sorted(PRETRAINED)}, got {name!r}")
    entry = PRETRAINED[name]
    config = entry.model_config()
    if keep_rates is not None:
        config = replace(config, keep_rates=keep_rates)
    model = GTPT(config)
    weights = load_state_dict_file(entry.path)
    check_state_dict(weights, model.state_dict(), repr(str(entry.path)))
    model.load_state_dict(weights)  # copies into float32
    return model.eval()
