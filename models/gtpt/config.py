"""GTPT's configuration: :class:`GTPTConfig` and the published models as named
:data:`PRESETS` (``gtpt_{t,s,b}_{coco,wholebody}``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokenprune.checks import check_int, check_keep_rate, check_number

from ..common.codec import check_size
from ..common.keypoints import COCO_FLIP_PAIRS, WHOLEBODY_FLIP_PAIRS
from ..common.simcc import SimCCCodec

__all__ = ["BODY_GROUPS", "NUM_BODY", "PRESETS", "STEMS", "GTPTConfig", "check_keep_rates"]

#: The three keypoint groups of the fine stage (head, upper and lower body), as COCO body
#: keypoint ids: the sparse keypoint tokens of every layout.
BODY_GROUPS = ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9, 10), (11, 12, 13, 14, 15, 16))
NUM_BODY = sum(len(group) for group in BODY_GROUPS)
#: The stems: one ShuffleNetV2 stage (GTPT-T, -S) or GTPT-B's U-shaped ShuffleNetV2.
STEMS = ("shuffle", "ushaped")


def check_keep_rates(keep_rates: Sequence[float]) -> tuple[float, float, float, float]:
    """Four keep rates in (0, 1] (layers 1-3, 4-6, 7-9, 10-12), none above the one before."""
    if isinstance(keep_rates, (str, bytes)) or not isinstance(keep_rates, Sequence):
        raise TypeError(
            f"keep_rates must be a sequence of 4 floats, got {type(keep_rates).__name__}"
        )
    if len(keep_rates) != 4:
        raise ValueError(f"keep_rates must have 4 entries, got {len(keep_rates)}")
    rates = tuple(check_keep_rate(f"keep_rates[{i}]", r) for i, r in enumerate(keep_rates))
    for i in range(1, 4):
        if rates[i] > rates[i - 1]:
            raise ValueError(
                f"keep_rates must not increase (pruned tokens cannot come back), got {rates}"
            )
    return rates  # type: ignore[return-value]


def _int_tuple(name: str, values: object, low: int, high: int | None = None) -> tuple[int, ...]:
    """``values``, a sequence of ints in ``[low, high]``, as a tuple (each checked by name)."""
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence of ints, got {type(values).__name__}")
    if high is not None and high < low and len(values):
        raise ValueError(f"{name} must be empty (no value is valid: none of the indices it "
                         f"names exists), got {tuple(values)}")  # fmt: skip
    return tuple(check_int(f"{name}[{i}]", v, low=low, high=high) for i, v in enumerate(values))


@dataclass(frozen=True)
class GTPTConfig:
    """Everything that shapes a GTPT network.

    The model's fixed structure (6 coarse and 6 fine layers, the three :data:`BODY_GROUPS` of
    6 sparse keypoint tokens, the pruning layers) is in :mod:`tokenprune_models.gtpt.model`.

    Attributes:
        dim: transformer width (T: 128; S, B: 192).
        stem: ``"shuffle"`` or ``"ushaped"`` (B), see :data:`STEMS`.
        stem_channels: channels of the stem's 1/4 feature map.
        keep_rates: published keep rates of layers 1-3, 4-6, 7-9 and 10-12 (fractions of the
            visual tokens, 256 at 256x192); the model's default, ``[1.0] * 4`` is unpruned.
        flip_pairs: left/right keypoint pairs of the layout (flip augmentation and testing).
        dense_per_part: WholeBody only: dense keypoints expanded from each part token
            (face 68, left hand 21, right hand 21, left foot 3, right foot 3).
        group_parts: the part tokens of each of the three groups (WholeBody: head = face,
            upper = hands, lower = feet).
        output_groups: the order in which the groups' dense tokens follow the 17 body keypoints
            in the dataset's keypoint order (WholeBody: feet 17-22, face 23-90, hands 91-132).
        image_size: input ``(height, width)``, multiples of ``4 * patch_size`` (published:
            256x192).
        patch_size: stem-feature ``(rows, columns)`` per visual token.
        num_heads, mlp_ratio: attention heads and MLP expansion of every layer.
        keypoint_init_std: std of the truncated-normal initialisation of the keypoint, part and
            dense token embeddings (GTPT: 0.02; see :class:`~tokenprune_models.gtpt.model.GTPT`).

    Raises:
        TypeError, ValueError: a field of the wrong type or value, named.
    """

    dim: int
    stem: str
    stem_channels: int
    keep_rates: tuple[float, float, float, float]
    flip_pairs: tuple[tuple[int, int], ...]
    dense_per_part: tuple[int, ...] = ()
    group_parts: tuple[tuple[int, ...], ...] = ((), (), ())
    output_groups: tuple[int, ...] = ()
    image_size: tuple[int, int] = (256, 192)
    patch_size: tuple[int, int] = (4, 3)
    num_heads: int = 8
    mlp_ratio: float = 3.0
    keypoint_init_std: float = 0.02

    def __post_init__(self) -> None:
        for name in ("dim", "stem_channels", "num_heads"):
            check_int(name, getattr(self, name), low=1)
        if self.dim % self.num_heads:
            raise ValueError(f"dim must be a multiple of num_heads, got dim={self.dim} and "
                             f"num_heads={self.num_heads}")  # fmt: skip
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}, got {self.stem!r}")
        for name in ("image_size", "patch_size"):
            object.__setattr__(self, name, check_size(name, getattr(self, name)))
        object.__setattr__(self, "keep_rates", check_keep_rates(self.keep_rates))
        dense = _int_tuple("dense_per_part", self.dense_per_part, low=1)
        object.__setattr__(self, "dense_per_part", dense)
        groups = self.group_parts
        if isinstance(groups, str | bytes) or not isinstance(groups, Sequence) or len(groups) != 3:
            raise ValueError(f"group_parts must name the parts of 3 groups, got {groups!r}")
        groups = tuple(_int_tuple(f"group_parts[{g}] (parts of dense_per_part, {len(dense)} "
                                  "here)", parts, low=0, high=len(dense) - 1)
                       for g, parts in enumerate(groups))  # fmt: skip
        if sorted(p for parts in groups for p in parts) != list(range(len(dense))):
            raise ValueError(f"group_parts must place each of the {len(dense)} parts of "
                             f"dense_per_part in exactly one group, got {groups}")  # fmt: skip
        object.__setattr__(self, "group_parts", groups)
        order = _int_tuple("output_groups", self.output_groups, low=0, high=2)
        if dense and sorted(order) != [0, 1, 2]:
            raise ValueError(f"output_groups must order the 3 groups (a permutation of 0, 1, 2), "
                             f"got {order}")  # fmt: skip
        if not dense and order:
            raise ValueError(f"output_groups must be empty without dense keypoints, got {order}")
        object.__setattr__(self, "output_groups", order)
        pairs = self.flip_pairs
        if isinstance(pairs, str | bytes) or not isinstance(pairs, Sequence):
            raise TypeError(f"flip_pairs must be a sequence of (left, right) keypoint pairs, got "
                            f"{type(pairs).__name__}")  # fmt: skip
        count = self.num_keypoints
        checked = []
        for i, pair in enumerate(pairs):
            pair = _int_tuple(f"flip_pairs[{i}]", pair, low=0, high=count - 1)
            if len(pair) != 2:
                raise ValueError(f"flip_pairs[{i}] must be a (left, right) pair, got {pair}")
            checked.append(pair)
        object.__setattr__(self, "flip_pairs", tuple(checked))
        mlp_ratio = check_number("mlp_ratio", self.mlp_ratio)
        if not mlp_ratio > 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio!r}")
        std = check_number("keypoint_init_std", self.keypoint_init_std)
        if not std > 0:
            raise ValueError(f"keypoint_init_std must be > 0, got {std}")
        object.__setattr__(self, "keypoint_init_std", std)

    @property
    def num_keypoints(self) -> int:
        """Output keypoints: the 17 body keypoints and the dense ones (WholeBody: 133)."""
        return NUM_BODY + sum(self.dense_per_part)

    @property
    def num_parts(self) -> int:
        return len(self.dense_per_part)

    @property
    def dense_per_group(self) -> tuple[int, ...]:
        return tuple(sum(self.dense_per_part[p] for p in parts) for parts in self.group_parts)

    @property
    def codec(self) -> SimCCCodec:
        """The SimCC codec of the input size with SimCC's published split ratio and sigma; the
        head has its bins."""
        return SimCCCodec(self.image_size)


_SIZES = {  # dim, stem, stem channels
    "t": (128, "shuffle", 128),
    "s": (192, "shuffle", 256),
    "b": (192, "ushaped", 256),
}
_LAYOUTS = {
    "coco": {"keep_rates": (1.0, 0.7, 0.3, 0.1), "flip_pairs": COCO_FLIP_PAIRS},
    "wholebody": {
        "keep_rates": (1.0, 0.7, 0.5, 0.3),
        "flip_pairs": WHOLEBODY_FLIP_PAIRS,
        "dense_per_part": (68, 21, 21, 3, 3),
        "group_parts": ((0,), (1, 2), (3, 4)),
        "output_groups": (2, 0, 1),
    },
}

#: GTPT-T, -S and -B for COCO (17 keypoints) and COCO-WholeBody (133) as published.
PRESETS: dict[str, GTPTConfig] = {
    f"gtpt_{size}_{layout}": GTPTConfig(dim, stem, channels, **fields)
    for size, (dim, stem, channels) in _SIZES.items()
    for layout, fields in _LAYOUTS.items()
}
