"""Classical CFAR baseline: constant-false-alarm-rate pixel test, then clustering into boxes.

Pipeline (all on the 8-bit image, taken as a monotonic rendering of magnitude):

1. **Test statistic.** Around every pixel, a square *training* window of side
   ``train_size`` minus a centred *guard* window of side ``guard_size`` (which keeps the
   target's own pixels out of the clutter estimate) gives the local clutter statistics; the
   *test* cell is the mean over a ``test_size`` window (1 = the pixel itself).

   * ``method="ca"`` (cell-averaging, two-parameter CFAR): ``z = (test - mean) / std`` with
     the training ring's mean and standard deviation, computed in O(1) per pixel from box
     filters (integral images); detection where ``z > k``.
   * ``method="os"`` (order-statistic CFAR): ``z = test / q`` with ``q`` the
     ``os_quantile`` of the training ring (a percentile filter, robust to bright clutter
     and neighbouring targets in the ring); detection where ``z > os_scale``. The percentile
     filter is evaluated on an ``os_stride``-decimated grid and interpolated back (speed).

2. **Clustering.** Detected pixels are grouped by a morphological closing (disc of
   ``closing_size`` px) then 8-connected components; components smaller than ``min_area``
   pixels are dropped. Components whose boxes overlap are merged (union box).

3. **Boxes and scores.** One box per cluster, the tight pixel-edge box of its pixels grown
   by ``box_pad`` pixels on every side and clipped to the image. The score is selected by
   ``score``: ``"sum"`` (sum of the positive excess ``z - threshold`` over the cluster:
   big bright clusters rank first), ``"peak"`` (maximum ``z``) or ``"mean"`` (mean ``z``).

Defaults were tuned on 200 patchworks of the real 17-degree MSTAR dev chips (see
``benchmarks/bench_real_patchworks.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from sar_atd.boxes import clip_boxes, merge_boxes
from sar_atd.detectors.base import Detections, tiles_to_uint8

__all__ = ["CfarConfig", "CfarDetector", "cfar_statistic"]


@dataclass
class CfarConfig:
    """Settings of :class:`CfarDetector` (window sides in pixels, odd).

    Attributes:
        method: ``"ca"`` (cell-averaging two-parameter: mean + k*std) or ``"os"``
            (order statistic: os_scale * quantile).
        train_size: side of the outer training window (px, odd).
        guard_size: side of the guard window excluded from training (px, odd,
            < train_size).
        test_size: side of the test-cell averaging window (px, odd, 1 = single pixel).
        k: CA threshold in standard deviations.
        os_quantile: OS order statistic as a quantile of the training ring, in (0, 1).
        os_scale: OS threshold factor on that quantile.
        os_stride: decimation of the OS percentile filter (1 = exact).
        closing_size: disc diameter of the morphological closing (px, 0 = none).
        min_area: minimum cluster area (px).
        max_area: maximum cluster area (px, 0 = no limit).
        box_pad: pixels added on every side of a cluster's box.
        merge_iou: clusters whose boxes have IoU above this are merged (union box);
            negative disables merging.
        score: ``"sum"``, ``"peak"`` or ``"mean"`` (see module doc).
        power: apply the test to ``image ** power`` (1 = the 8-bit values as amplitude,
            2 = as intensity).
    """

    method: str = "ca"
    train_size: int = 61
    guard_size: int = 41
    test_size: int = 3
    k: float = 1.75
    os_quantile: float = 0.75
    os_scale: float = 2.0
    os_stride: int = 4
    closing_size: int = 5
    min_area: int = 20
    max_area: int = 0
    box_pad: float = 0.0
    merge_iou: float = 0.0
    score: str = "sum"
    power: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in ("ca", "os"):
            raise ValueError(f"CfarConfig.method must be 'ca' or 'os', got {self.method!r}")
        if self.score not in ("sum", "peak", "mean"):
            raise ValueError(f"CfarConfig.score must be 'sum', 'peak' or 'mean', got "
                             f"{self.score!r}")
        for name in ("train_size", "guard_size", "test_size"):
            v = getattr(self, name)
            if v < 1 or v % 2 == 0:
                raise ValueError(f"CfarConfig.{name} must be an odd number >= 1, got {v}")
        if not self.test_size <= self.guard_size < self.train_size:
            raise ValueError("CfarConfig needs test_size <= guard_size < train_size, got "
                             f"{self.test_size}, {self.guard_size}, {self.train_size}")
        if not 0.0 < self.os_quantile < 1.0:
            raise ValueError(f"CfarConfig.os_quantile must be in (0, 1), got "
                             f"{self.os_quantile}")
        if self.os_stride < 1 or self.min_area < 1 or self.closing_size < 0:
            raise ValueError("CfarConfig: os_stride and min_area must be >= 1 and "
                             "closing_size >= 0")
        if self.power <= 0:
            raise ValueError(f"CfarConfig.power must be > 0, got {self.power}")

    @property
    def threshold(self) -> float:
        """The detection threshold on the statistic ``z``."""
        return self.k if self.method == "ca" else self.os_scale


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"CFAR expects a numpy array, got {type(image).__name__}")
    if image.ndim != 2:
        raise ValueError(f"CFAR expects a single-channel (H, W) image, got shape "
                         f"{image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float64)
    if image.dtype in (np.float32, np.float64):
        if not np.all(np.isfinite(image)):
            raise ValueError("CFAR input contains NaN or infinite pixels")
        if np.any(image < 0):
            raise ValueError("CFAR input must be a magnitude image (>= 0)")
        return image.astype(np.float64)
    raise ValueError(f"CFAR expects a uint8 (or float magnitude) image, got dtype "
                     f"{image.dtype}")


def _box_sum(x: np.ndarray, size: int) -> np.ndarray:
    return cv2.boxFilter(x, cv2.CV_64F, (size, size), normalize=False,
                         borderType=cv2.BORDER_REFLECT)


def cfar_statistic(image: np.ndarray, config: CfarConfig) -> np.ndarray:
    """The CFAR statistic ``z`` of every pixel, float64 (H, W).

    Detection is ``z > config.threshold``. See the module doc for the CA and OS forms.
    """
    x = _check_image(image)
    if config.power != 1.0:
        x = x ** config.power
    test = _box_sum(x, config.test_size) / config.test_size ** 2
    if config.method == "ca":
        n_train = config.train_size ** 2 - config.guard_size ** 2
        s1 = _box_sum(x, config.train_size) - _box_sum(x, config.guard_size)
        s2 = _box_sum(x * x, config.train_size) - _box_sum(x * x, config.guard_size)
        mean = s1 / n_train
        var = np.maximum(s2 / n_train - mean * mean, 0.0)
        std = np.sqrt(var)
        floor = max(1e-3, 1e-3 * float(x.max()))
        return (test - mean) / np.maximum(std, floor)
    # order statistic on a decimated grid
    st = config.os_stride
    small = x if st == 1 else cv2.resize(x, (max(1, x.shape[1] // st),
                                            max(1, x.shape[0] // st)),
                                         interpolation=cv2.INTER_AREA)
    t = max(3, int(round(config.train_size / st)) | 1)
    g = min(t - 2, max(1, int(round(config.guard_size / st)) | 1))
    fp = np.ones((t, t), bool)
    c0 = (t - g) // 2
    fp[c0:c0 + g, c0:c0 + g] = False
    q = ndimage.percentile_filter(small, 100 * config.os_quantile, footprint=fp,
                                  mode="reflect")
    if st != 1:
        q = cv2.resize(q, (x.shape[1], x.shape[0]), interpolation=cv2.INTER_LINEAR)
    floor = max(1e-3, 1e-3 * float(x.max()))
    return test / np.maximum(q, floor)


class CfarDetector:
    """CFAR + clustering baseline implementing the :class:`~sar_atd.detectors.Detector`
    protocol.

    Example:
        >>> det = CfarDetector(CfarConfig(k=3.0))
        >>> dets = det.detect(image_u8)  # Detections, boxes float32 (N, 4)
    """

    def __init__(self, config: CfarConfig | None = None, name: str | None = None) -> None:
        self.config = config or CfarConfig()
        self.name = name or f"CFAR-{self.config.method.upper()}"

    def detect(self, image: np.ndarray) -> Detections:
        """Detect bright targets in a uint8 (H, W) image (or float magnitude (H, W)).

        Raises:
            ValueError: wrong type, dtype or ndim, NaN/inf or negative pixels.
        """
        cfg = self.config
        z = cfar_statistic(image, cfg)
        hit: np.ndarray = (z > cfg.threshold).astype(np.uint8)
        if cfg.closing_size > 1:
            ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE,
                                            (cfg.closing_size, cfg.closing_size))
            hit = cv2.morphologyEx(hit, cv2.MORPH_CLOSE, ker)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(hit, connectivity=8)
        if n <= 1:
            return Detections()
        idx = np.arange(1, n)
        area = stats[1:, cv2.CC_STAT_AREA]
        ok = area >= cfg.min_area
        if cfg.max_area > 0:
            ok &= area <= cfg.max_area
        idx = idx[ok]
        if idx.size == 0:
            return Detections()
        excess = np.clip(z - cfg.threshold, 0.0, None)
        if cfg.score == "sum":
            scores = ndimage.sum_labels(excess, labels, idx)
        elif cfg.score == "peak":
            scores = ndimage.maximum(z, labels, idx)
        else:
            scores = ndimage.mean(z, labels, idx)
        st = stats[idx]
        x0 = st[:, cv2.CC_STAT_LEFT].astype(np.float64)
        y0 = st[:, cv2.CC_STAT_TOP].astype(np.float64)
        boxes = np.stack([x0, y0, x0 + st[:, cv2.CC_STAT_WIDTH],
                          y0 + st[:, cv2.CC_STAT_HEIGHT]], 1)
        boxes += np.array([-1, -1, 1, 1]) * cfg.box_pad
        boxes = clip_boxes(boxes, z.shape)
        scores = np.asarray(scores, np.float64)
        if cfg.merge_iou >= 0 and len(boxes) > 1:
            boxes, scores = merge_boxes(boxes, scores, cfg.merge_iou, method="union")
        return Detections(boxes, scores)

    def detect_batch(self, tiles: object) -> list[Detections]:
        """Detect in each tile of a float32 (B, 1, H, W) tensor in 8-bit units (the CFAR
        runs on the host, one tile at a time, on the tile rounded to uint8)."""
        return [self.detect(t) for t in tiles_to_uint8(tiles)]  # type: ignore[arg-type]
