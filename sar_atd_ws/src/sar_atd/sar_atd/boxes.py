"""Axis-aligned box utilities: IoU, NMS, clipping and merging of overlapping boxes.

Box convention (everywhere in SAR-ATD): float32 ``[x0, y0, x1, y1]`` in pixel-edge
coordinates, i.e. a pixel at row ``r``, column ``c`` spans ``[c, c+1) x [r, r+1)``, so the
box of a single pixel is ``[c, r, c+1, r+1]`` and a box's area is ``(x1-x0) * (y1-y0)``
(no "+1" convention).

The same code serves offline evaluation, the CFAR baseline, and the online detector node
(cross-tile merge), so every function works on plain numpy arrays; :func:`nms` can hand off
to ``torchvision.ops.nms`` for speed and keeps a pure numpy path with identical results.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "as_boxes", "box_area", "box_iou", "nms", "clip_boxes", "merge_boxes", "mask_box",
    "xyxy_to_xywh", "xywh_to_xyxy", "score_order",
]


def mask_box(mask: np.ndarray, value: int | bool = 1) -> np.ndarray | None:
    """Tight box of the pixels of ``mask`` equal to ``value``, or None when there are none.

    Args:
        mask: (H, W) label or bool mask (numpy; a torch tensor is read on the CPU).
        value: the label to box (1: SARBake target; True for a bool mask).

    Returns:
        float32 ``[x0, y0, x1, y1]`` in pixel-edge coordinates: the box of a single pixel
        (row r, col c) is ``[c, r, c+1, r+1]``.
    """
    hit = np.asarray(mask.cpu() if hasattr(mask, "cpu") else mask) == value
    rows = np.flatnonzero(hit.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(hit.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


def as_boxes(boxes: np.ndarray | list, name: str = "boxes") -> np.ndarray:
    """Validate and convert to float64 (N, 4) ``[x0, y0, x1, y1]``.

    Raises:
        ValueError: wrong shape, non-finite values, or ``x1 < x0`` / ``y1 < y0``.
    """
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return np.zeros((0, 4), np.float64)
    if b.ndim == 1 and b.shape[0] == 4:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) [x0, y0, x1, y1], got {b.shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError(f"{name} contain NaN or infinite coordinates")
    if np.any(b[:, 2] < b[:, 0]) or np.any(b[:, 3] < b[:, 1]):
        raise ValueError(f"{name} must satisfy x1 >= x0 and y1 >= y0 (xyxy order)")
    return b


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Areas, float64 (N,), of (N, 4) xyxy boxes in square pixels."""
    b = as_boxes(boxes)
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every pair of boxes.

    Args:
        a: (N, 4) xyxy boxes.
        b: (M, 4) xyxy boxes.

    Returns:
        float64 (N, M) IoU in [0, 1]. Pairs whose union is empty (two degenerate boxes)
        have IoU 0. Computed in float64 so that metrics agree with pycocotools to 1e-12.
    """
    a = as_boxes(a, "a")
    b = as_boxes(b, "b")
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float64)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return iou


def score_order(scores: np.ndarray) -> np.ndarray:
    """Indices sorting ``scores`` by decreasing value; ties keep the input order.

    This is the deterministic tie rule used by NMS, merging and the metrics (a stable
    ``mergesort`` of ``-scores``, the same rule pycocotools uses).
    """
    s = np.asarray(scores, np.float64).reshape(-1)
    return np.argsort(-s, kind="mergesort")


def _nms_numpy(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    order = score_order(scores)
    suppressed = np.zeros(len(boxes), bool)
    iou = box_iou(boxes, boxes)
    keep = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return np.asarray(keep, np.int64)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
        use_torchvision: bool | None = None) -> np.ndarray:
    """Greedy non-maximum suppression.

    Boxes are visited by decreasing score (ties: lower index first); a box is discarded if
    its IoU with an already kept box is strictly greater than ``iou_threshold``.

    Args:
        boxes: (N, 4) xyxy boxes.
        scores: (N,) scores.
        iou_threshold: IoU above which the lower-scored box is suppressed, in [0, 1].
        use_torchvision: use ``torchvision.ops.nms`` (faster for large N). ``None``: use it
            for N > 200 when importable. Both paths keep the same boxes, except that
            torchvision's order of exactly tied scores is not guaranteed.

    Returns:
        int64 (K,) indices of the kept boxes, by decreasing score.
    """
    b = as_boxes(boxes)
    s = np.asarray(scores, np.float64).reshape(-1)
    if len(s) != len(b):
        raise ValueError(f"{len(b)} boxes but {len(s)} scores")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    if len(b) == 0:
        return np.zeros((0,), np.int64)
    if use_torchvision is None:
        use_torchvision = len(b) > 200
    if use_torchvision:
        try:
            import torch
            from torchvision.ops import nms as tv_nms
        except ImportError:  # pragma: no cover - torchvision is a dependency
            use_torchvision = False
        else:
            keep = tv_nms(torch.as_tensor(b), torch.as_tensor(s), float(iou_threshold))
            return keep.numpy().astype(np.int64)
    return _nms_numpy(b, s, iou_threshold)


def clip_boxes(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Clip xyxy boxes to an image of ``shape`` (H, W): x in [0, W], y in [0, H].

    Returns float32 (N, 4); boxes entirely outside become degenerate (zero area).
    """
    b = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    h, w = int(shape[0]), int(shape[1])
    b[:, 0::2] = np.clip(b[:, 0::2], 0, w)
    b[:, 1::2] = np.clip(b[:, 1::2], 0, h)
    return b


def merge_boxes(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.5,
                method: str = "weighted") -> tuple[np.ndarray, np.ndarray]:
    """Merge clusters of overlapping boxes into one box each (e.g. cross-tile merge).

    Clusters are formed greedily like NMS: the highest-scored remaining box (ties: lower
    index first) takes every remaining box whose IoU with it is ``> iou_threshold``.

    Args:
        boxes: (N, 4) xyxy boxes.
        scores: (N,) scores.
        iou_threshold: IoU above which a box joins the seed's cluster.
        method: ``"weighted"``: score-weighted mean of the cluster's coordinates (weighted
            box fusion; weights are scores shifted to be positive); ``"union"``: the
            enclosing box of the cluster; ``"max"``: the seed box only (= NMS).

    Returns:
        (boxes float32 (K, 4), scores float32 (K,)), by decreasing score; each cluster's
        score is its maximum score.
    """
    if method not in ("weighted", "union", "max"):
        raise ValueError(f"unknown merge method {method!r}: expected 'weighted', 'union' "
                         "or 'max'")
    b = as_boxes(boxes)
    s = np.asarray(scores, np.float64).reshape(-1)
    if len(s) != len(b):
        raise ValueError(f"{len(b)} boxes but {len(s)} scores")
    if len(b) == 0:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    iou = box_iou(b, b)
    done = np.zeros(len(b), bool)
    out_b, out_s = [], []
    for i in score_order(s):
        if done[i]:
            continue
        members = np.nonzero((~done) & (iou[i] > iou_threshold))[0]
        members = np.union1d(members, [i])
        done[members] = True
        mb = b[members]
        if method == "max":
            merged = b[i]
        elif method == "union":
            merged = np.array([mb[:, 0].min(), mb[:, 1].min(), mb[:, 2].max(),
                               mb[:, 3].max()])
        else:
            w = s[members] - s[members].min() + 1e-6
            merged = (mb * w[:, None]).sum(0) / w.sum()
        out_b.append(merged)
        out_s.append(s[i])
    return np.asarray(out_b, np.float32).reshape(-1, 4), np.asarray(out_s, np.float32)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) ``[x0, y0, x1, y1]`` -> ``[x, y, w, h]`` (COCO), float64."""
    b = as_boxes(boxes).copy()
    b[:, 2:] -= b[:, :2]
    return b


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) ``[x, y, w, h]`` (COCO) -> ``[x0, y0, x1, y1]``, float64."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    if np.any(b[:, 2:] < 0):
        raise ValueError("COCO boxes must have w >= 0 and h >= 0")
    b[:, 2:] += b[:, :2]
    return b
