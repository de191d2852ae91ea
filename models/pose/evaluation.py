"""Keypoint evaluation with pycocotools: OKS AP/AR for COCO and, per body part, COCO-WholeBody.

COCO-WholeBody's own evaluator (xtcocotools) does not import with numpy 2, so WholeBody is
evaluated here on pycocotools: one OKS evaluation per part (body, foot, face, hand, and the
whole body) with the WholeBody sigmas of that part's keypoints and the person's area.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..common.atomic import write_text_atomic
from ..common.keypoints import COCO_SIGMAS, WHOLEBODY_SIGMAS
from .data import WHOLEBODY_KEYS, _read_json

__all__ = [
    "STAT_NAMES",
    "evaluate_keypoints",
    "evaluate_wholebody",
    "keypoint_results",
    "write_results",
]

STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
#: COCO-WholeBody parts as ranges of the 133 keypoints.
WHOLEBODY_PARTS = {
    "body": range(0, 17),
    "foot": range(17, 23),
    "face": range(23, 91),
    "hand": range(91, 133),
    "wholebody": range(0, 133),
}


def keypoint_results(
    image_ids: Sequence[int],
    keypoints: np.ndarray,
    scores: np.ndarray,
    visibility_threshold: float = 0.01,
) -> list[dict]:
    """Predictions in the COCO results format.

    Args:
        image_ids: ``[N]`` image of each person.
        keypoints: ``[N, K, 2]`` in image pixels.
        scores: ``[N, K]`` keypoint confidences.
        visibility_threshold: the person's score is the mean confidence of its keypoints above
            this (SimCC confidences are small, hence 0.01 rather than HRNet's 0.2).
    """
    results = []
    for image_id, points, conf in zip(image_ids, keypoints, scores, strict=True):
        confident = conf[conf > visibility_threshold]
        flat = np.concatenate([points, conf[:, None]], axis=1).reshape(-1)
        results.append({
            "image_id": int(image_id), "category_id": 1,
            "keypoints": [round(float(v), 3) for v in flat],
            "score": float(confident.mean()) if len(confident) else 0.0,
        })  # fmt: skip
    return results


def write_results(results: list[dict], path: str | os.PathLike) -> Path:
    """Write results json atomically."""
    return write_text_atomic(path, json.dumps(results))


def _coco(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _oks_eval(gt: dict, results: list[dict], sigmas: Sequence[float]) -> dict[str, float]:
    if not results:
        return dict.fromkeys(STAT_NAMES, 0.0)
    coco_gt = _coco(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        evaluation = COCOeval(coco_gt, coco_dt, "keypoints")
        evaluation.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {name: float(value) for name, value in zip(STAT_NAMES, evaluation.stats, strict=True)}


def evaluate_keypoints(
    annotation_file: str | os.PathLike | dict,
    results: list[dict],
    sigmas: Sequence[float] = COCO_SIGMAS,
) -> dict[str, float]:
    """OKS AP and AR (COCO's ten numbers) of ``results`` against a keypoint file."""
    gt = annotation_file if isinstance(annotation_file, dict) else _read_json(Path(annotation_file))
    return _oks_eval(gt, results, sigmas)


def evaluate_wholebody(
    annotation_file: str | os.PathLike | dict, results: list[dict]
) -> dict[str, dict[str, float]]:
    """COCO-WholeBody AP/AR per part (body, foot, face, hand, wholebody) for 133-keypoint
    results."""
    gt = annotation_file if isinstance(annotation_file, dict) else _read_json(Path(annotation_file))
    stats = {}
    for part, ids in WHOLEBODY_PARTS.items():
        ids = list(ids)
        part_gt = copy.deepcopy(gt)
        for ann in part_gt["annotations"]:
            values = list(ann["keypoints"])
            for key in WHOLEBODY_KEYS:
                values += list(ann.get(key, [0.0] * (3 * _part_size(key))))
            points = np.asarray(values, dtype=np.float64).reshape(-1, 3)[ids]
            ann["keypoints"] = points.reshape(-1).tolist()
            ann["num_keypoints"] = int((points[:, 2] > 0).sum())
        part_results = []
        for result in results:
            points = np.asarray(result["keypoints"], dtype=np.float64).reshape(-1, 3)
            if len(points) != 133:
                raise ValueError(f"WholeBody results need 133 keypoints, got {len(points)}")
            part_results.append({**result, "keypoints": points[ids].reshape(-1).tolist()})
        stats[part] = _oks_eval(part_gt, part_results, [WHOLEBODY_SIGMAS[i] for i in ids])
    return stats


def _part_size(key: str) -> int:
    return {"foot_kpts": 6, "face_kpts": 68, "lefthand_kpts": 21, "righthand_kpts": 21}[key]
