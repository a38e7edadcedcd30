"""Streaming evaluation: per-image updates, metrics any time, equal to ``metrics.evaluate``.

:class:`MetricAccumulator` keeps, per image, only what the metrics need: the prediction
scores (N, float32 when that is exact, as for scores sent as float32, else float64) and
the rows of the prediction x ground-truth IoU matrix (float64) of the predictions that
overlap a ground-truth box at all (a prediction overlapping none can never match), about
``4 N + 8 K M`` bytes for K overlapping predictions (a few hundred bytes for a scene with
a few targets, even with hundreds of false alarms); images, boxes and pixels are not kept.
``compute()`` gives exactly :func:`sar_atd.metrics.evaluate` on
the same images in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sar_atd.boxes import as_boxes, box_iou, score_order
from sar_atd.metrics import (
    DEFAULT_AP_IOU_THRESHOLDS,
    PredLike,
    _as_pred,
    _Prepared,
    evaluate_prepared,
)

__all__ = ["MetricAccumulator"]


class MetricAccumulator:
    """Accumulate detections and ground truth image by image; compute AP/PR any time.

    Args:
        iou_thresholds: thresholds with a named AP (``"AP25"``...) and a PR curve.
        method: AP interpolation, ``"all-point"`` or ``"coco101"``.
        ap_iou_thresholds: thresholds of the AP-vs-IoU curve.
    """

    def __init__(self, iou_thresholds: Sequence[float] = (0.25, 0.5, 0.7),
                 method: str = "all-point",
                 ap_iou_thresholds: Sequence[float] = DEFAULT_AP_IOU_THRESHOLDS) -> None:
        if method not in ("all-point", "coco101"):
            raise ValueError(f"unknown AP method {method!r}: expected 'all-point' or "
                             "'coco101'")
        self.iou_thresholds = tuple(float(t) for t in iou_thresholds)
        self.ap_iou_thresholds = tuple(float(t) for t in ap_iou_thresholds)
        self.method = method
        self.reset()

    def reset(self) -> None:
        """Forget every image."""
        self._scores: list[np.ndarray] = []
        # per image: (N, M, rows of predictions overlapping any ground truth, their IoUs)
        self._ious: list[tuple[int, int, np.ndarray, np.ndarray]] = []
        self.n_gt = 0
        self.n_pred = 0
        self._cache: tuple[int | None, dict] | None = None

    @property
    def n_images(self) -> int:
        return len(self._scores)

    def update(self, pred: PredLike, gt_boxes: np.ndarray) -> None:
        """Add one image: its predictions and its (M, 4) xyxy ground-truth boxes.

        Raises:
            ValueError: malformed boxes, or scores that are not finite / do not match.
        """
        i = self.n_images
        b, s = _as_pred(pred, i)
        g = as_boxes(gt_boxes, f"ground-truth boxes of image {i}")
        s32 = s.astype(np.float32)
        self._scores.append(s32 if np.array_equal(s32, s) else s)
        iou = box_iou(b, g)
        rows = (np.flatnonzero(iou.any(axis=1)).astype(np.int32) if iou.size
                else np.zeros(0, np.int32))
        self._ious.append((len(b), len(g), rows, iou[rows]))
        self.n_gt += len(g)
        self.n_pred += len(b)
        self._cache = None

    def _prepared(self) -> _Prepared:
        scores = [s.astype(np.float64) for s in self._scores]
        return _Prepared(scores=scores, orders=[score_order(s) for s in scores],
                         ious=[self._dense(i) for i in range(self.n_images)],
                         n_gt=self.n_gt, n_pred=self.n_pred)

    def compute(self, curve_points: int | None = None) -> dict:
        """Metrics of every image so far (the dict of :func:`sar_atd.metrics.evaluate`;
        ``curve_points``: PR curves thinned to that many points, see
        :func:`~sar_atd.metrics.evaluate_prepared`).

        The result is kept until the next :meth:`update`, so callers that report
        periodically (a node's metrics topic and diagnostics) pay for new images only;
        treat the returned dict as read-only.
        """
        if self._cache is None or self._cache[0] != curve_points:
            self._cache = (curve_points, evaluate_prepared(
                self._prepared(), self.n_images, self.iou_thresholds, self.ap_iou_thresholds,
                self.method, curve_points=curve_points))
        return self._cache[1]

    def precision_recall_at(self, score_threshold: float, iou_threshold: float = 0.5
                            ) -> tuple[float, float]:
        """(precision, recall) keeping the predictions scored >= ``score_threshold`` (nan
        precision and recall 0 when none is; nan recall without ground truth)."""
        from sar_atd.metrics import _check_threshold, _curve

        precision, recall, scores, _ = _curve(self._prepared(), _check_threshold(iou_threshold))
        k = int(np.sum(scores >= score_threshold)) - 1
        if k < 0:
            return float("nan"), 0.0 if self.n_gt else float("nan")
        return float(precision[k]), float(recall[k])

    def __getstate__(self) -> dict:
        """Pickled without the cached result (rebuilt on demand; it is the large part)."""
        state = dict(self.__dict__)
        state["_cache"] = None
        return state

    def _dense(self, i: int) -> np.ndarray:
        """(N, M) float64 IoU matrix of image ``i`` (zeros where nothing overlaps)."""
        n, m, rows, sub = self._ious[i]
        out = np.zeros((n, m), np.float64)
        out[rows] = sub
        return out

    def nbytes(self) -> int:
        """Bytes held by the per-image records."""
        return int(sum(s.nbytes + r.nbytes + m.nbytes for s, (_n, _m, r, m) in
                       zip(self._scores, self._ious, strict=True)))
