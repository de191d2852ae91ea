"""A synthetic human-pose data set: rendered articulated figures with COCO-format labels.

Each image holds one to a few people drawn from a 2-D kinematic skeleton (pelvis, spine, neck,
head, arms, legs, feet, hands, face) with random joint angles, size, rotation, limb thickness
and colours, on a textured, cluttered background, partly hidden by occluders and by each other.
Every figure faces the camera, so its left side is on the image's right, as in COCO.

The labels follow the COCO keypoint format (17 body keypoints) or the COCO-WholeBody format
(plus 6 foot, 68 face and 2 x 21 hand keypoints): visibility 2 for visible keypoints, 1 for
occluded ones inside the image, 0 (and coordinates 0) outside it; ``bbox`` and ``area`` come
from the rendered silhouette. Everything is deterministic given the seed.

    python -m tokenprune_models.pose.synthetic --output data/synthetic --train 1600 --val 200

Files: ``images/<split>/<id>.jpg`` and ``annotations/person_keypoints_<split>.json`` (or
``coco_wholebody_<split>.json``), for the splits ``train`` and ``val``; a training config names
them in its ``data`` section (:func:`data_section`; every ``configs/synthetic_*.yaml`` of the
2-D families carries it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..common.atomic import write_text_atomic
from ..common.cli import HelpFormatter, int_at_least
from ..common.keypoints import COCO_KEYPOINTS

__all__ = ["data_section", "generate_split", "main", "render_image"]

SKELETON = [  # COCO's 1-based limb list, for the annotation file's category
    [16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8],
    [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7],
]  # fmt: skip


@dataclass
class Figure:
    """One rendered person: all 133 keypoints ``[133, 2]``, and the drawing primitives."""

    points: np.ndarray
    silhouette: Image.Image  # "L" mask of the whole figure


def _rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def _direction(angle: float) -> np.ndarray:
    """Unit vector at ``angle`` radians from straight down (image y grows downwards)."""
    return np.array([math.sin(angle), math.cos(angle)])


def _pose(rng: np.random.Generator, height: float) -> np.ndarray:
    """All 133 keypoints of an upright figure of ``height`` pixels, pelvis at the origin.

    Layout: 0-16 COCO body, 17-22 feet, 23-90 face (68-point), 91-111 left hand, 112-132 right.
    """
    u = height  # unit length
    pts = np.zeros((133, 2))
    lean = rng.normal(0, 0.12)
    torso = 0.30 * u
    neck = np.array([0.0, 0.0]) + _direction(math.pi + lean) * torso
    shoulder_half = rng.uniform(0.09, 0.12) * u
    hip_half = rng.uniform(0.06, 0.08) * u
    across = _rotation(lean) @ np.array([1.0, 0.0])
    # person's left is the image's right (the figure faces the camera)
    l_sho, r_sho = neck + across * shoulder_half, neck - across * shoulder_half
    l_hip, r_hip = across * hip_half, -across * hip_half
    head_r = rng.uniform(0.055, 0.07) * u
    head = neck + _direction(math.pi + lean + rng.normal(0, 0.1)) * (head_r * 1.6)
    yaw = rng.uniform(-0.35, 0.35)  # head turn: shifts the face sideways

    def limb(start, base_angle, spread, bend_range, lengths):
        a1 = base_angle + rng.uniform(*spread)
        mid = start + _direction(a1) * lengths[0]
        a2 = a1 + rng.uniform(*bend_range)
        end = mid + _direction(a2) * lengths[1]
        return mid, end, a2

    arm = (rng.uniform(0.15, 0.18) * u, rng.uniform(0.13, 0.16) * u)
    leg = (rng.uniform(0.22, 0.26) * u, rng.uniform(0.21, 0.25) * u)
    l_elb, l_wri, l_fore = limb(l_sho, lean, (-0.3, 2.6), (-2.0, 0.3), arm)
    r_elb, r_wri, r_fore = limb(r_sho, lean, (-2.6, 0.3), (-0.3, 2.0), arm)
    l_knee, l_ank, l_shin = limb(l_hip, lean, (-0.15, 0.9), (-1.2, 0.2), leg)
    r_knee, r_ank, r_shin = limb(r_hip, lean, (-0.9, 0.15), (-0.2, 1.2), leg)

    face_center = head + np.array([yaw * head_r * 0.6, 0.0])
    eye_dy, eye_dx, ear_dx = -0.15 * head_r, 0.38 * head_r, 0.95 * head_r
    nose = face_center + np.array([0.0, 0.15 * head_r])
    pts[0] = nose
    pts[1], pts[2] = face_center + (eye_dx, eye_dy), face_center + (-eye_dx, eye_dy)
    pts[3], pts[4] = head + (ear_dx, 0.0), head + (-ear_dx, 0.0)
    pts[5:11] = [l_sho, r_sho, l_elb, r_elb, l_wri, r_wri]
    pts[11:17] = [l_hip, r_hip, l_knee, r_knee, l_ank, r_ank]

    foot = 0.07 * u
    for side, (ankle, shin, outward) in enumerate(((l_ank, l_shin, 1.0), (r_ank, r_shin, -1.0))):
        heel = ankle + _direction(shin) * 0.02 * u - np.array([outward * 0.01 * u, 0])
        toe_dir = _rotation(outward * 1.2) @ _direction(shin)
        big_toe = ankle + toe_dir * foot
        small_toe = big_toe + np.array([outward * 0.025 * u, -0.005 * u])
        pts[17 + 3 * side : 20 + 3 * side] = [big_toe, small_toe, heel]

    pts[23:91] = _face(face_center, head_r)
    for start, wrist, forearm in ((91, l_wri, l_fore), (112, r_wri, r_fore)):
        pts[start : start + 21] = _hand(rng, wrist, forearm, 0.045 * u)
    return pts


def _face(center: np.ndarray, r: float) -> np.ndarray:
    """The 68 face landmarks (jaw, brows, nose, eyes, mouth) on a frontal face of radius r."""
    out = []
    for i in range(17):  # jaw, from the image-left ear round the chin to the image-right ear
        t = math.pi * (1 - i / 16)
        out.append(center + (0.85 * r * math.cos(t), 0.2 * r + 0.75 * r * math.sin(t)))
    for start in (-0.55, 0.15):  # eyebrows 17-21 (image left), 22-26 (image right)
        for i in range(5):
            arch = 0.05 * r * math.sin(math.pi * i / 4)
            out.append(center + ((start + 0.1 * i) * r, -0.42 * r - arch))
    for i in range(4):  # nose bridge 27-30
        out.append(center + (0.0, -0.25 * r + 0.12 * r * i))
    for i in range(5):  # nostrils 31-35
        out.append(center + ((-0.16 + 0.08 * i) * r, 0.2 * r))
    for eye_x in (-0.38, 0.38):  # eyes 36-41 and 42-47
        for i in range(6):
            t = 2 * math.pi * i / 6
            out.append(center + ((eye_x - 0.1 * math.cos(t)) * r, (-0.15 - 0.05 * math.sin(t)) * r))
    for i in range(12):  # outer lips 48-59
        t = 2 * math.pi * i / 12
        out.append(center + (-0.3 * r * math.cos(t), 0.45 * r + 0.12 * r * math.sin(t)))
    for i in range(8):  # inner lips 60-67
        t = 2 * math.pi * i / 8
        out.append(center + (-0.2 * r * math.cos(t), 0.45 * r + 0.05 * r * math.sin(t)))
    return np.array(out)


def _hand(rng: np.random.Generator, wrist: np.ndarray, angle: float, size: float) -> np.ndarray:
    """21 hand keypoints: wrist, then 4 joints for each of thumb and four fingers."""
    out = [wrist]
    spread = rng.uniform(0.8, 1.4)
    for finger in range(5):
        a = angle + (finger - 2) * 0.3 * spread
        base = wrist + _direction(a) * size * (0.45 if finger == 0 else 0.6)
        for joint in range(4):
            out.append(base + _direction(a) * size * 0.22 * joint)
    return np.array(out)


def _texture(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A cluttered background: a colour gradient, smoothed noise, shapes and lines."""
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    base = a * (1 - xx[..., None]) + b * yy[..., None]
    noise = rng.normal(0, 25, (height // 8 + 1, width // 8 + 1, 3))
    noise = np.kron(noise, np.ones((8, 8, 1)))[:height, :width]
    image = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(4, 12)):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        w, h = rng.uniform(8, width / 3), rng.uniform(8, height / 3)
        colour = tuple(int(c) for c in rng.uniform(0, 255, 3))
        if rng.random() < 0.5:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=colour)
        else:
            draw.line([x0, y0, x0 + w, y0 + h], fill=colour, width=int(rng.integers(1, 5)))
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))


def _draw_figure(rng, pts: np.ndarray, height: float, size: tuple[int, int]):
    """Draw one figure on a transparent layer; returns ``(RGBA layer, silhouette mask)``."""
    layer = Image.new("RGBA", (size[1], size[0]), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    skin = tuple(int(c) for c in rng.uniform([90, 50, 30], [255, 220, 190]))
    shirt = tuple(int(c) for c in rng.uniform(0, 255, 3))
    trousers = tuple(int(c) for c in rng.uniform(0, 255, 3))
    limb = max(2, int(height * rng.uniform(0.035, 0.055)))

    def line(a, b, colour, width):
        draw.line([tuple(pts[a]), tuple(pts[b])], fill=colour + (255,), width=width)
        for p in (a, b):
            r = width / 2
            draw.ellipse([pts[p][0] - r, pts[p][1] - r, pts[p][0] + r, pts[p][1] + r],
                         fill=colour + (255,))  # fmt: skip

    for a, b in ((11, 13), (13, 15), (12, 14), (14, 16)):
        line(a, b, trousers, limb + 1)
    for foot in (range(17, 20), range(20, 23)):
        draw.polygon([tuple(pts[i]) for i in foot], fill=trousers + (255,))
    draw.polygon([tuple(pts[i]) for i in (5, 6, 12, 11)], fill=shirt + (255,))
    for a, b, colour in ((5, 7, shirt), (6, 8, shirt), (7, 9, skin), (8, 10, skin)):
        line(a, b, colour, limb)
    for start in (91, 112):
        for finger in range(5):
            chain = [start] + [start + 1 + 4 * finger + j for j in range(4)]
            draw.line([tuple(pts[i]) for i in chain], fill=skin + (255,), width=max(1, limb // 3))
    neck_top = (pts[3] + pts[4]) / 2
    draw.line([tuple((pts[5] + pts[6]) / 2), tuple(neck_top)], fill=skin + (255,), width=limb)
    head_r = np.linalg.norm(pts[3] - pts[4]) / 2 * 1.05
    head = (pts[3] + pts[4]) / 2
    draw.ellipse([head[0] - head_r, head[1] - head_r * 1.15, head[0] + head_r,
                  head[1] + head_r * 1.15], fill=skin + (255,))  # fmt: skip
    dark = (40, 30, 30, 255)
    for eye in (1, 2):
        r = max(1.0, head_r * 0.12)
        x, y = pts[eye]
        draw.ellipse([x - r, y - r, x + r, y + r], fill=dark)
    draw.line([tuple(pts[23 + 48]), tuple(pts[23 + 54])], fill=(150, 40, 40, 255),
              width=max(1, int(head_r * 0.1)))  # fmt: skip
    draw.ellipse([pts[0][0] - 1.5, pts[0][1] - 1.5, pts[0][0] + 1.5, pts[0][1] + 1.5],
                 fill=(120, 60, 50, 255))  # fmt: skip
    return layer, layer.getchannel("A")


def render_image(
    seed: int, image_size: tuple[int, int] = (256, 256), max_people: int = 3
) -> tuple[Image.Image, list[np.ndarray], list[np.ndarray], list[Image.Image]]:
    """Render one image.

    Returns:
        ``(image, keypoints, visibility, silhouettes)``: per person ``[133, 2]`` keypoints in
        pixels (pixel ``i`` is centred at ``i``), ``[133]`` visibility (2 visible, 1 occluded,
        0 outside the image) and the person's own silhouette mask.
    """
    rng = np.random.default_rng(seed)
    height, width = image_size
    image = _texture(rng, image_size).convert("RGBA")
    people = int(rng.integers(1, max_people + 1))
    figures, layers = [], []
    for slot in rng.permutation(people):  # one horizontal slot per person, drawn in random order
        fig_height = rng.uniform(0.45, 0.9) * height
        pts = _pose(rng, fig_height)
        pts = pts @ _rotation(rng.normal(0, 0.35)).T  # whole-figure rotation
        low, high = pts.min(0), pts.max(0)
        centre = np.array([(slot + rng.uniform(0.3, 0.7)) * width / people,
                           rng.uniform(0.35, 0.65) * height])  # fmt: skip
        offset = centre - (low + high) / 2
        offset += rng.normal(0, 0.05, 2) * (width, height)  # sometimes partly outside
        pts = pts + offset
        layer, mask = _draw_figure(rng, pts, fig_height, image_size)
        figures.append(Figure(pts, mask))
        layers.append(layer)
    # occluders drawn above everything
    occluder = Image.new("L", (width, height), 0)
    occ_draw = ImageDraw.Draw(occluder)
    top = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    top_draw = ImageDraw.Draw(top)
    for _ in range(int(rng.integers(0, 3))):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        box = [x0, y0, x0 + rng.uniform(10, width / 3), y0 + rng.uniform(10, height / 3)]
        colour = tuple(int(c) for c in rng.uniform(0, 255, 3)) + (255,)
        if rng.random() < 0.5:
            top_draw.rectangle(box, fill=colour)
            occ_draw.rectangle(box, fill=255)
        else:
            top_draw.ellipse(box, fill=colour)
            occ_draw.ellipse(box, fill=255)
    for layer in layers:
        image.alpha_composite(layer)
    image.alpha_composite(top)

    keypoints, visibility = [], []
    occluder_mask = np.asarray(occluder) > 0
    masks = [np.asarray(f.silhouette) > 0 for f in figures]
    for index, figure in enumerate(figures):
        covered = occluder_mask.copy()
        for later in masks[index + 1 :]:
            covered |= later
        vis = np.zeros(133, dtype=np.int64)
        for k, (x, y) in enumerate(figure.points):
            xi, yi = round(float(x)), round(float(y))
            if 0 <= xi < width and 0 <= yi < height:
                vis[k] = 1 if covered[yi, xi] else 2
        keypoints.append(figure.points)
        visibility.append(vis)
    return image.convert("RGB"), keypoints, visibility, [f.silhouette for f in figures]


_WHOLEBODY_PARTS = {"foot_kpts": (17, 23), "face_kpts": (23, 91),
                    "lefthand_kpts": (91, 112), "righthand_kpts": (112, 133)}  # fmt: skip


def _flat(points: np.ndarray, vis: np.ndarray) -> list[float]:
    out = []
    for (x, y), v in zip(points, vis, strict=True):
        out += [round(float(x), 2), round(float(y), 2), int(v)] if v > 0 else [0.0, 0.0, 0]
    return out


def _box(points: np.ndarray, vis: np.ndarray) -> list[float]:
    shown = points[vis > 0]
    if len(shown) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    low, high = shown.min(0), shown.max(0)
    return [round(float(low[0]), 2), round(float(low[1]), 2),
            round(float(high[0] - low[0]), 2), round(float(high[1] - low[1]), 2)]  # fmt: skip


def generate_split(
    root: str | os.PathLike,
    split: str,
    num_images: int,
    *,
    wholebody: bool = False,
    seed: int = 0,
    image_size: tuple[int, int] = (256, 256),
    max_people: int = 3,
) -> Path:
    """Render ``num_images`` images into ``root/images/<split>/`` and write their labels.

    Args:
        root: data set folder.
        split: e.g. ``"train"`` or ``"val"``.
        num_images: images to render.
        wholebody: write the COCO-WholeBody layout (133 keypoints) instead of COCO's 17.
        seed: base seed; image ``i`` uses ``(seed, split, i)``.
        image_size: ``(height, width)`` of the images.
        max_people: people per image are drawn uniformly from 1..max_people.

    Returns:
        The annotation file, ``root/annotations/person_keypoints_<split>.json`` (COCO) or
        ``coco_wholebody_<split>.json``.
    """
    root = Path(root)
    image_dir = root / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    split_key = sum(map(ord, split))
    for index in range(num_images):
        image_id = index + 1
        image, keypoints, visibility, silhouettes = render_image(
            np.random.SeedSequence([seed, split_key, index]).generate_state(1)[0],
            image_size, max_people,
        )  # fmt: skip
        name = f"{image_id:06d}.jpg"
        image.save(image_dir / name, quality=92)
        images.append({"id": image_id, "file_name": name, "height": image_size[0],
                       "width": image_size[1]})  # fmt: skip
        for points, vis, silhouette in zip(keypoints, visibility, silhouettes, strict=True):
            mask = np.asarray(silhouette) > 0
            area = float(mask.sum())
            if area == 0:
                continue
            ys, xs = np.nonzero(mask)
            bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
                    float(ys.max() - ys.min() + 1)]  # fmt: skip
            body = vis[:17]
            ann = {
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1,
                "iscrowd": 0, "area": area, "bbox": bbox,
                "keypoints": _flat(points[:17], body), "num_keypoints": int((body > 0).sum()),
            }  # fmt: skip
            if wholebody:
                for key, (lo, hi) in _WHOLEBODY_PARTS.items():
                    ann[key] = _flat(points[lo:hi], vis[lo:hi])
                    part = key.split("_")[0]
                    ann[f"{part}_valid"] = bool((vis[lo:hi] > 0).any())
                    if part != "foot":
                        ann[f"{part}_box"] = _box(points[lo:hi], vis[lo:hi])
            annotations.append(ann)
    category = {"id": 1, "name": "person", "supercategory": "person",
                "keypoints": list(COCO_KEYPOINTS), "skeleton": SKELETON}  # fmt: skip
    data = {"images": images, "annotations": annotations, "categories": [category]}
    ann_dir = root / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    name = f"coco_wholebody_{split}.json" if wholebody else f"person_keypoints_{split}.json"
    return write_text_atomic(ann_dir / name, json.dumps(data))


def data_section(wholebody: bool = False) -> dict[str, str]:
    """The ``data`` section of a training config for a data set of this generator: its
    annotation files and image folders relative to the data root (see
    :data:`tokenprune_models.pose.cli.COCO_DATA` for the keys)."""
    names = {split: f"coco_wholebody_{split}.json" if wholebody else
             f"person_keypoints_{split}.json" for split in ("train", "val")}  # fmt: skip
    return {
        "train_annotations": f"annotations/{names['train']}", "train_images": "images/train",
        "val_annotations": f"annotations/{names['val']}", "val_images": "images/val",
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """The command line: render the ``train`` and ``val`` splits into ``--output``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)  # fmt: skip
    parser.add_argument("--output", type=Path, default=Path("data/synthetic"),
                        help="data set folder (created; files of the same names are replaced)")
    parser.add_argument("--train", type=int_at_least(0), default=1600, help="training images")
    parser.add_argument("--val", type=int_at_least(0), default=200, help="validation images")
    parser.add_argument("--wholebody", action=argparse.BooleanOptionalAction, default=False,
                        help="COCO-WholeBody labels (133 keypoints) instead of COCO's 17")
    parser.add_argument("--seed", type=int_at_least(0), default=0, help="base seed of every image")
    parser.add_argument("--size", type=int_at_least(32), nargs=2, default=[256, 256],
                        metavar=("H", "W"), help="image height and width in pixels")
    args = parser.parse_args(argv)
    for split, count in (("train", args.train), ("val", args.val)):
        path = generate_split(args.output, split, count, wholebody=args.wholebody,
                              seed=args.seed, image_size=tuple(args.size))  # fmt: skip
        print(f"wrote {count} images and {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
