"""Detection metrics: greedy matching, precision/recall curves and Average Precision.

The paper's protocol (section II.F): predictions are taken by decreasing confidence; each is
compared with the ground truths (GT) of its image that are not already paired with another
prediction and is a true positive when the best IoU among them reaches the threshold. The
precision x recall curve sweeps the confidence threshold over all images pooled, and the
Average Precision (AP) is the area under that curve.

Conventions (fixed, so results are reproducible and comparable with pycocotools):

* IoU: :func:`sar_atd.boxes.box_iou` on xyxy pixel-edge boxes (no "+1"), float64.
* A prediction matches a GT when ``IoU >= iou_threshold`` (pycocotools uses ``>=`` too).
* Ties in score are broken deterministically: predictions are ordered by decreasing score
  with a *stable* sort over the concatenation of all images in input order (image index,
  then prediction index within the image) - exactly pycocotools' ``mergesort`` order.
* Among unmatched GTs with equal best IoU, the lowest GT index wins (pycocotools takes the
  last one; this only matters for exact IoU ties between two GTs).
* A second prediction on an already matched GT is a false positive (duplicate).
* AP ``"all-point"`` (default): VOC2010+ all-point interpolation, the area under the
  monotone (upper-envelope) precision curve over every recall step.
  AP ``"coco101"``: pycocotools' 101-point interpolation (``recThrs = 0:0.01:1``, precision
  envelope sampled at the first recall >= each threshold, 0 beyond the maximum recall).
* No GT in the whole set: AP is undefined (``nan``). GT but no predictions: AP = 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sar_atd.boxes import as_boxes, box_iou, score_order
from sar_atd.detectors.base import Detections

__all__ = [
    "MatchResult", "match_detections", "precision_recall", "average_precision",
    "ap_from_pr", "evaluate", "DEFAULT_AP_IOU_THRESHOLDS", "ap_key",
]

DEFAULT_AP_IOU_THRESHOLDS: tuple[float, ...] = tuple(
    round(0.05 * k, 2) for k in range(1, 20))
"""IoU thresholds 0.05, 0.10, ..., 0.95 for the AP-vs-IoU curve (paper Fig. 12)."""

PredLike = Detections | tuple[np.ndarray, np.ndarray]


@dataclass
class MatchResult:
    """Greedy matching of one image's predictions to its ground truth.

    Attributes:
        order: int64 (N,) prediction indices by decreasing score (ties: lower index first).
        tp: bool (N,) True where the prediction (input order) is a true positive.
        matched_gt: int64 (N,) index of the matched GT, -1 for false positives.
        iou: float64 (N,) IoU with the matched GT (0 for false positives).
    """

    order: np.ndarray
    tp: np.ndarray
    matched_gt: np.ndarray
    iou: np.ndarray


def ap_key(iou_threshold: float) -> str:
    """Name of an AP figure: 0.25 -> ``"AP25"``, 0.5 -> ``"AP50"``, 0.05 -> ``"AP5"``."""
    return f"AP{int(round(iou_threshold * 100))}"


def _check_threshold(iou_threshold: float) -> float:
    t = float(iou_threshold)
    if not 0.0 < t <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    return t


def _greedy(order: np.ndarray, iou: np.ndarray, iou_threshold: float
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy matching given a (N, M) IoU matrix and the visiting order of predictions."""
    n, m = iou.shape
    tp = np.zeros(n, bool)
    matched = np.full(n, -1, np.int64)
    miou = np.zeros(n, np.float64)
    if m == 0 or n == 0:
        return tp, matched, miou
    free = np.ones(m, bool)
    for p in order:
        cand = np.where(free, iou[p], -1.0)
        g = int(np.argmax(cand))  # first (lowest index) among ties
        if cand[g] >= iou_threshold:
            tp[p] = True
            matched[p] = g
            miou[p] = cand[g]
            free[g] = False
    return tp, matched, miou


def match_detections(pred_boxes: np.ndarray, pred_scores: np.ndarray,
                     gt_boxes: np.ndarray, iou_threshold: float) -> MatchResult:
    """Match one image's predictions to its ground truth (the paper's greedy rule).

    Args:
        pred_boxes: (N, 4) xyxy predicted boxes.
        pred_scores: (N,) confidences (higher = more confident).
        gt_boxes: (M, 4) xyxy ground-truth boxes.
        iou_threshold: minimum IoU (inclusive) for a true positive, in (0, 1].

    Returns:
        :class:`MatchResult`.
    """
    t = _check_threshold(iou_threshold)
    pb = as_boxes(pred_boxes, "pred_boxes")
    ps = np.asarray(pred_scores, np.float64).reshape(-1)
    if len(ps) != len(pb):
        raise ValueError(f"{len(pb)} predicted boxes but {len(ps)} scores")
    if not np.all(np.isfinite(ps)):
        raise ValueError("pred_scores contain NaN or infinite values")
    gb = as_boxes(gt_boxes, "gt_boxes")
    order = score_order(ps)
    tp, matched, miou = _greedy(order, box_iou(pb, gb), t)
    return MatchResult(order=order, tp=tp, matched_gt=matched, iou=miou)


@dataclass
class _Prepared:
    """Validated inputs with per-image IoU matrices computed once for all thresholds."""

    scores: list[np.ndarray]
    orders: list[np.ndarray]
    ious: list[np.ndarray]
    n_gt: int
    n_pred: int


def _as_pred(p: PredLike, i: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(p, Detections):
        b, s = p.boxes, p.scores
    else:
        try:
            b, s = p
        except (TypeError, ValueError):
            raise ValueError(f"prediction {i} must be Detections or (boxes, scores), got "
                             f"{type(p).__name__}") from None
    b = as_boxes(b, f"predicted boxes of image {i}")
    s = np.asarray(s, np.float64).reshape(-1)
    if len(s) != len(b):
        raise ValueError(f"image {i}: {len(b)} predicted boxes but {len(s)} scores")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"image {i}: scores contain NaN or infinite values")
    return b, s


def _prepare(preds: Sequence[PredLike], gts: Sequence[np.ndarray]) -> _Prepared:
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} prediction sets but {len(gts)} ground-truth sets "
                         "(one of each per image)")
    scores, orders, ious = [], [], []
    n_gt = n_pred = 0
    for i, (p, g) in enumerate(zip(preds, gts, strict=True)):
        b, s = _as_pred(p, i)
        gb = as_boxes(g, f"ground-truth boxes of image {i}")
        scores.append(s)
        orders.append(score_order(s))
        ious.append(box_iou(b, gb))
        n_gt += len(gb)
        n_pred += len(b)
    return _Prepared(scores, orders, ious, n_gt, n_pred)


def _pooled(prep: _Prepared, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """All predictions' (scores, tp) in global decreasing-score order (stable)."""
    all_s, all_tp = [], []
    for s, order, iou in zip(prep.scores, prep.orders, prep.ious, strict=True):
        tp, _, _ = _greedy(order, iou, iou_threshold)
        all_s.append(s[order])
        all_tp.append(tp[order])
    if not all_s:
        return np.zeros(0), np.zeros(0, bool)
    s = np.concatenate(all_s)
    tp = np.concatenate(all_tp)
    # stable sort over (image, within-image score order): pycocotools' tie order
    o = np.argsort(-s, kind="mergesort")
    return s[o], tp[o]


def _curve(prep: _Prepared, iou_threshold: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    s, tp = _pooled(prep, iou_threshold)
    tps = np.cumsum(tp, dtype=np.float64)
    fps = np.cumsum(~tp, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tps / np.maximum(tps + fps, 1.0)
        recall = tps / prep.n_gt if prep.n_gt else np.full_like(tps, np.nan)
    return precision, recall, s, tps


def precision_recall(preds: Sequence[PredLike], gts: Sequence[np.ndarray],
                     iou_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision x recall curve over a set of images.

    Args:
        preds: one :class:`Detections` (or ``(boxes, scores)``) per image.
        gts: one (M_i, 4) xyxy ground-truth array per image.
        iou_threshold: IoU for a true positive (inclusive), in (0, 1].

    Returns:
        ``(precision, recall, scores)``, float64 (P,) each, P = total predictions, ordered by
        decreasing score: entry k is the precision/recall when keeping the k+1 most
        confident predictions, and ``scores[k]`` is that confidence threshold. ``recall`` is
        nan where the set holds no GT.
    """
    t = _check_threshold(iou_threshold)
    precision, recall, scores, _ = _curve(_prepare(preds, gts), t)
    return precision, recall, scores


def ap_from_pr(precision: np.ndarray, recall: np.ndarray, method: str = "all-point",
               n_gt: int | None = None) -> float:
    """Area under a precision x recall curve.

    Args:
        precision: (P,) precisions by decreasing score (from :func:`precision_recall`).
        recall: (P,) matching recalls (non-decreasing).
        method: ``"all-point"`` (VOC2010+) or ``"coco101"`` (pycocotools).
        n_gt: number of GT; 0 gives ``nan``. When None, inferred from ``recall`` (nan
            recall means no GT).

    Returns:
        AP in [0, 1], or nan when there is no ground truth.
    """
    if method not in ("all-point", "coco101"):
        raise ValueError(f"unknown AP method {method!r}: expected 'all-point' or 'coco101'")
    p = np.asarray(precision, np.float64).reshape(-1)
    r = np.asarray(recall, np.float64).reshape(-1)
    if len(p) != len(r):
        raise ValueError(f"precision has {len(p)} points but recall {len(r)}")
    if n_gt == 0 or (len(r) and np.isnan(r).any()):
        return float("nan")
    if len(p) == 0:
        return 0.0
    if method == "all-point":
        mrec = np.concatenate([[0.0], r, [1.0]])
        mpre = np.concatenate([[0.0], p, [0.0]])
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
        return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))
    # coco101: precision as pycocotools computes it (tp / (tp + fp + eps))
    k = np.arange(1, len(p) + 1, dtype=np.float64)
    pr = np.round(p * k) / (k + np.spacing(1))  # counts recovered: tp = precision * k
    pr = np.maximum.accumulate(pr[::-1])[::-1]
    rec_thrs = np.linspace(0.0, 1.0, 101)
    inds = np.searchsorted(r, rec_thrs, side="left")
    q = np.where(inds < len(pr), pr[np.minimum(inds, len(pr) - 1)], 0.0)
    return float(np.mean(q))


def _ap(prep: _Prepared, t: float, method: str) -> float:
    if prep.n_gt == 0:
        return float("nan")
    precision, recall, _, _ = _curve(prep, t)
    return ap_from_pr(precision, recall, method, prep.n_gt)


def average_precision(preds: Sequence[PredLike], gts: Sequence[np.ndarray],
                      iou_threshold: float, method: str = "all-point") -> float:
    """Average Precision at one IoU threshold.

    Args:
        preds: one :class:`Detections` (or ``(boxes, scores)``) per image.
        gts: one (M_i, 4) xyxy ground-truth array per image.
        iou_threshold: IoU for a true positive (inclusive), in (0, 1].
        method: ``"all-point"`` (default, VOC2010+) or ``"coco101"``.

    Returns:
        AP in [0, 1]; nan when there is no GT at all; 0 with GT but no predictions.
    """
    if method not in ("all-point", "coco101"):
        raise ValueError(f"unknown AP method {method!r}: expected 'all-point' or 'coco101'")
    return _ap(_prepare(preds, gts), _check_threshold(iou_threshold), method)


def evaluate(preds: Sequence[PredLike], gts: Sequence[np.ndarray],
             iou_thresholds: Sequence[float] = (0.25, 0.5),
             ap_iou_thresholds: Sequence[float] = DEFAULT_AP_IOU_THRESHOLDS,
             method: str = "all-point") -> dict:
    """All the numbers of a detection evaluation, JSON-ready (floats, lists, nan allowed).

    Args:
        preds: one :class:`Detections` (or ``(boxes, scores)``) per image.
        gts: one (M_i, 4) xyxy ground-truth array per image.
        iou_thresholds: thresholds with a full PR curve and a named AP (``"AP25"``...).
        ap_iou_thresholds: thresholds of the AP-vs-IoU curve (default 0.05..0.95).
        method: AP interpolation, ``"all-point"`` or ``"coco101"``.

    Returns:
        dict with keys ``method``, ``n_images``, ``n_gt``, ``n_pred``, ``"AP25"``-style
        entries for every threshold in ``iou_thresholds`` and 0.7, ``ap_50_95`` (mean AP over
        0.50:0.05:0.95), ``pr_curves`` ({"0.25": {"precision", "recall", "scores"}}),
        ``operating_points`` ({"0.25": best-F1 point: score threshold, precision, recall,
        f1, tp, fp}), ``max_recall`` ({"0.25": recall with every prediction kept}) and
        ``ap_vs_iou`` ({"iou": [...], "ap": [...]}).
    """
    if method not in ("all-point", "coco101"):
        raise ValueError(f"unknown AP method {method!r}: expected 'all-point' or 'coco101'")
    return evaluate_prepared(_prepare(preds, gts), len(gts), iou_thresholds,
                             ap_iou_thresholds, method)


def evaluate_prepared(prep: _Prepared, n_images: int,
                      iou_thresholds: Sequence[float] = (0.25, 0.5),
                      ap_iou_thresholds: Sequence[float] = DEFAULT_AP_IOU_THRESHOLDS,
                      method: str = "all-point", curve_points: int | None = None) -> dict:
    """:func:`evaluate` on inputs already reduced to per-image scores and IoU matrices
    (used by :class:`sar_atd.streaming.MetricAccumulator`).

    ``curve_points`` (None = every prediction) keeps at most that many evenly spaced points
    of each PR curve in the result (the last included): a long stream's curves would
    otherwise hold three Python floats per prediction. AP values and operating points are
    computed on the full curves either way."""
    if method not in ("all-point", "coco101"):
        raise ValueError(f"unknown AP method {method!r}: expected 'all-point' or 'coco101'")
    named = sorted({_check_threshold(t) for t in (*iou_thresholds, 0.7)})
    out: dict = {"method": method, "n_images": n_images, "n_gt": prep.n_gt,
                 "n_pred": prep.n_pred}
    pr_curves, ops, max_rec = {}, {}, {}
    for t in named:
        out[ap_key(t)] = _ap(prep, t, method)
        precision, recall, scores, tps = _curve(prep, t)
        key = f"{t:.2f}"
        keep = (np.unique(np.linspace(0, len(scores) - 1, curve_points).round().astype(int))
                if curve_points is not None and len(scores) > curve_points else slice(None))
        pr_curves[key] = {"precision": precision[keep].tolist(),
                          "recall": recall[keep].tolist(), "scores": scores[keep].tolist()}
        max_rec[key] = float(recall[-1]) if len(recall) else (0.0 if prep.n_gt else
                                                               float("nan"))
        if len(precision) and prep.n_gt:
            f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
            k = int(np.argmax(f1))
            ops[key] = {"score_threshold": float(scores[k]), "precision": float(precision[k]),
                        "recall": float(recall[k]), "f1": float(f1[k]),
                        "tp": int(tps[k]), "fp": int(k + 1 - tps[k])}
    grid = [_check_threshold(t) for t in ap_iou_thresholds]
    aps = [_ap(prep, t, method) for t in grid]
    coco_grid = [round(0.5 + 0.05 * k, 2) for k in range(10)]
    out["ap_50_95"] = float(np.mean([_ap(prep, t, method) for t in coco_grid]))
    out["pr_curves"] = pr_curves
    out["operating_points"] = ops
    out["max_recall"] = max_rec
    out["ap_vs_iou"] = {"iou": grid, "ap": aps}
    return out
