"""Target geometry of one chip, measured the same way on real and simulated targets.

A real MSTAR chip comes with its SARBake mask (0 clutter, 1 target, 2 shadow); a simulated
one is a bank signature with its support (the laid-over visible footprint, the synthetic
counterpart of a SARBake target) and shadow masks, rendered here as a chip: the signature
plus Rayleigh grass clutter at the level measured on real MSTAR data, the clutter in the
shadow scaled down, the sensor function, magnitude. On both, :func:`measure_geometry`
gives the target mask's range and cross-range extent, where the bright returns end
relative to the mask on each side, where the shadow starts relative to the target mask and
how the bright pixels split between the mask and its surroundings.

Geometry (as :mod:`sar_atd_training.quality.boxes`): radar at the bottom, range grows
upwards; **far** = top edge (shadow side), **near** = bottom edge (layover side), **left**
/ **right** = cross-range edges. Offsets are signed outwards: > 0 where the returns reach
beyond the mask on that side, < 0 where they end inside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from sar_atd.boxes import mask_box
from sar_atd.sar.chips import MASK_SHADOW, MASK_TARGET
from sar_atd_training.quality.boxes import shadow_behind_columns

__all__ = ["GEOMETRY_FIELDS", "TargetGeometry", "bright_returns", "measure_geometry",
           "synthetic_chip", "CLUTTER_MEDIAN", "SHADOW_CLUTTER_RATIO"]

CLUTTER_MEDIAN = 0.032
"""Median grass clutter magnitude of a simulated chip, MSTAR magnitude units (the value the
clutter generator calibrates to, measured on the real file ``HB14931.015``)."""

SHADOW_CLUTTER_RATIO = 0.45
"""Median magnitude inside a shadow over that of the surrounding clutter for a simulated
chip: the median over the tuning split of the real 17 deg dev chips (SARBake shadow vs
clutter, 8-bit linear rendering; ``bench_sim_geometry`` prints it). Shadows on MSTAR chips
hold the noise floor plus the target's sidelobes, not zero."""

GEOMETRY_FIELDS = ("length_px", "width_px", "far", "near", "left", "right", "shadow_gap_px",
                   "bright_inside", "fill", "shadow_head")
"""Names of :meth:`TargetGeometry.as_row` in order."""

_NEAR = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)


@dataclass(frozen=True)
class TargetGeometry:
    """Geometry of one target against its mask (pixels unless stated).

    Attributes:
        length_px: range extent of the target mask (rows).
        width_px: cross-range extent of the target mask (columns).
        offsets: float64 (4,) far, near, left, right: where the bright returns end minus
            where the mask ends, signed outwards (> 0: returns reach beyond the mask).
        shadow_gap_px: median over the target's columns of (far edge of the target in that
            column) minus (near edge of the shadow behind it): 0 when the shadow starts right
            behind the target, > 0 when a gap of non-shadow, non-target pixels separates
            them; NaN without shadow behind the target.
        bright_inside: share of the bright returns (see :func:`bright_returns`) that lie
            inside the target mask.
        fill: share of the target mask's pixels that are bright.
        shadow_head: median magnitude of the first :data:`SHADOW_HEAD_PX` shadow pixels
            behind the target (per column, then over columns) over the clutter median: how
            dark the shadow is where it meets the target (1: as bright as the clutter); NaN
            without shadow behind the target.
    """

    length_px: float
    width_px: float
    offsets: np.ndarray
    shadow_gap_px: float
    bright_inside: float
    fill: float
    shadow_head: float = float("nan")

    def as_row(self) -> np.ndarray:
        """float64 (10,) in :data:`GEOMETRY_FIELDS` order."""
        return np.array([self.length_px, self.width_px, *self.offsets, self.shadow_gap_px,
                         self.bright_inside, self.fill, self.shadow_head], np.float64)


def bright_returns(image: np.ndarray, mask: np.ndarray, factor: float = 3.0,
                   near_px: int = 4) -> np.ndarray:
    """Bright pixels belonging to the target: bool (H, W).

    A pixel is bright when it exceeds ``factor`` times the median of the clutter (mask
    value 0). The target's bright returns are the connected bright regions (4-connected)
    that touch the target mask, kept within ``near_px`` pixels of it: returns spilling
    beyond the mask count, isolated clutter speckle does not.
    """
    img = np.asarray(image, np.float64)
    m = np.asarray(mask)
    if img.shape != m.shape or img.ndim != 2:
        raise ValueError(f"image {img.shape} and mask {m.shape} must be the same 2-D shape")
    if factor <= 0 or near_px < 0:
        raise ValueError(f"factor must be > 0 and near_px >= 0, got {factor}, {near_px}")
    target = m == MASK_TARGET
    clutter = img[m == 0]
    level = float(np.median(clutter)) if clutter.size else float(np.median(img))
    near = ndimage.binary_dilation(target, _NEAR, iterations=near_px) if near_px else target
    bright = (img > factor * level) & near
    lab, n = ndimage.label(bright, _NEAR)
    if n == 0:
        return bright
    keep = np.zeros(n + 1, bool)
    keep[np.unique(lab[bright & target])] = True
    keep[0] = False
    return keep[lab]


SHADOW_HEAD_PX = 3
"""Shadow pixels per column, nearest the target, that :attr:`TargetGeometry.shadow_head`
averages."""


def _shadow_start(img: np.ndarray, mask: np.ndarray, level: float) -> tuple[float, float]:
    """(median gap in px between target and shadow, median shadow-head level / clutter)."""
    gaps, heads = [], []
    for col, far, rows in shadow_behind_columns(mask):
        gaps.append(far - (rows.max() + 1))
        heads.append(float(np.mean(img[rows[-SHADOW_HEAD_PX:], col])))
    if not gaps:
        return float("nan"), float("nan")
    return float(np.median(gaps)), float(np.median(heads)) / level if level > 0 else np.nan


def measure_geometry(image: np.ndarray, mask: np.ndarray, factor: float = 3.0,
                     near_px: int = 4) -> TargetGeometry | None:
    """Measure one target (see :class:`TargetGeometry`).

    Args:
        image: (H, W) any monotonic rendering of magnitude (8-bit or float).
        mask: uint8 (H, W) SARBake-style mask (0 clutter, 1 target, 2 shadow).
        factor: bright threshold as a multiple of the clutter median.
        near_px: how far beyond the mask returns still count.

    Returns:
        The geometry, or None when the mask holds no target or no bright return.
    """
    m = np.asarray(mask)
    target = m == MASK_TARGET
    if not target.any():
        return None
    bright = bright_returns(image, m, factor, near_px)
    if not bright.any():
        return None
    mb = mask_box(target, 1).astype(np.float64)
    rb = mask_box(bright, 1).astype(np.float64)
    # outward-signed side offsets: far (y0), near (y1), left (x0), right (x1)
    offsets = np.array([mb[1] - rb[1], rb[3] - mb[3], mb[0] - rb[0], rb[2] - mb[2]])
    img = np.asarray(image, np.float64)
    clutter = img[m == 0]
    gap, head = _shadow_start(img, m, float(np.median(clutter)) if clutter.size else 0.0)
    return TargetGeometry(length_px=float(mb[3] - mb[1]), width_px=float(mb[2] - mb[0]),
                          offsets=offsets, shadow_gap_px=gap,
                          bright_inside=float((bright & target).sum() / bright.sum()),
                          fill=float((bright & target).sum() / target.sum()),
                          shadow_head=head)


def synthetic_chip(signature: np.ndarray, support: np.ndarray, shadow: np.ndarray,
                   rng: np.random.Generator, clutter_median: float = CLUTTER_MEDIAN,
                   shadow_ratio: float = SHADOW_CLUTTER_RATIO) -> tuple[np.ndarray, np.ndarray]:
    """Render a bank triple as a chip in grass clutter, with its SARBake-style mask.

    Args:
        signature: complex (H, W) ideal full-band target signature (MSTAR magnitude units).
        support: bool (H, W) laid-over visible footprint (the target mask).
        shadow: bool (H, W) ground shadow.
        rng: generator of the clutter speckle.
        clutter_median: median clutter magnitude after the sensor function.
        shadow_ratio: clutter magnitude inside the shadow relative to outside.

    Returns:
        (magnitude float32 (H, W) after the sensor function, mask uint8 (H, W) with 1 where
        ``support``, else 2 where ``shadow``, else 0).
    """
    from sar_atd.sar.sensor import apply_sensor_function

    sig = np.asarray(signature, np.complex64)
    sup, sh = np.asarray(support, bool), np.asarray(shadow, bool)
    if not (sig.shape == sup.shape == sh.shape) or sig.ndim != 2:
        raise ValueError(f"signature {sig.shape}, support {sup.shape} and shadow {sh.shape} "
                         "must be the same 2-D shape")
    noise = (rng.standard_normal(sig.shape) + 1j * rng.standard_normal(sig.shape))
    blurred = np.abs(apply_sensor_function(noise.astype(np.complex64)))
    noise *= clutter_median / float(np.median(blurred))
    noise[sh & ~sup] *= shadow_ratio
    img = np.abs(apply_sensor_function((sig + noise).astype(np.complex64)))
    m = np.zeros(sig.shape, np.uint8)
    m[sh] = MASK_SHADOW
    m[sup] = MASK_TARGET
    return img.astype(np.float32), m
