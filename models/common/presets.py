"""Model configs by name: every 2-D family has a frozen dataclass config and a dict of named
presets (``tokenprune_models.gtpt.PRESETS``, ``tokenprune_models.tokenpose.PRESETS``, ...); its
builder takes a preset name or a config, plus field overrides, through :func:`resolve_config`;
a training config's ``model`` section names one the same way (:func:`config_from_section`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["config_from_section", "override_config", "resolve_config"]

C = TypeVar("C")


def resolve_config(
    config: str | C, presets: Mapping[str, C], overrides: Mapping[str, Any] | None = None
) -> C:
    """The config named by ``config`` (a key of ``presets``) or ``config`` itself, with the
    fields in ``overrides`` replaced (:func:`dataclasses.replace`, so the config's own checks
    run again).

    Raises:
        ValueError: an unknown preset name.
        TypeError: ``config`` is neither a name nor a config of the presets' class, or an
            override names no field of that class.
    """
    kind = type(next(iter(presets.values())))
    if isinstance(config, str):
        if config not in presets:
            raise ValueError(f"config must be one of {sorted(presets)}, got {config!r}")
        config = presets[config]
    elif not isinstance(config, kind):
        raise TypeError(
            f"config must be a preset name or a {kind.__name__}, got {type(config).__name__}"
        )
    return override_config(config, overrides)


def override_config(config: C, overrides: Mapping[str, Any] | None = None) -> C:
    """``config`` (a dataclass) with the fields in ``overrides`` replaced
    (:func:`dataclasses.replace`, so the config's own checks run again); ``config`` itself when
    there are none.

    Raises:
        TypeError: an override names no field of the config (the valid ones listed).
    """
    overrides = dict(overrides or {})
    kind = type(config)
    names = [f.name for f in dataclasses.fields(kind) if f.init]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise TypeError(f"{kind.__name__} has no field(s) {unknown}; its fields: {names}")
    return dataclasses.replace(config, **overrides) if overrides else config


def config_from_section(
    section: Mapping[str, Any], presets: Mapping[str, C], where: str = "model"
) -> C:
    """The config a config-file section describes: its ``preset`` (a key of ``presets``) with
    the section's other entries as field overrides (see :func:`resolve_config`).

    Raises:
        ValueError: the section has no ``preset``, or names an unknown one.
        TypeError: an entry names no field of the config.
    """
    values = dict(section)
    if "preset" not in values:
        raise ValueError(f"the {where} section needs a 'preset', one of {sorted(presets)}")
    return resolve_config(values.pop("preset"), presets, values)
