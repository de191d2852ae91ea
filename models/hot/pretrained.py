"""MixSTE and HoT w. MixSTE weights trained by this project and shipped with it, and their
loader.

    from models.hot.pretrained import load_pretrained

    model = load_pretrained("hot_mixste_synthetic")     # 27-frame clips, 9 frames kept
    poses = model(inputs_2d).poses                      # [B, 27, 17, 2] -> [B, 27, 17, 3]

Each entry names its weights file (a weights-only, half-precision state_dict under
``models/hot/weights/``), the network (a training config's ``model`` section: ``variant``
and :class:`~models.hot.model.MixSTEConfig` fields; the training configs are
``models/hot/configs/synthetic_*.yaml``) and a model card (``<file>.md``) with the command,
seed, steps, wall time and learning curve that produced it; ``<file>.json`` is the
machine-readable record (:mod:`models.hot.release`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from models.common.checkpoint import check_state_dict, load_state_dict_file

from .build import mixste_config
from .model import MixSTE, MixSTEConfig

__all__ = ["PRETRAINED", "PretrainedLifter", "load_pretrained"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class PretrainedLifter:
    """One set of shipped lifting weights.

    Attributes:
        name: the key of :data:`PRETRAINED`.
        file: the weights file's name under ``models/hot/weights/``.
        model: the network: ``variant`` and :class:`MixSTEConfig` fields (a config's
            ``model`` section; see :func:`~models.hot.build.mixste_config`).
        summary: one line on what the weights are.
    """

    name: str
    file: str
    model: dict = field(hash=False)
    summary: str

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.file

    @property
    def card_path(self) -> Path:
        return self.path.with_suffix(".md")

    @property
    def record_path(self) -> Path:
        return self.path.with_suffix(".json")

    def model_config(self) -> MixSTEConfig:
        """The network's configuration."""
        return mixste_config(**self.model)


_DEMO_SIZE = {"num_frames": 27, "dim": 64}
PRETRAINED: dict[str, PretrainedLifter] = {
    "mixste_synthetic": PretrainedLifter(
        name="mixste_synthetic",
        file="mixste_synthetic_27f.pt",
        model={"variant": "mixste", **_DEMO_SIZE},
        summary="MixSTE, 27-frame clips, width 64, 8 loops, trained from scratch on the "
        "synthetic motion set (models.pose3d.synthetic, 1500 frames per sequence, seed 0)",
    ),
    "hot_mixste_synthetic": PretrainedLifter(
        name="hot_mixste_synthetic",
        file="hot_mixste_synthetic_27f.pt",
        model={"variant": "hot", **_DEMO_SIZE, "num_kept": 9, "prune_loop": 1},
        summary="HoT w. MixSTE (9 of 27 frames kept after loop 1, recovered before the head), "
        "width 64, 8 loops, trained from scratch on the synthetic motion set (1500 frames per "
        "sequence, seed 0)",
    ),
}


def load_pretrained(name: str) -> MixSTE:
    """Build the network of a :data:`PRETRAINED` entry and load its shipped weights (strictly,
    with ``weights_only=True``, in float32).

    Returns:
        The model in eval mode.

    Raises:
        ValueError: an unknown name, or a weights file that does not fit the network (missing,
            unexpected or mis-shaped entries, the file named).
        FileNotFoundError: the weights file is missing (e.g. a checkout without it).
    """
    if name not in PRETRAINED:
        raise ValueError(f"name must be one of {sorted(PRETRAINED)}, got {name!r}")
    entry = PRETRAINED[name]
    model = MixSTE(entry.model_config())
    weights = load_state_dict_file(entry.path)
    check_state_dict(weights, model.state_dict(), repr(str(entry.path)))
    model.load_state_dict(weights)  # copies into float32
    return model.eval()
