"""Streaming evaluation: per-image updates, metrics any time, equal to ``metrics.evaluate``.

:class:`MetricAccumulator` keeps, per image, only what the metrics need: the prediction
scores (float32, N) and the prediction x ground-truth IoU matrix (float64, N x M), about
``8 N + 8 N M`` bytes (a few hundred bytes for a scene with a few targets); images, boxes
and pixels are not kept. ``compute()`` gives exactly :func:`sar_atd.metrics.evaluate` on
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
        self._ious: list[np.ndarray] = []
        self.n_gt = 0
        self.n_pred = 0
        self._cache: dict | None = None

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
        self._scores.append(s)
        self._ious.append(box_iou(b, g))
        self.n_gt += len(g)
        self.n_pred += len(b)
        self._cache = None

    def compute(self) -> dict:
        """Metrics of every image so far (the dict of :func:`sar_atd.metrics.evaluate`).

        The result is kept until the next :meth:`update`, so callers that report
        periodically (a node's metrics topic and diagnostics) pay for new images only;
        treat the returned dict as read-only.
        """
        if self._cache is None:
            prep = _Prepared(scores=list(self._scores),
                             orders=[score_order(s) for s in self._scores],
                             ious=list(self._ious), n_gt=self.n_gt, n_pred=self.n_pred)
            self._cache = evaluate_prepared(prep, self.n_images, self.iou_thresholds,
                                            self.ap_iou_thresholds, self.method)
        return self._cache

    def nbytes(self) -> int:
        """Bytes held by the per-image records."""
        return int(sum(s.nbytes + m.nbytes for s, m in zip(self._scores, self._ious,
                                                            strict=True)))
