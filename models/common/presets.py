"""Model configs by name: every family has a frozen dataclass config and a dict of named presets
(``tokenprune_models.gtpt.PRESETS``, ``tokenprune_models.tokenpose.PRESETS``,
``tokenprune_models.hot.PRESETS``, ...); its builder takes a preset name or a config, plus field
overrides, through :func:`resolve_config`; a training config's ``model`` section names one the
same way (:func:`config_from_section`).

An unknown key, here or in any section of a training config, is one kind of error: a
``ValueError`` from :func:`check_keys` that lists every valid key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

__all__ = ["check_keys", "config_from_section", "config_keys", "override_config",
           "resolve_config"]  # fmt: skip

C = TypeVar("C")


def check_keys(values: object, valid: Iterable[str], where: str, what: str = "keys") -> dict:
    """``values`` as a dict, after checking that it is a mapping of ``valid`` keys only.

    Args:
        what: what the keys are called in the message (``"keys"``, ``"fields"``).

    Raises:
        ValueError: not a mapping, or unknown keys (one line naming ``where``, the unknown keys
            and every valid one).
    """
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ValueError(f"{where} must be a mapping of keys to values, got "
                         f"{type(values).__name__}")  # fmt: skip
    valid = list(valid)
    unknown = sorted(str(k) for k in values if k not in valid)
    if unknown:
        raise ValueError(f"{where} has unknown {what} {unknown}; valid {what}: "
                         f"{', '.join(valid)}")  # fmt: skip
    return dict(values)


def config_keys(kind: type) -> list[str]:
    """The fields of the dataclass ``kind`` that its constructor takes."""
    return [f.name for f in dataclasses.fields(kind) if f.init]


def resolve_config(
    config: str | C, presets: Mapping[str, C], overrides: Mapping[str, Any] | None = None
) -> C:
    """The config named by ``config`` (a key of ``presets``) or ``config`` itself, with the
    fields in ``overrides`` replaced (:func:`dataclasses.replace`, so the config's own checks
    run again).

    Raises:
        ValueError: an unknown preset name, or an override that names no field of the presets'
            class (every field listed).
        TypeError: ``config`` is neither a name nor a config of the presets' class.
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
        ValueError: an override names no field of the config (every field listed, see
            :func:`check_keys`).
    """
    kind = type(config)
    overrides = check_keys(overrides, config_keys(kind), kind.__name__, "fields")
    return dataclasses.replace(config, **overrides) if overrides else config


def config_from_section(
    section: Mapping[str, Any] | None,
    presets: Mapping[str, C],
    where: str = "config section 'model'",
    other_keys: Iterable[str] = (),
) -> tuple[C, dict[str, Any]]:
    """The config a config-file section describes: its ``preset`` (a key of ``presets``) with
    the section's other entries as field overrides (see :func:`resolve_config`), and the
    entries among ``other_keys`` (a task's own settings, e.g. DPPT's teacher), apart.

    Every key is checked at once: an unknown one is an error listing ``preset``, the config's
    fields and ``other_keys``.

    Returns:
        ``(config, {other key: value})``.

    Raises:
        ValueError: the section has no ``preset``, names an unknown one, or has an unknown key.
    """
    kind = type(next(iter(presets.values())))
    other_keys = list(other_keys)
    values = check_keys(section, ["preset", *config_keys(kind), *other_keys], where)
    if "preset" not in values:
        raise ValueError(f"{where} needs a 'preset', one of {sorted(presets)}")
    others = {key: values.pop(key) for key in other_keys if key in values}
    return resolve_config(values.pop("preset"), presets, values), others
