"""Real targets cut out of real chips (paper II.C.1) and pasted into background amplitude.

A chip's 8-bit rendering is brought back to amplitude by the inverse of its LUT
(:func:`sar_atd.sar.lut.inverse_quarter_power_lut` generalised to an amplitude exponent
``gamma``: 8-bit value ~ amplitude**gamma; the MSTAR JPEG chips are a linear magnitude
rendering, ``gamma = 1``). The segmenter's label map gives the target and its shadow; the
largest target component is kept, with the shadow components near it.

Pasting works on amplitude (the chips hold no phase): the cut-out is scaled so that the chip's
own clutter level (median amplitude of the pixels labelled clutter) equals the background's
median amplitude around the paste position, which keeps the measured target-to-clutter and
shadow-to-clutter contrasts; target and shadow pixels then replace the background with a
one-pixel feathered edge (alpha from a 3x3 box blur of the mask), so no hard seam is left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from sar_atd.sar.lut import inverse_quarter_power_lut


@dataclass
class RealCutout:
    """A real target and its shadow, cut from one chip.

    Attributes:
        name: source chip ``"<CLASS>/<stem>"``.
        class_name: vehicle class.
        amplitude: float32 (h, w) chip amplitude (inverse LUT, arbitrary gain).
        target: bool (h, w) predicted target pixels (largest component).
        shadow: bool (h, w) predicted shadow pixels near the target.
        clutter_median: median amplitude of the chip's clutter pixels.
        sarbake_box: float32 (4,) tight box of the SARBake target mask in chip pixels, or
            None without a mask.
    """

    name: str
    class_name: str
    amplitude: np.ndarray
    target: np.ndarray
    shadow: np.ndarray
    clutter_median: float
    sarbake_box: np.ndarray | None = None

    @property
    def support_box(self) -> np.ndarray:
        """int64 (4,) box of target | shadow pixels in chip coordinates (what is pasted)."""
        return mask_box_xyxy(self.target | self.shadow)

    @property
    def target_box(self) -> np.ndarray:
        return mask_box_xyxy(self.target)


def mask_box_xyxy(mask: np.ndarray) -> np.ndarray:
    """Tight box float32 [x0, y0, x1, y1] (pixel edges) of a non-empty boolean mask."""
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    if rows.size == 0:
        raise ValueError("empty mask has no box")
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


def chip_amplitude(chip_u8: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """Amplitude float32 (H, W) of an 8-bit chip rendered as ``255 * (amp / ref)**gamma``
    (``ref`` = 1): the inverse LUT; ``gamma = 0.5`` is the quarter-power LUT's inverse."""
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    sq = inverse_quarter_power_lut(np.asarray(chip_u8, np.uint8))  # (v / 255) ** 2
    return np.power(sq, 0.5 / gamma, dtype=np.float32)


def clean_labels(labels: np.ndarray, shadow_gap_px: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """(target, shadow) bool masks: the largest target component (holes filled, 1-px
    closing) and the shadow components within ``shadow_gap_px`` of it."""
    tgt = ndimage.binary_closing(labels == 1, iterations=1) | (labels == 1)
    lab, n = ndimage.label(tgt)
    if n == 0:
        return np.zeros(labels.shape, bool), np.zeros(labels.shape, bool)
    sizes = ndimage.sum(tgt, lab, range(1, n + 1))
    tgt = ndimage.binary_fill_holes(lab == 1 + int(np.argmax(sizes)))
    near = ndimage.binary_dilation(tgt, iterations=shadow_gap_px)
    sh = (labels == 2) & ~tgt
    lab, n = ndimage.label(sh)
    keep = np.unique(lab[near & sh])
    shadow = np.isin(lab, keep[keep > 0])
    return tgt, shadow


def make_cutout(name: str, class_name: str, chip_u8: np.ndarray, labels: np.ndarray,
                sarbake: np.ndarray | None = None, gamma: float = 1.0) -> RealCutout | None:
    """Cut-out of one chip from its predicted label map; None when no target was found."""
    target, shadow = clean_labels(labels)
    if not target.any():
        return None
    amp = chip_amplitude(chip_u8, gamma)
    clutter = amp[(labels == 0)]
    med = float(np.median(clutter)) if clutter.size else float(np.median(amp))
    sb = None
    if sarbake is not None and (sarbake == 1).any():
        sb = mask_box_xyxy(sarbake == 1)
    return RealCutout(name, class_name, amp, target, shadow, max(med, 1e-6), sb)


def paste_cutout(canvas: np.ndarray, cut: RealCutout, row: int, col: int) -> None:
    """Paste ``cut`` into amplitude ``canvas`` (H, W) float32 in place, chip top-left at
    (row, col); the chip must lie inside the canvas."""
    h, w = cut.amplitude.shape
    win = canvas[row:row + h, col:col + w]
    if win.shape != (h, w):
        raise ValueError(f"chip {cut.name} at ({row}, {col}) leaves the canvas "
                         f"{canvas.shape}")
    mask = cut.target | cut.shadow
    ring = ndimage.binary_dilation(mask, iterations=8) & ~mask
    bg_med = float(np.median(win[ring])) if ring.any() else float(np.median(win))
    scaled = cut.amplitude * (bg_med / cut.clutter_median)
    alpha = ndimage.uniform_filter(mask.astype(np.float32), 3)
    alpha[cut.target] = 1.0
    win[...] = alpha * scaled + (1.0 - alpha) * win
