"""Box definitions and box measurements against SARBake target/shadow masks.

Geometry: MSTAR chips (and every image of this project) have the radar at the bottom, so
range grows upwards: the **far** side of a box is its top edge (``y0``), the **near** side
its bottom edge (``y1``, the layover side), and **left**/**right** are the cross-range edges
(``x0``/``x1``). Shadows extend from a target towards the far side (smaller ``y``).

Side errors are signed *outwards*: a positive error means the box extends beyond the
reference on that side (too large there), a negative one that it stops short.

All functions are pure numpy on one image (uint8 or float (H, W)) and boxes in SAR-ATD's
float32 ``[x0, y0, x1, y1]`` pixel-edge convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sar_atd.boxes import as_boxes, box_iou, mask_box
from sar_atd.sar.chips import MASK_SHADOW, MASK_TARGET

__all__ = ["SIDES", "edge_errors", "side_fix_iou_gain", "returns_box", "core_box",
           "shadow_behind_columns", "shadow_start_edge", "mask_orientation_deg",
           "RefineConfig", "refine_box", "refine_boxes", "fit_side_offsets", "apply_side_offsets"]

SIDES = ("far", "near", "left", "right")
"""Box sides in the order used by every (N, 4) side array of this module."""
_COORD = (1, 3, 0, 2)  # box coordinate of each side
_OUTWARD = np.array([-1.0, 1.0, -1.0, 1.0])  # sign that makes "beyond the reference" > 0


def edge_errors(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Signed outward error of each side of ``pred`` against ``ref``.

    Args:
        pred: (N, 4) xyxy boxes.
        ref: (N, 4) xyxy reference boxes (row-aligned with ``pred``).

    Returns:
        float64 (N, 4) pixels in :data:`SIDES` order (far, near, left, right); > 0 where
        ``pred`` extends beyond ``ref``.
    """
    p = as_boxes(pred, "pred").astype(np.float64)
    r = as_boxes(ref, "ref").astype(np.float64)
    if p.shape != r.shape:
        raise ValueError(f"pred and ref must have the same shape, got {p.shape} and {r.shape}")
    return (p[:, _COORD] - r[:, _COORD]) * _OUTWARD


def side_fix_iou_gain(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """IoU gained by moving one side of ``pred`` onto ``ref``'s, for each side in turn.

    Tells which side costs the most overlap: a side with zero error gains nothing.

    Returns:
        float64 (N, 4) in :data:`SIDES` order; ``IoU(pred with side s from ref, ref) -
        IoU(pred, ref)``.
    """
    p = as_boxes(pred, "pred").astype(np.float64)
    r = as_boxes(ref, "ref").astype(np.float64)
    if p.shape != r.shape:
        raise ValueError(f"pred and ref must have the same shape, got {p.shape} and {r.shape}")
    base = np.diag(box_iou(p, r)) if len(p) else np.zeros(0)
    out = np.zeros((len(p), 4))
    for s, c in enumerate(_COORD):
        q = p.copy()
        q[:, c] = r[:, c]
        q[:, 2] = np.maximum(q[:, 2], q[:, 0])
        q[:, 3] = np.maximum(q[:, 3], q[:, 1])
        out[:, s] = (np.diag(box_iou(q, r)) if len(p) else np.zeros(0)) - base
    return out


def returns_box(image: np.ndarray, mask: np.ndarray, factor: float = 3.0,
                near_px: int = 2) -> np.ndarray | None:
    """Box of the target's visible returns: where the image is bright near the target mask.

    Pixels count when they exceed ``factor`` times the median clutter value (mask value 0)
    and lie within ``near_px`` pixels of the target (mask value 1). The difference between
    this box and the mask box measures where the returns end inside the mask (weak far-side
    returns) or spill beyond it (sensor blur, layover).

    Args:
        image: (H, W) uint8 or float, any monotonic rendering of magnitude.
        mask: uint8 (H, W) SARBake mask (0 clutter, 1 target, 2 shadow).
        factor: threshold as a multiple of the clutter median (> 0).
        near_px: how far beyond the target mask returns still count (>= 0).

    Returns:
        float32 [x0, y0, x1, y1] or None (no target pixel, or nothing above threshold).
    """
    img = np.asarray(image, np.float64)
    if img.shape != mask.shape or img.ndim != 2:
        raise ValueError(f"image {img.shape} and mask {mask.shape} must be the same 2-D shape")
    if factor <= 0 or near_px < 0:
        raise ValueError(f"factor must be > 0 and near_px >= 0, got {factor}, {near_px}")
    target = mask == MASK_TARGET
    if not target.any():
        return None
    clutter = img[mask == 0]
    level = float(np.median(clutter)) if clutter.size else float(np.median(img))
    near = target
    if near_px:
        k = np.ones((2 * near_px + 1, 2 * near_px + 1), np.uint8)
        near = cv2.dilate(target.astype(np.uint8), k) > 0
    return mask_box((img > factor * level) & near, True)


def core_box(mask: np.ndarray, radius: int = 1) -> np.ndarray | None:
    """Box of the target mask after a morphological opening (thin protrusions removed).

    An opening with a ``(2 radius + 1)`` square removes parts of the target mask narrower
    than that square, e.g. a gun barrel; the difference to the mask box is the length of
    such protrusions per side.

    Returns:
        float32 box, or None when the opened mask is empty (or no target pixel).
    """
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    target = (np.asarray(mask) == MASK_TARGET).astype(np.uint8)
    if radius:
        k = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
        target = cv2.morphologyEx(target, cv2.MORPH_OPEN, k)
    return mask_box(target, 1)


def shadow_start_edge(mask: np.ndarray) -> float | None:
    """Row edge (y, pixel-edge coordinates) where the shadow typically starts behind the target.

    For every column of the target mask, the shadow's near-range boundary is the bottom edge
    (row + 1) of the shadow pixels lying on the far side of that column's farthest target
    pixel; the median over columns with such a shadow is returned. Compared with a box's far
    edge it answers "does the far edge sit at the shadow's start?".

    Returns:
        float, or None when no target column has a shadow on its far side.
    """
    edges = [rows.max() + 1 for _, _, rows in shadow_behind_columns(mask)]
    return float(np.median(edges)) if edges else None


def shadow_behind_columns(mask: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """Per target column with shadow on its far side: (column, farthest target row, shadow
    rows on the far side of it, ascending). The far side is the smaller rows (radar at the
    bottom)."""
    m = np.asarray(mask)
    target, shadow = m == MASK_TARGET, m == MASK_SHADOW
    out = []
    for col in np.nonzero(target.any(axis=0))[0]:
        far = int(np.argmax(target[:, col]))  # farthest (smallest-row) target pixel
        rows = np.nonzero(shadow[:far, col])[0]
        if rows.size:
            out.append((int(col), far, rows))
    return out


def mask_orientation_deg(mask: np.ndarray) -> float | None:
    """Orientation of the target mask's principal axis, degrees in [0, 180).

    0 = long axis along cross-range (x), 90 = along range (y, end-on to the radar). MSTAR
    chips in this layout carry no azimuth metadata, so this stands in for the azimuth
    (modulo 180: front and back are not distinguished).

    Returns:
        float, or None with fewer than two target pixels.
    """
    rows, cols = np.nonzero(np.asarray(mask) == MASK_TARGET)
    if rows.size < 2:
        return None
    cov = np.cov(np.stack([cols.astype(np.float64), -rows.astype(np.float64)]))
    evals, evecs = np.linalg.eigh(cov)
    vx, vy = evecs[:, int(np.argmax(evals))]
    return float(np.degrees(np.arctan2(vy, vx)) % 180.0)


@dataclass(frozen=True)
class RefineConfig:
    """Test-time box refinement: snap chosen box sides to where the bright returns end.

    Attributes:
        sides: sides that may move (names from :data:`SIDES`).
        factor: a pixel is a return when its locally averaged value exceeds ``factor`` times
            the clutter median around the box.
        smooth_px: side of the box filter applied before thresholding (speckle suppression).
        min_count: a row/column holds returns when at least this many of its pixels do.
        grow_px: how far a side may move outwards (pixels).
        shrink_px: how far a side may move inwards (pixels).
        ring_px: width of the clutter ring measured outside the search window.
        pad_px: added outwards to the returns' extent (pixel-edge offset).
    """

    sides: tuple[str, ...] = ("near", "left", "right")
    factor: float = 3.0
    smooth_px: int = 3
    min_count: int = 2
    grow_px: int = 4
    shrink_px: int = 6
    ring_px: int = 8
    pad_px: float = 0.0

    def __post_init__(self) -> None:
        bad = [s for s in self.sides if s not in SIDES]
        if bad:
            raise ValueError(f"RefineConfig.sides: unknown side(s) {bad}; choices {SIDES}")
        if self.factor <= 0 or self.smooth_px < 1 or self.min_count < 1:
            raise ValueError("RefineConfig: factor must be > 0, smooth_px and min_count >= 1")
        if min(self.grow_px, self.shrink_px, self.ring_px) < 0:
            raise ValueError("RefineConfig: grow_px, shrink_px and ring_px must be >= 0")


def refine_box(image: np.ndarray, box: np.ndarray, cfg: RefineConfig = RefineConfig()
               ) -> np.ndarray:
    """Move the configured sides of one box to where the target's returns end.

    The clutter level is the median of a ring around the search window (the box grown by
    ``grow_px``); the image is box-filtered over ``smooth_px`` pixels and thresholded at
    ``factor`` times that level; each configured side moves to the extent of the rows/columns
    of the search window that hold at least ``min_count`` return pixels inside the box's
    span, limited to ``grow_px`` outwards and ``shrink_px`` inwards. A box without returns
    is returned unchanged.

    Args:
        image: (H, W) uint8 or float.
        box: (4,) xyxy pixel-edge box.
        cfg: refinement settings.

    Returns:
        float32 (4,) refined box.
    """
    img = np.asarray(image, np.float32)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {img.shape}")
    b = np.asarray(box, np.float64).reshape(4)
    h, w = img.shape
    g, ring = cfg.grow_px, cfg.ring_px
    x0, y0 = int(np.floor(b[0])) - g, int(np.floor(b[1])) - g
    x1, y1 = int(np.ceil(b[2])) + g, int(np.ceil(b[3])) + g
    wx0, wy0, wx1, wy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if wx1 - wx0 < 2 or wy1 - wy0 < 2:
        return b.astype(np.float32)
    ox0, oy0 = max(x0 - ring, 0), max(y0 - ring, 0)
    ox1, oy1 = min(x1 + ring, w), min(y1 + ring, h)
    outer = img[oy0:oy1, ox0:ox1]
    keep = np.ones(outer.shape, bool)
    keep[wy0 - oy0:wy1 - oy0, wx0 - ox0:wx1 - ox0] = False
    level = float(np.median(outer[keep])) if keep.any() else float(np.median(img))
    smooth = cv2.blur(img, (cfg.smooth_px, cfg.smooth_px)) if cfg.smooth_px > 1 else img
    hot = smooth[wy0:wy1, wx0:wx1] > cfg.factor * max(level, 1e-6)
    # rows/columns inside the box's current span hold the evidence for the other axis
    cx0, cx1 = int(np.clip(np.floor(b[0]) - wx0, 0, wx1 - wx0)), int(
        np.clip(np.ceil(b[2]) - wx0, 0, wx1 - wx0))
    cy0, cy1 = int(np.clip(np.floor(b[1]) - wy0, 0, wy1 - wy0)), int(
        np.clip(np.ceil(b[3]) - wy0, 0, wy1 - wy0))
    rows = np.nonzero(hot[:, cx0:max(cx1, cx0 + 1)].sum(axis=1) >= cfg.min_count)[0]
    cols = np.nonzero(hot[cy0:max(cy1, cy0 + 1), :].sum(axis=0) >= cfg.min_count)[0]
    if rows.size == 0 or cols.size == 0:
        return b.astype(np.float32)
    found = {"far": wy0 + rows.min() - cfg.pad_px, "near": wy0 + rows.max() + 1 + cfg.pad_px,
             "left": wx0 + cols.min() - cfg.pad_px, "right": wx0 + cols.max() + 1 + cfg.pad_px}
    out = b.copy()
    for side in cfg.sides:
        s = SIDES.index(side)
        c, sign = _COORD[s], _OUTWARD[s]
        move = (found[side] - b[c]) * sign  # > 0 outwards
        out[c] = b[c] + sign * float(np.clip(move, -cfg.shrink_px, g))
    if out[2] - out[0] < 1 or out[3] - out[1] < 1:
        return b.astype(np.float32)
    return out.astype(np.float32)


def refine_boxes(image: np.ndarray, boxes: np.ndarray, cfg: RefineConfig = RefineConfig()
                 ) -> np.ndarray:
    """:func:`refine_box` for every row of a (N, 4) box array; float32 (N, 4)."""
    bx = as_boxes(boxes)
    return np.stack([refine_box(image, b, cfg) for b in bx]) if len(bx) else bx.astype(
        np.float32)


def fit_side_offsets(errors: np.ndarray) -> np.ndarray:
    """Per-side box bias: the median signed outward error of matched boxes.

    Args:
        errors: (M, 4) :func:`edge_errors` of a detector's matched boxes against the
            reference boxes of a calibration set (never the set it is then measured on).

    Returns:
        float64 (4,) offsets in :data:`SIDES` order (0 where ``errors`` is empty).
    """
    e = np.asarray(errors, np.float64).reshape(-1, 4)
    e = e[np.isfinite(e).all(1)]
    return np.median(e, axis=0) if len(e) else np.zeros(4)


def apply_side_offsets(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Move every side inwards by its offset (:func:`fit_side_offsets`; < 0 moves outwards).

    Sides never cross: a box narrower than the correction keeps at least 1 px, centred.

    Returns:
        float32 (N, 4).
    """
    from sar_atd.box_calibration import apply_side_offsets as apply_per_box

    return apply_per_box(as_boxes(boxes), np.asarray(offsets, np.float64).reshape(4))
