"""Every model of the zoo by name, in the manner of timm's ``create_model``.

    from tokenprune_models import create_model, list_models

    list_models()                                        # every name, sorted
    list_models("gtpt_*", pretrained=True)               # ['gtpt_t_synthetic']
    model = create_model("gtpt_s_coco")                  # GTPT-S as published, random init
    model = create_model("ppt_s", image_size=(128, 96))  # a config field overridden
    model = create_model("gtpt_t_synthetic", pretrained=True)        # the shipped weights
    model = create_model("ppt_s", checkpoint="runs/ppt_s/best.pt")   # a checkpoint of ours
    model = create_model("gtpt_s_coco", official_checkpoint="gtpt_s_coco.pth")  # a release

A name is a *family* (GTPT, TokenPose/PPT/DPPT, HEViTPose, MixSTE/HoT) and a network config: a
published preset of the family (``gtpt_t_coco``, ``ppt_s``, ``hot_mixste``, ...) or, for the
weights this project trained and ships (``gtpt_t_synthetic``, ``mixste_synthetic``,
``hot_mixste_synthetic``), a preset with the overrides those were trained with. Each family has
one checkpoint filter (``checkpoint_filter`` in its ``convert`` or ``build`` module) that turns a
loaded checkpoint file into the model's state_dict: this project's training checkpoints (the
weights their evaluation used), plain or wrapped state_dicts, and, with ``official=True``,
checkpoints released with the official code (through the family's converter).
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from torch import Tensor, nn

from . import dppt, gtpt, hevitpose, hot, tokenpose
from .common.checkpoint import read_weights_only
from .common.presets import override_config
from .gtpt.convert import checkpoint_filter as gtpt_filter
from .hevitpose.build import checkpoint_filter as hevitpose_filter
from .hot.convert import checkpoint_filter as hot_filter
from .tokenpose.convert import checkpoint_filter as tokenpose_filter

__all__ = [
    "FAMILIES", "MODELS", "WEIGHTS_DIRS", "Family", "ModelEntry", "create_model", "list_models",
    "model_entry",
]  # fmt: skip

#: The folder of the zoo's package (``models/`` in a checkout, ``tokenprune_models`` installed).
PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Family:
    """A model family of the registry.

    Attributes:
        name: its subpackage (``"gtpt"``, ``"tokenpose"``, ``"hevitpose"``, ``"hot"``).
        title: its name in messages.
        presets: its published networks by registry name (frozen dataclass configs).
        build: ``build(config, **build_args)``, the network of a config (random init).
        checkpoint_filter: ``checkpoint_filter(checkpoint, model, official=..., source=...)``,
            the family's one way from a loaded checkpoint to the model's state_dict.
        build_args: keyword arguments of ``build`` that are no config field (e.g. the attention
            ``backend`` of TokenPose).
    """

    name: str
    title: str
    presets: Mapping[str, Any]
    build: Callable[..., nn.Module]
    checkpoint_filter: Callable[..., dict[str, Tensor]]
    build_args: tuple[str, ...] = ()


FAMILIES: Mapping[str, Family] = MappingProxyType({
    "gtpt": Family("gtpt", "GTPT", gtpt.PRESETS, gtpt.GTPT, gtpt_filter),
    "tokenpose": Family("tokenpose", "TokenPose/PPT/DPPT", tokenpose.PRESETS,
                        tokenpose.TokenPose, tokenpose_filter, ("backend",)),
    "hevitpose": Family("hevitpose", "HEViTPose", hevitpose.PRESETS, hevitpose.HEViTPose,
                        hevitpose_filter),
    "hot": Family("hot", "MixSTE/HoT", hot.PRESETS, hot.MixSTE, hot_filter),
})  # fmt: skip

#: Where each family's shipped weights, model cards and records live (``<family>/weights/``).
WEIGHTS_DIRS: dict[str, Path] = {name: PACKAGE_DIR / name / "weights" for name in FAMILIES}


@dataclass(frozen=True)
class ModelEntry:
    """One name of the registry: a family's network and, for some, shipped weights.

    Attributes:
        name: the registry name.
        family: the key of :data:`FAMILIES`.
        base: the family preset the network starts from.
        overrides: config fields replaced in ``base`` (none for a preset itself).
        file: the shipped weights' file name under the family's ``weights/`` folder (a
            weights-only, half-precision state_dict, with a model card ``<stem>.md`` and a record
            ``<stem>.json`` of how it was trained); None: no shipped weights.
        train_config: the training config (under the family's ``configs/``) that produced the
            shipped weights, for training or evaluating them again; None when not shipped.
        summary: one line on the shipped weights.
    """

    name: str
    family: str
    base: str
    overrides: Mapping[str, Any] = field(default_factory=dict, hash=False)
    file: str | None = None
    train_config: str | None = None
    summary: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "overrides", MappingProxyType(dict(self.overrides)))

    @property
    def pretrained(self) -> bool:
        """Whether weights are shipped for this name."""
        return self.file is not None

    def model_config(self) -> Any:
        """The network's config: the ``base`` preset with the ``overrides``."""
        return override_config(FAMILIES[self.family].presets[self.base], self.overrides)

    @property
    def path(self) -> Path:
        """The shipped weights file.

        Raises:
            ValueError: no weights are shipped for this name.
        """
        if self.file is None:
            raise ValueError(f"no weights are shipped for {self.name!r}; those with weights: "
                             f"{list_models(pretrained=True)}")  # fmt: skip
        return WEIGHTS_DIRS[self.family] / self.file

    @property
    def card_path(self) -> Path:
        """The shipped weights' model card: how they were trained and how well they do."""
        return self.path.with_suffix(".md")

    @property
    def record_path(self) -> Path:
        """The shipped weights' machine-readable record (the release command's JSON)."""
        return self.path.with_suffix(".json")

    @property
    def config_path(self) -> Path:
        """The training config that produced the shipped weights.

        Raises:
            ValueError: the entry names no training config.
        """
        if self.train_config is None:
            raise ValueError(f"{self.name!r} names no training config")
        return PACKAGE_DIR / self.family / "configs" / self.train_config


def _presets() -> list[ModelEntry]:
    """Every family preset under its own name, and DPPT's students under DPPT's names (the PPT
    presets: :data:`tokenprune_models.dppt.STUDENTS`)."""
    presets = [ModelEntry(name, family.name, name)
               for family in FAMILIES.values() for name in family.presets]  # fmt: skip
    return [*presets, *(ModelEntry(name, "tokenpose", ppt) for name, ppt in dppt.STUDENTS.items())]


_HOT_DEMO_SIZE = {"num_frames": 27, "dim": 64}
_SHIPPED = [
    ModelEntry(
        "gtpt_t_synthetic", "gtpt", "gtpt_t_coco",
        {"image_size": (128, 96), "keypoint_init_std": 1.0},
        file="gtpt_t_synthetic_128x96.pt", train_config="synthetic_t_128x96.yaml",
        summary="GTPT-T, COCO-17 layout, 128x96 input, trained from scratch on the synthetic "
        "data set (tokenprune_models.pose.synthetic, seed 0) with the project's two-stage recipe",
    ),
    ModelEntry(
        "mixste_synthetic", "hot", "mixste", _HOT_DEMO_SIZE,
        file="mixste_synthetic_27f.pt", train_config="synthetic_mixste.yaml",
        summary="MixSTE, 27-frame clips, width 64, 8 loops, trained from scratch on the "
        "synthetic motion set (tokenprune_models.pose3d.synthetic, 1500 frames per sequence, "
        "seed 0)",
    ),
    ModelEntry(
        "hot_mixste_synthetic", "hot", "hot_mixste",
        {**_HOT_DEMO_SIZE, "num_kept": 9, "prune_loop": 1},
        file="hot_mixste_synthetic_27f.pt", train_config="synthetic_hot.yaml",
        summary="HoT w. MixSTE (9 of 27 frames kept after loop 1, recovered before the head), "
        "width 64, 8 loops, trained from scratch on the synthetic motion set (1500 frames per "
        "sequence, seed 0)",
    ),
]  # fmt: skip

#: Every registry name and its entry.
MODELS: Mapping[str, ModelEntry] = MappingProxyType(
    {entry.name: entry for entry in [*_presets(), *_SHIPPED]}
)


def list_models(pattern: str = "*", pretrained: bool = False) -> list[str]:
    """The registry's names, sorted.

    Args:
        pattern: a shell-style wildcard the names must match (e.g. ``"gtpt_*"``).
        pretrained: only the names with shipped weights.
    """
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a str, got {type(pattern).__name__}")
    return sorted(name for name, entry in MODELS.items()
                  if fnmatch.fnmatchcase(name, pattern)
                  and (entry.pretrained or not pretrained))  # fmt: skip


def model_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``: its family, network config and shipped files.

    Raises:
        TypeError: ``name`` is not a str.
        ValueError: an unknown name (the close matches and every name listed).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a model name (str), got {type(name).__name__}")
    if name not in MODELS:
        close = difflib.get_close_matches(name, list(MODELS), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
        raise ValueError(f"unknown model name {name!r}; {hint}the names (list_models()): "
                         f"{', '.join(list_models())}")  # fmt: skip
    return MODELS[name]


def create_model(
    name: str,
    *,
    pretrained: bool = False,
    checkpoint: str | os.PathLike | None = None,
    official_checkpoint: str | os.PathLike | None = None,
    **overrides: Any,
) -> nn.Module:
    """The network of a registry name, optionally with weights.

    Args:
        name: a name of :func:`list_models` (``"gtpt_t_coco"``, ``"ppt_s"``,
            ``"hot_mixste_synthetic"``, ...).
        pretrained: load the weights shipped for ``name`` (see
            ``list_models(pretrained=True)``).
        checkpoint: load a checkpoint file of this project: a training checkpoint (the weights
            its evaluation used) or a state_dict, bare or wrapped (``state_dict``, ``model``,
            ``module.`` prefixes). GTPT resizes SimCC classifiers trained at another input size.
        official_checkpoint: load a checkpoint released with the official implementation,
            converted to this project's layout (GTPT: its EMA branch; see each family's
            ``load_official_checkpoint`` for the other options).
        overrides: fields of the family's config to replace (e.g. ``keep_rates=[1.0] * 4``,
            ``image_size=(128, 96)``, ``num_frames=81``), and TokenPose's ``backend``.

    Returns:
        The model: in eval mode when weights were loaded (strictly, every entry checked first;
        files are read with ``torch.load(weights_only=True)``), else randomly initialised in
        train mode.

    Raises:
        ValueError: an unknown name (close matches listed), more than one source of weights,
            ``pretrained`` for a name without shipped weights, an override that is no config
            field (the fields listed), a bad config value, or a checkpoint that does not fit the
            network (its file and entries named).
        TypeError: an argument of the wrong type.
        FileNotFoundError: a checkpoint file (or a shipped weights file) is missing.
    """
    entry = model_entry(name)
    family = FAMILIES[entry.family]
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be a bool, got {type(pretrained).__name__}")
    for argument, value in (("checkpoint", checkpoint), ("official_checkpoint",
                                                          official_checkpoint)):  # fmt: skip
        if value is not None and not isinstance(value, str | os.PathLike):
            raise TypeError(f"{argument} must be a file path, got {type(value).__name__}")
    given = [argument for argument, value in (("pretrained", pretrained),
                                              ("checkpoint", checkpoint),
                                              ("official_checkpoint", official_checkpoint))
             if value is not None and value is not False]  # fmt: skip
    if len(given) > 1:
        raise ValueError(f"give at most one source of weights, got {' and '.join(given)}")
    if pretrained and not entry.pretrained:
        raise ValueError(f"no weights are shipped for {name!r}; those with weights: "
                         f"{list_models(pretrained=True)}")  # fmt: skip
    build_args = {key: overrides.pop(key) for key in family.build_args if key in overrides}
    model = family.build(override_config(entry.model_config(), overrides), **build_args)
    path = checkpoint if checkpoint is not None else official_checkpoint
    if pretrained:
        path = entry.path
    if path is None:
        return model
    weights = family.checkpoint_filter(read_weights_only(path), model,
                                       official=official_checkpoint is not None,
                                       source=path)  # fmt: skip
    model.load_state_dict(weights)  # shipped half-precision weights are copied into float32
    return model.eval()

