"""Scoring detections on out-of-distribution objects (trees, houses): lower is better.

Two measures, both on the same predictions:

* the paper's: AP with the OOD objects as the positives (a detector that fires on trees and
  houses scores high), :func:`sar_atd.metrics.evaluate` against the OOD boxes;
* false alarms on OOD objects: per image, the detections scored at least the operating
  threshold that hit an OOD object (IoU >= ``iou_threshold`` with its box, or their centre
  inside it), counted per image, beside the target recall at the same threshold (a detector
  that detects nothing has no OOD false alarm and no recall: both are reported).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sar_atd.boxes import box_iou, xywh_to_xyxy


def read_ood_boxes(folder: str | Path) -> dict[str, np.ndarray]:
    """OOD boxes float32 (M, 4) xyxy per image name from a test set's ``ood.json``."""
    path = Path(folder) / "ood.json"
    if not path.is_file():
        raise FileNotFoundError(f"no OOD annotations in {folder} (ood.json): not an OOD set")
    doc = json.loads(path.read_text())
    names = {im["id"]: Path(im["file_name"]).stem for im in doc["images"]}
    out: dict[str, list] = {n: [] for n in names.values()}
    for a in doc["annotations"]:
        out[names[a["image_id"]]].append(a["bbox"])
    return {k: xywh_to_xyxy(np.asarray(v, np.float64).reshape(-1, 4)).astype(np.float32)
            for k, v in out.items()}


def hits(pred_boxes: np.ndarray, objects: np.ndarray, iou_threshold: float) -> np.ndarray:
    """bool (N,): prediction i hits some object (IoU >= threshold or centre inside)."""
    p = np.asarray(pred_boxes, np.float32).reshape(-1, 4)
    o = np.asarray(objects, np.float32).reshape(-1, 4)
    if not len(p) or not len(o):
        return np.zeros(len(p), bool)
    iou = np.asarray(box_iou(p, o))
    cx, cy = (p[:, 0] + p[:, 2]) / 2, (p[:, 1] + p[:, 3]) / 2
    inside = ((cx[:, None] >= o[None, :, 0]) & (cx[:, None] <= o[None, :, 2])
              & (cy[:, None] >= o[None, :, 1]) & (cy[:, None] <= o[None, :, 3]))
    return ((iou >= iou_threshold) | inside).any(1)


def ood_scores(preds: Sequence, ood_boxes: Sequence[np.ndarray],
               target_boxes: Sequence[np.ndarray], score_threshold: float,
               iou_threshold: float = 0.25) -> dict:
    """OOD AP (OOD objects as positives) and OOD false alarms at ``score_threshold``.

    Args:
        preds: per image, detections with ``boxes`` (N, 4) and ``scores`` (N,).
        ood_boxes: per image, OOD object boxes (M, 4).
        target_boxes: per image, target boxes (K, 4) (for the recall beside the alarms).
        score_threshold: operating threshold of the detector.
        iou_threshold: what counts as a hit.

    Returns:
        ``{"ood_AP25", "ood_AP50", "ood_false_alarms", "ood_false_alarms_per_image",
        "ood_objects", "ood_objects_hit", "target_recall", "n_images"}``.
    """
    from sar_atd.detectors.base import Detections
    from sar_atd.metrics import evaluate

    if not (len(preds) == len(ood_boxes) == len(target_boxes)):
        raise ValueError("preds, ood_boxes and target_boxes must have one entry per image")
    m = evaluate(list(preds), [np.asarray(b, np.float32).reshape(-1, 4) for b in ood_boxes],
                 iou_thresholds=(0.25, 0.5))
    fa = n_obj = n_obj_hit = n_tgt = n_tgt_hit = 0
    for det, ob, tb in zip(preds, ood_boxes, target_boxes):
        keep = np.asarray(det.scores) >= score_threshold
        d = Detections(np.asarray(det.boxes)[keep], np.asarray(det.scores)[keep])
        fa += int(hits(d.boxes, ob, iou_threshold).sum())
        n_obj += len(ob)
        n_obj_hit += int(hits(ob, d.boxes, iou_threshold).sum()) if len(ob) else 0
        n_tgt += len(tb)
        if len(tb) and len(d.boxes):
            n_tgt_hit += int((np.asarray(box_iou(np.asarray(tb, np.float32),
                                                 d.boxes)).max(1) >= iou_threshold).sum())
    n = max(1, len(preds))
    return {"ood_AP25": m["AP25"], "ood_AP50": m["AP50"], "ood_false_alarms": fa,
            "ood_false_alarms_per_image": fa / n, "ood_objects": n_obj,
            "ood_objects_hit": n_obj_hit,
            "target_recall": (n_tgt_hit / n_tgt) if n_tgt else float("nan"),
            "n_images": len(preds), "score_threshold": score_threshold,
            "iou_threshold": iou_threshold}
