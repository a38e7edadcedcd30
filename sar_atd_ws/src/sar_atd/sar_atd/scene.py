"""Scene detector: tiler -> batched inference -> boxes in scene coordinates -> cross-seam merge.

The one path from a SAR scene of any size to detections, shared by ``sar-atd detect``,
``sar-atd eval --tile`` and the ROS 2 detector node.

Input geometry: the detector works at its training pixel spacing with the radar
at the bottom of the image (MSTAR convention; :class:`~sar_atd.models.metadata.ModelInfo`).
A scene given with another ``pixel_spacing_m`` is resampled (8-bit rendering, area
averaging when shrinking, bilinear when enlarging) and one with the radar on another side
is rotated by a multiple of 90 degrees; boxes are mapped back to the scene as given.
Spacings within 5 % of the model's are used as they are; resampling factors outside
[1/8, 8] are refused.

Cross-seam merge: neighbouring tiles overlap (``TilerConfig.overlap``, larger than a target
plus its shadow), so every target lies whole in at least one tile; a target cut by a seam
is also seen truncated by its neighbour. Boxes of *different* tiles whose overlap metric
(IoU, or intersection over the smaller box, which is ~1 for a truncated box inside the full
one) exceeds ``match_threshold`` are one target. ``merge = "nms"`` keeps one box per
cluster, preferring a box not touching a tile edge inside the scene, then the highest
score; ``"merge"`` reports the cluster's enclosing box. The cluster's score is its highest.
Boxes of the same tile are never merged (the model's own NMS already ran there), so a
scene smaller than a tile gives exactly the model's detections.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from sar_atd.boxes import box_iou
from sar_atd.config import SceneDetectorConfig, TilerConfig
from sar_atd.detectors.base import Detections, Detector, detect_tiles
from sar_atd.tiling import (
    PreparedScene,
    SceneInputError,
    TileBatch,
    Tiler,
    config_with_render_record,
)

__all__ = ["SceneDetector", "SceneDetectorConfig", "SceneDetections", "merge_across_tiles",
           "box_ios", "ORIENTATIONS", "GeometryError"]

ORIENTATIONS = ("bottom", "left", "top", "right")
"""Side of the image the radar is on; index = counter-clockwise quarter turns that bring it
to the bottom (the model convention)."""

SPACING_TOLERANCE = 0.05
MAX_RESAMPLE = 8.0


class GeometryError(SceneInputError):
    """A scene's pixel spacing or orientation cannot be brought to the model's."""


@dataclass
class SceneDetections:
    """Detections in one scene, in the scene's own pixel coordinates.

    Attributes:
        boxes: float32 (N, 4) xyxy pixel-edge boxes in the scene as given.
        scores: float32 (N,) by decreasing score.
        tile_index: int32 (N,) tile (in :func:`sar_atd.tiling.tile_grid` order) that
            produced each kept box.
        n_nonfinite: NaN/inf scene pixels set to 0 by the tiler.
        n_tiles: tiles the scene was cut into.
        n_raw: boxes before the cross-seam merge.
        scene_hw: (H, W) of the scene as given.
    """

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    tile_index: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))
    n_nonfinite: int = 0
    n_tiles: int = 0
    n_raw: int = 0
    scene_hw: tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        return len(self.scores)

    def to_detections(self) -> Detections:
        """The boxes and scores as plain :class:`Detections` (for the metrics)."""
        return Detections(self.boxes, self.scores)


def box_ios(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over the smaller box's area, float64 (N, M); 0 for empty boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2])
                 - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3])
                 - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    small = np.minimum(area_a[:, None], area_b[None, :])
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(small > 0, iw * ih / np.where(small > 0, small, 1.0), 0.0)
    return out


def merge_across_tiles(boxes: np.ndarray, scores: np.ndarray, tile_index: np.ndarray,
                       truncated: np.ndarray, cfg: SceneDetectorConfig
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cross-seam merge (module doc): one box per target seen by several tiles.

    Args:
        boxes: float32 (N, 4) scene boxes.
        scores: float32 (N,).
        tile_index: int (N,) tile of each box.
        truncated: bool (N,) box touches a tile edge inside the scene.
        cfg: merge method, match metric and threshold.

    Returns:
        (boxes float32 (K, 4), scores float32 (K,), tile_index int32 (K,)), by decreasing
        score.
    """
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    s = np.asarray(scores, np.float32).reshape(-1)
    t = np.asarray(tile_index).reshape(-1)
    tr = np.asarray(truncated, bool).reshape(-1)
    if len(b) == 0:
        return b, s, t.astype(np.int32)
    sim = box_iou(b, b) if cfg.match == "iou" else box_ios(b, b)
    linked = (sim > cfg.match_threshold) & (t[:, None] != t[None, :])
    order = np.lexsort((-s.astype(np.float64), tr))  # whole boxes first, then by score
    done = np.zeros(len(b), bool)
    out_b, out_s, out_t = [], [], []
    for i in order:
        if done[i]:
            continue
        members = np.nonzero(~done & linked[i])[0]
        members = np.union1d(members, [i])
        done[members] = True
        if cfg.merge == "merge":
            mb = b[members]
            out_b.append([mb[:, 0].min(), mb[:, 1].min(), mb[:, 2].max(), mb[:, 3].max()])
        else:
            out_b.append(b[i])
        out_s.append(s[members].max())
        out_t.append(t[i])
    ob = np.asarray(out_b, np.float32).reshape(-1, 4)
    os_ = np.asarray(out_s, np.float32)
    ot = np.asarray(out_t, np.int32)
    o = np.argsort(-os_, kind="stable")
    return ob[o], os_[o], ot[o]


def _rot_boxes_ccw(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    """Boxes of an (h, w) image -> boxes of the image turned 90 degrees counter-clockwise
    (``np.rot90``/``torch.rot90`` with k=1: pixel (x, y) -> (y, w - x))."""
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    return np.stack([y0, w - x1, y1, w - x0], axis=1)


def rotate_boxes(boxes: np.ndarray, k: int, h: int, w: int) -> np.ndarray:
    """Boxes of an (h, w) image -> boxes of ``rot90(image, k)`` (counter-clockwise)."""
    out = np.asarray(boxes, np.float32).reshape(-1, 4)
    for _ in range(k % 4):
        out = _rot_boxes_ccw(out, h, w)
        h, w = w, h
    return out.astype(np.float32)


class SceneDetector:
    """Scene of any size -> detections in scene coordinates (module doc).

    Args:
        detector: any :class:`~sar_atd.detectors.base.Detector` (batched tensor entry
            ``detect_batch`` used when present).
        tiler_cfg: tiling/rendering settings.
        cfg: merge settings and the reporting score threshold.
        model_info: the detector's training geometry and operating threshold (default:
            read from ``detector.model_info``, else MSTAR geometry).
    """

    def __init__(self, detector: Detector, tiler_cfg: TilerConfig | None = None,
                 cfg: SceneDetectorConfig | None = None, model_info: object | None = None
                 ) -> None:
        from sar_atd.models.metadata import model_info_of

        self.detector = detector
        self.cfg = cfg or SceneDetectorConfig()
        self.info = model_info if model_info is not None else model_info_of(detector)
        tiler_cfg = tiler_cfg or TilerConfig()
        carried = model_info if model_info is not None else getattr(detector, "model_info",
                                                                     None)
        # CFAR carries no rendering: the config fields stay
        tiler_cfg = config_with_render_record(tiler_cfg, getattr(carried, "render", None))
        self.tiler = Tiler(tiler_cfg)

    @property
    def score_threshold(self) -> float:
        """Reporting threshold: the configured one, or the model's operating threshold."""
        if self.cfg.score_threshold >= 0:
            return float(self.cfg.score_threshold)
        op = getattr(self.info, "operating_threshold", None)
        return float(op) if op is not None and math.isfinite(op) else 0.0

    # ---- geometry -------------------------------------------------------------------
    def _geometry(self, prepared: PreparedScene, pixel_spacing_m: Sequence[float] | None,
                  orientation: str | None) -> tuple[PreparedScene, int, tuple[float, float]]:
        """Rotate/resample the rendered scene to the model's convention.

        Returns:
            (scene in model geometry, quarter turns applied, (sy, sx) scale factors model
            pixels per rotated-scene pixel).
        """
        k = 0
        if orientation is not None:
            if orientation not in ORIENTATIONS:
                raise GeometryError(f"unknown scene orientation {orientation!r}: the radar "
                                    f"side must be one of {list(ORIENTATIONS)}")
            model_side = getattr(self.info, "orientation", "bottom")
            k = (ORIENTATIONS.index(orientation) - ORIENTATIONS.index(model_side)) % 4
        img = prepared.image
        if k:
            img = torch.rot90(img, k, dims=(0, 1)).contiguous()
        scale = (1.0, 1.0)
        if pixel_spacing_m is not None:
            sp = [float(v) for v in pixel_spacing_m]
            if len(sp) != 2 or not all(math.isfinite(v) and v > 0 for v in sp):
                raise GeometryError(f"pixel_spacing_m must be two positive numbers (row, "
                                    f"column metres), got {pixel_spacing_m!r}")
            if k % 2:
                sp = sp[::-1]
            model_sp = getattr(self.info, "pixel_spacing_m", (0.2021, 0.2031))
            factors = [sp[0] / model_sp[0], sp[1] / model_sp[1]]
            if not all(1 / MAX_RESAMPLE <= f <= MAX_RESAMPLE for f in factors):
                raise GeometryError(
                    f"scene pixel spacing {tuple(pixel_spacing_m)} m is too far from the "
                    f"model's {tuple(model_sp)} m (resampling factor {factors[0]:.3g} x "
                    f"{factors[1]:.3g}, allowed {1 / MAX_RESAMPLE:.3g}-{MAX_RESAMPLE:g})")
            if any(abs(f - 1) > SPACING_TOLERANCE for f in factors):
                h, w = img.shape
                nh, nw = max(1, round(h * factors[0])), max(1, round(w * factors[1]))
                if min(nh, nw) < 8:
                    raise GeometryError(f"scene of {h}x{w} px at {tuple(pixel_spacing_m)} m "
                                        f"is only {nh}x{nw} px at the model's spacing")
                mode = "area" if nh * nw < h * w else "bilinear"
                x = img[None, None].to(torch.float32)
                kw = {} if mode == "area" else {"align_corners": False}
                x = F.interpolate(x, size=(nh, nw), mode=mode, **kw)
                img = x[0, 0].round().clamp(0, 255).to(torch.uint8)
                scale = (nh / h, nw / w)
        return PreparedScene(img, prepared.n_nonfinite, prepared.source_dtype), k, scale

    # ---- detection ------------------------------------------------------------------
    @torch.inference_mode()
    def detect(self, scene: np.ndarray | torch.Tensor,
               pixel_spacing_m: Sequence[float] | None = None,
               orientation: str | None = None) -> SceneDetections:
        """Detect targets in a scene (uint8/uint16/float/complex (H, W), numpy or torch).

        Args:
            scene: the scene; rendering rule in :class:`~sar_atd.config.TilerConfig`.
            pixel_spacing_m: (row, column) pixel spacing in metres, or None for the
                model's own spacing.
            orientation: side of the image the radar is on (:data:`ORIENTATIONS`), or
                None for the model's convention.

        Raises:
            SceneInputError: a malformed scene; GeometryError: geometry out of reach.
        """
        prepared = self.tiler.prepare(scene)
        model_scene, k, scale = self._geometry(prepared, pixel_spacing_m, orientation)
        return self.to_scene_frame(self.detect_batches(self.tiler.batches(model_scene)),
                                   prepared, k, scale)

    def to_scene_frame(self, out: SceneDetections, prepared: PreparedScene, k: int,
                       scale: tuple[float, float]) -> SceneDetections:
        """Detections made in the model's geometry (``_geometry``: ``k`` quarter turns,
        ``scale`` (sy, sx)) brought back to the pixels of the scene ``prepared``."""
        h, w = prepared.hw
        sy, sx = scale
        boxes = out.boxes.copy()
        if (sy, sx) != (1.0, 1.0):
            boxes[:, 0::2] /= sx
            boxes[:, 1::2] /= sy
        if k:
            rh, rw = (w, h) if k % 2 else (h, w)  # rotated scene size before resampling
            boxes = rotate_boxes(boxes, (4 - k) % 4, rh, rw)
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, w)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, h)
        out.boxes = boxes.astype(np.float32)
        out.scene_hw = (h, w)
        out.n_nonfinite = prepared.n_nonfinite
        return out

    @torch.inference_mode()
    def detect_batches(self, batches: Iterable[TileBatch]) -> SceneDetections:
        """Detections of one scene from its tile batches (tiles produced elsewhere).

        Boxes are shifted by each tile's offset, clipped to the tile, flagged when they
        touch a tile edge inside the scene, merged across seams, then filtered by the
        reporting score threshold.
        """
        all_b, all_s, all_t, all_tr = [], [], [], []
        scene_hw, n_tiles, n_bad = (0, 0), 0, 0
        margin = self.cfg.edge_margin_px
        for batch in batches:
            scene_hw, n_tiles, n_bad = batch.scene_hw, batch.n_tiles, batch.n_nonfinite
            th, tw = int(batch.tiles.shape[2]), int(batch.tiles.shape[3])
            dets = detect_tiles(self.detector, batch.tiles)
            tile_index = np.asarray(batch.tile_index)
            for det, (x0, y0), ti in zip(dets, batch.offsets, tile_index, strict=True):
                if not len(det):
                    continue
                b = det.boxes.astype(np.float32).copy()
                b[:, 0::2] = np.clip(b[:, 0::2], 0, tw) + x0
                b[:, 1::2] = np.clip(b[:, 1::2], 0, th) + y0
                H, W = scene_hw
                tr = np.zeros(len(b), bool)
                if x0 > 0:
                    tr |= b[:, 0] <= x0 + margin
                if y0 > 0:
                    tr |= b[:, 1] <= y0 + margin
                if x0 + tw < W:
                    tr |= b[:, 2] >= x0 + tw - margin
                if y0 + th < H:
                    tr |= b[:, 3] >= y0 + th - margin
                all_b.append(b)
                all_s.append(det.scores.astype(np.float32))
                all_t.append(np.full(len(b), ti, np.int64))
                all_tr.append(tr)
        if not all_b:
            return SceneDetections(n_nonfinite=n_bad, n_tiles=n_tiles, scene_hw=scene_hw)
        b, s = np.concatenate(all_b), np.concatenate(all_s)
        t, tr = np.concatenate(all_t), np.concatenate(all_tr)
        n_raw = len(b)
        mb, ms, mt = merge_across_tiles(b, s, t, tr, self.cfg)
        keep = ms >= self.score_threshold
        return SceneDetections(mb[keep], ms[keep], mt[keep], n_bad, n_tiles, n_raw, scene_hw)
