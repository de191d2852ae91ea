"""GTPT variants (T/S/B) and keypoint layouts (COCO-17, COCO-WholeBody-133)."""

from __future__ import annotations

from dataclasses import dataclass

from models.common.keypoints import COCO_FLIP_PAIRS, WHOLEBODY_FLIP_PAIRS


@dataclass(frozen=True)
class Variant:
    """Model size: transformer width and stem."""

    name: str
    dim: int
    stem: str  # "shuffle" (one ShuffleNetV2 stage) or "ushaped"
    stem_channels: int


VARIANTS = {
    "t": Variant("t", dim=128, stem="shuffle", stem_channels=128),
    "s": Variant("s", dim=192, stem="shuffle", stem_channels=256),
    "b": Variant("b", dim=192, stem="ushaped", stem_channels=256),
}

#: The three keypoint groups of the fine stage, as COCO body-keypoint ids. Group 0 also holds a
#: dummy copy of the nose, so that every group has 6 sparse tokens.
BODY_GROUPS = ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9, 10), (11, 12, 13, 14, 15, 16))
SPARSE_PER_GROUP = 6


@dataclass(frozen=True)
class Layout:
    """A dataset's keypoint layout as GTPT sees it.

    Attributes:
        num_keypoints: output keypoints (17 or 133).
        keep_rates: published keep rates of layers 1-3, 4-6, 7-9 and 10-12 (fractions of the
            256 visual tokens).
        dense_per_part: WholeBody only: dense keypoints expanded from each part token
            (face 68, left hand 21, right hand 21, left foot 3, right foot 3).
        group_parts: the part tokens of each group (WholeBody: head = face, upper = hands,
            lower = feet).
        output_groups: the order in which the groups' dense tokens follow the 17 body keypoints
            in the dataset's keypoint order (WholeBody: feet 17-22, face 23-90, hands 91-132).
        flip_pairs: left/right pairs for flip testing.
    """

    name: str
    num_keypoints: int
    keep_rates: tuple[float, float, float, float]
    dense_per_part: tuple[int, ...]
    group_parts: tuple[tuple[int, ...], ...]
    output_groups: tuple[int, ...]
    flip_pairs: tuple[tuple[int, int], ...]

    @property
    def num_parts(self) -> int:
        return len(self.dense_per_part)

    @property
    def dense_per_group(self) -> tuple[int, ...]:
        return tuple(sum(self.dense_per_part[p] for p in parts) for parts in self.group_parts)


LAYOUTS = {
    "coco": Layout(
        "coco",
        num_keypoints=17,
        keep_rates=(1.0, 0.7, 0.3, 0.1),
        dense_per_part=(),
        group_parts=((), (), ()),
        output_groups=(),
        flip_pairs=COCO_FLIP_PAIRS,
    ),
    "wholebody": Layout(
        "wholebody",
        num_keypoints=133,
        keep_rates=(1.0, 0.7, 0.5, 0.3),
        dense_per_part=(68, 21, 21, 3, 3),
        group_parts=((0,), (1, 2), (3, 4)),
        output_groups=(2, 0, 1),
        flip_pairs=WHOLEBODY_FLIP_PAIRS,
    ),
}

#: Input size ``(height, width)``, patch size on the 1/4 feature map ``(rows, cols)``, and the
#: SimCC split ratio, as published for every variant.
IMAGE_SIZE = (256, 192)
PATCH_SIZE = (4, 3)
SPLIT_RATIO = 2.0
NUM_HEADS = 8
MLP_RATIO = 3
COARSE_LAYERS = 6
FINE_LAYERS = 6
