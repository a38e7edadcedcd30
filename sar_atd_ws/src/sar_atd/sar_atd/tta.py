"""Test-time box refinement: box voting, and test-time augmentation (TTA) fused by WBF.

**Box voting** (:func:`box_voting`; Gidaris and Komodakis, ICCV 2015): non-maximum
suppression keeps the best-scored box of each target as usual, but its coordinates become
the score-weighted mean of every candidate box (its own included) overlapping it with IoU >=
``vote_iou``, so the regression of many anchors is averaged instead of one anchor's being
kept. Scores and the kept set are those of plain NMS; it costs no extra inference, only the
candidates before NMS. :func:`box_voting` is the numpy reference; the runtime runs the
tensor version of :mod:`sar_atd.backends.voting` (per class, voters scored >= 0.01), the
same operations in the torch backend and inside the graphs of ``sar-atd export``
(``box_voting_iou``; on by default at IoU 0.5).

**TTA**: one image seen several ways, the detections fused into one set.

Views (names accepted by :func:`parse_view`):

* ``identity``: the image as given;
* ``mirror``: the **cross-range mirror**, columns reversed (``x -> W - x``). The radar stays
  at the bottom of the image (the model convention, :mod:`sar_atd.scene`), so the range
  direction, the layover side and the shadow side (towards the top) are unchanged: the
  mirrored image is another plausible SAR image of the same scene. A row flip would put the
  shadows below the targets, which no training image shows;
* ``scale:S``: the image resampled by ``S`` (bilinear up, area averaging down; ``S`` in
  [0.5, 2]), boxes divided by the realised factor per axis.

Boxes of every view are mapped back to the image's pixels and fused by **weighted box
fusion** (WBF, Solovyev et al., Image and Vision Computing 2021): all boxes of all views in
decreasing score order; a box joins the first cluster whose fused box it overlaps with IoU
above ``iou_threshold``, else it opens a new cluster; a cluster's box is the score-weighted
mean of its members' coordinates, its score the mean member score times ``min(members,
views) / views`` (a box seen by one view of two keeps half its score).

:class:`TtaDetector` wraps one or more detectors (several detectors fused the same way form
an ensemble) behind the common :class:`~sar_atd.detectors.base.Detector` interface. Fused
scores are not the model's calibrated probabilities: an operating threshold chosen for the
plain model does not carry over.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from sar_atd.boxes import as_boxes, box_iou, nms
from sar_atd.detectors.base import Detections, Detector

__all__ = ["View", "parse_view", "parse_views", "view_image", "boxes_from_view",
           "mirror_boxes", "detect_views", "weighted_box_fusion", "box_voting",
           "TtaDetector", "SCALE_RANGE"]

SCALE_RANGE = (0.5, 2.0)
"""Allowed resampling factors of a ``scale:S`` view."""


@dataclass(frozen=True)
class View:
    """One test-time view of an image.

    Attributes:
        mirror: reverse the columns (cross-range mirror; the radar stays at the bottom).
        scale: resampling factor of both axes (1 = native pixels).
    """

    mirror: bool = False
    scale: float = 1.0

    @property
    def name(self) -> str:
        """The spelling :func:`parse_view` reads back (``identity``, ``mirror``,
        ``scale:1.25``, ``mirror+scale:1.25``)."""
        parts = (["mirror"] if self.mirror else []) + (
            [f"scale:{self.scale:g}"] if self.scale != 1.0 else [])
        return "+".join(parts) or "identity"


def parse_view(text: str) -> View:
    """``identity`` | ``mirror`` | ``scale:S`` | ``mirror+scale:S`` -> :class:`View`.

    Raises:
        ValueError: an unknown name or a scale outside :data:`SCALE_RANGE`.
    """
    mirror, scale = False, 1.0
    for part in str(text).strip().lower().split("+"):
        part = part.strip()
        if part == "identity":
            continue
        if part == "mirror":
            mirror = True
        elif part.startswith("scale:"):
            try:
                scale = float(part[6:])
            except ValueError:
                raise ValueError(f"TTA view {text!r}: scale must be a number, e.g. "
                                 "scale:1.25") from None
            if not (math.isfinite(scale) and SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]):
                raise ValueError(f"TTA view {text!r}: scale must be in [{SCALE_RANGE[0]}, "
                                 f"{SCALE_RANGE[1]}]")
        else:
            raise ValueError(f"unknown TTA view {part!r} in {text!r}: expected identity, "
                             "mirror, scale:S or mirror+scale:S")
    return View(mirror, scale)


def parse_views(spec: str | Sequence[str]) -> tuple[View, ...]:
    """Comma-separated view names (or a sequence of them) -> distinct views, in order.

    ``""`` gives no views (TTA off). Raises ValueError on a bad or repeated view.
    """
    items = [s for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    views = tuple(parse_view(s) for s in items)
    if len(set(views)) != len(views):
        raise ValueError(f"TTA views {spec!r} name one view twice")
    return views


def _scaled_hw(hw: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, round(hw[0] * scale)), max(1, round(hw[1] * scale))


def view_image(image: np.ndarray, view: View) -> np.ndarray:
    """The image as ``view`` sees it: uint8 (H, W) -> uint8 (H', W') (a new array)."""
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {img.shape}")
    out = img[:, ::-1] if view.mirror else img
    if view.scale != 1.0:
        nh, nw = _scaled_hw(img.shape, view.scale)
        mode = cv2.INTER_AREA if view.scale < 1 else cv2.INTER_LINEAR
        out = cv2.resize(np.ascontiguousarray(out), (nw, nh), interpolation=mode)
    return np.ascontiguousarray(out)


def mirror_boxes(boxes: np.ndarray, width: float) -> np.ndarray:
    """Boxes of an image of ``width`` columns -> boxes of its cross-range mirror.

    ``[x0, y0, x1, y1] -> [W - x1, y0, W - x0, y1]`` (pixel-edge coordinates); the mapping
    is its own inverse. Returns float32 (N, 4).
    """
    b = as_boxes(boxes)
    return np.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], axis=1).astype(
        np.float32)


def boxes_from_view(boxes: np.ndarray, view: View, hw: tuple[int, int]) -> np.ndarray:
    """Boxes found in ``view_image(image, view)`` -> float32 (N, 4) boxes of ``image``.

    Args:
        boxes: (N, 4) xyxy in the view's pixels.
        view: the view they were found in.
        hw: (H, W) of the original image.
    """
    b = as_boxes(boxes).astype(np.float64)
    if view.scale != 1.0:
        nh, nw = _scaled_hw(hw, view.scale)
        b[:, 0::2] *= hw[1] / nw
        b[:, 1::2] *= hw[0] / nh
    if view.mirror:
        b = mirror_boxes(b, hw[1]).astype(np.float64)
    return b.astype(np.float32)


def detect_views(detector: Detector, image: np.ndarray, views: Sequence[View]
                 ) -> tuple[list[Detections], list[float]]:
    """Run ``detector`` on every view of a uint8 (H, W) image.

    Returns:
        (one :class:`Detections` per view, boxes in the image's pixels; milliseconds of
        each view's ``detect`` call, resampling excluded).
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {img.shape}")
    out, ms = [], []
    for view in views:
        x = view_image(img, view)
        t0 = time.perf_counter()
        d = detector.detect(x)
        ms.append((time.perf_counter() - t0) * 1e3)
        out.append(Detections(boxes_from_view(d.boxes, view, img.shape), d.scores))
    return out, ms


def weighted_box_fusion(boxes_list: Sequence[np.ndarray], scores_list: Sequence[np.ndarray],
                        iou_threshold: float = 0.55, weights: Sequence[float] | None = None,
                        one_per_view: bool = True) -> Detections:
    """Fuse the detections of several views/models of one image (module doc, WBF).

    Args:
        boxes_list: V arrays (N_v, 4) xyxy, all in the same image's pixels.
        scores_list: V arrays (N_v,) scores (any non-negative range; probabilities for models).
        iou_threshold: a box joins a cluster when its IoU with the cluster's fused box
            exceeds this, in (0, 1].
        weights: V non-negative view weights (default 1 each): scores are multiplied by
            them, and the count rescale divides by their sum.
        one_per_view: a cluster takes at most one box of each view (a second box of the
            same view opens its own cluster), so a view's low-scored duplicates of a target
            do not dilute the target's fused score; False: the original WBF rule.

    Returns:
        :class:`Detections`, one box per cluster, sorted by decreasing fused score.
    """
    v = len(boxes_list)
    if v == 0 or len(scores_list) != v:
        raise ValueError(f"need one score array per box array, got {v} and {len(scores_list)}")
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    w = np.ones(v) if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if len(w) != v or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be {v} non-negative numbers with a positive sum")
    boxes, scores = [], []
    for k, (b, s) in enumerate(zip(boxes_list, scores_list, strict=True)):
        bk = as_boxes(b, f"boxes_list[{k}]")
        sk = np.asarray(s, np.float64).reshape(-1)
        if len(sk) != len(bk):
            raise ValueError(f"view {k}: {len(bk)} boxes but {len(sk)} scores")
        boxes.append(bk)
        scores.append(sk * w[k])
    allb, alls = np.concatenate(boxes), np.concatenate(scores)
    view = np.concatenate([np.full(len(b), k) for k, b in enumerate(boxes)])
    if len(allb) == 0:
        return Detections()
    order = np.argsort(-alls, kind="stable")
    fused = np.zeros((0, 4))
    wsum: list[np.ndarray] = []  # per cluster: sum(score * box)
    ssum: list[float] = []
    count: list[int] = []
    members: list[set[int]] = []  # views already in each cluster
    for i in order:
        hit = -1
        if len(fused):
            iou = box_iou(allb[i:i + 1], fused)[0]
            if one_per_view:
                iou[[view[i] in m for m in members]] = -1.0
            best = int(np.argmax(iou))
            if iou[best] > iou_threshold:
                hit = best
        if hit < 0:
            wsum.append(allb[i] * alls[i])
            ssum.append(float(alls[i]))
            count.append(1)
            members.append({int(view[i])})
            fused = np.vstack([fused, allb[i]])
        else:
            wsum[hit] = wsum[hit] + allb[i] * alls[i]
            ssum[hit] += float(alls[i])
            count[hit] += 1
            members[hit].add(int(view[i]))
            fused[hit] = wsum[hit] / ssum[hit] if ssum[hit] > 0 else fused[hit]
    n = np.asarray(count, np.float64)
    score = np.asarray(ssum) / n * np.minimum(n, v) / w.sum()
    o = np.argsort(-score, kind="stable")
    return Detections(fused[o].astype(np.float32), score[o].astype(np.float32))


def box_voting(boxes: np.ndarray, scores: np.ndarray, nms_iou: float = 0.5,
               vote_iou: float = 0.5, max_detections: int | None = None) -> Detections:
    """NMS whose kept boxes take the score-weighted mean of their overlapping candidates
    (numpy reference of :func:`sar_atd.backends.voting.vote_tensors`, one class).

    Args:
        boxes: (N, 4) xyxy candidate boxes of one image, before NMS.
        scores: (N,) non-negative scores.
        nms_iou: NMS threshold (a candidate is suppressed above it), in [0, 1].
        vote_iou: candidates with IoU >= this with a kept box vote on its coordinates,
            in (0, 1].
        max_detections: keep at most this many (best scores first); None keeps all.

    Returns:
        :class:`Detections` of the NMS-kept boxes, by decreasing score, with voted
        coordinates and their own scores.
    """
    b = as_boxes(boxes)
    s = np.asarray(scores, np.float64).reshape(-1)
    if len(s) != len(b):
        raise ValueError(f"{len(b)} boxes but {len(s)} scores")
    if not 0 < vote_iou <= 1:
        raise ValueError(f"vote_iou must be in (0, 1], got {vote_iou}")
    if np.any(s < 0):
        raise ValueError("box voting needs non-negative scores")
    keep = nms(b, s, nms_iou)
    if max_detections is not None:
        keep = keep[:max_detections]
    if len(keep) == 0:
        return Detections()
    iou = box_iou(b[keep], b)
    out = np.empty((len(keep), 4))
    for r, k in enumerate(keep):
        voters = iou[r] >= vote_iou
        voters[k] = True  # a zero-area box has IoU 0 with itself
        w = s[voters]
        out[r] = (w[:, None] * b[voters]).sum(0) / w.sum() if w.sum() > 0 else b[k]
    return Detections(out.astype(np.float32), s[keep].astype(np.float32))


class TtaDetector:
    """Detectors run on several views of each image, detections fused by WBF.

    Args:
        detectors: one detector (TTA) or several (an ensemble, each run on every view).
        views: the views (:func:`parse_views`); at least one.
        iou_threshold: WBF cluster threshold.
        name: detector name for reports (default: the first detector's name plus the views).

    ``detect`` costs one inference per detector and view. ``model_info`` is the first
    detector's (training geometry and rendering); its operating threshold was chosen on
    unfused scores. ``last_ms`` holds the milliseconds of each (detector, view) of the last
    image, for the time figures of the benchmark.
    """

    def __init__(self, detectors: Detector | Sequence[Detector],
                 views: Sequence[View] | Sequence[str] | str = ("identity", "mirror"),
                 iou_threshold: float = 0.55, name: str | None = None) -> None:
        dets = [detectors] if not isinstance(detectors, Sequence) else list(detectors)
        if not dets:
            raise ValueError("TtaDetector needs at least one detector")
        self.detectors = dets
        self.views: tuple[View, ...] = (
            parse_views(views) if isinstance(views, str)
            else tuple(parse_view(v) if isinstance(v, str) else v for v in views))
        if not self.views:
            raise ValueError("TtaDetector needs at least one view")
        if not 0 < iou_threshold <= 1:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        self.iou_threshold = float(iou_threshold)
        self.name = name or (dets[0].name + " + TTA(" + ",".join(v.name for v in self.views)
                             + (f"; {len(dets)} models" if len(dets) > 1 else "") + ")")
        self.model_info = getattr(dets[0], "model_info", None)
        self.last_ms: list[float] = []

    def detect(self, image: np.ndarray) -> Detections:
        """Detections of a uint8 (H, W) image, fused over detectors x views."""
        img = np.asarray(image)
        dets: list[Detections] = []
        ms: list[float] = []
        for det in self.detectors:
            d, t = detect_views(det, img, self.views)
            dets += d
            ms += t
        self.last_ms = ms
        out = weighted_box_fusion([d.boxes for d in dets], [d.scores for d in dets],
                                  self.iou_threshold)
        h, w = img.shape
        out.boxes[:, 0::2] = np.clip(out.boxes[:, 0::2], 0, w)
        out.boxes[:, 1::2] = np.clip(out.boxes[:, 1::2], 0, h)
        return out
