"""Keypoint codecs: one object per output format that turns keypoints into a model's training
targets and the model's outputs back into keypoints (after mmpose's ``SimCCLabel`` and
``MSRAHeatmap`` codecs).

A codec is configured once (input size and the format's parameters) and shared by the data
pipeline, which calls :meth:`~KeypointCodec.encode` per sample, and the model's task, which
calls :meth:`~KeypointCodec.loss` in training and :meth:`~KeypointCodec.decode` (after
:meth:`~KeypointCodec.flip_test`) in evaluation. The codecs are
:class:`~tokenprune_models.common.simcc.SimCCCodec` and
:class:`~tokenprune_models.common.heatmap.HeatmapCodec`.

Conventions: sizes are ``(height, width)``; keypoints are ``(x, y)`` in input pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from torch import Tensor

__all__ = ["KeypointCodec", "check_size", "target_tensors"]


class KeypointCodec(Protocol):
    """What the data pipeline and a pose task need from a codec.

    ``outputs`` is what the model returns for ``images [B, 3, H, W]`` (SimCC: the pair of x and
    y logits; heatmaps: one tensor).
    """

    #: Input ``(height, width)``.
    image_size: tuple[int, int]

    def encode(self, keypoints: Tensor, visible: Tensor) -> dict[str, Tensor]:
        """Training targets of ``keypoints [B, K, 2]`` with ``visible [B, K]``: a dict of
        ``[B, K, ...]`` tensors, among them ``target_weight [B, K]``."""
        ...

    def decode(self, outputs: Any) -> tuple[Tensor, Tensor]:
        """``(keypoints [B, K, 2] in input pixels, scores [B, K])`` of model outputs."""
        ...

    def flip_back(self, outputs: Any, flip_pairs: Sequence[tuple[int, int]]) -> Any:
        """The outputs of a horizontally mirrored image, mapped back to the original image."""
        ...

    def flip_test(
        self,
        model: Callable[[Tensor], Any],
        images: Tensor,
        flip_pairs: Sequence[tuple[int, int]],
        shift: bool = True,
    ) -> Any:
        """The average of the outputs of ``images`` and of their mirror, flipped back."""
        ...

    def loss(self, outputs: Any, targets: Mapping[str, Tensor]) -> Tensor:
        """The training loss of ``outputs`` against ``targets`` (what :meth:`encode` returned,
        batched: a training batch holds them under the same keys)."""
        ...


def check_size(name: str, size: object) -> tuple[int, int]:
    """Require a ``(height, width)`` pair of positive ints (a list is accepted, e.g. from a
    YAML config); returns it as a tuple.

    Raises:
        TypeError: not a pair of ints.
        ValueError: a side is not positive.
    """
    if not (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    ):
        raise TypeError(f"{name} must be a (height, width) pair of ints, got {size!r}")
    if min(size) <= 0:
        raise ValueError(f"{name} must be positive, got {tuple(size)}")
    return int(size[0]), int(size[1])


def target_tensors(targets: object, *keys: str) -> list[Tensor]:
    """``targets[key]`` for each of ``keys`` (a codec's targets, or a training batch holding
    them).

    Raises:
        TypeError: ``targets`` is not a mapping.
        ValueError: a key is missing.
    """
    if not isinstance(targets, Mapping):
        raise TypeError(
            f"targets must be a mapping of target tensors, got {type(targets).__name__}"
        )
    missing = [key for key in keys if key not in targets]
    if missing:
        raise ValueError(f"targets lack {missing} (the codec's encode returns {list(keys)})")
    return [targets[key] for key in keys]
