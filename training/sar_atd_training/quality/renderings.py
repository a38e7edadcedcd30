"""Re-renderings of 8-bit SAR images, to measure how much a detector depends on the rendering.

The real dev chips are a linear, contrast-enhanced 8-bit rendering of magnitude. Here the
8-bit value is taken as linear magnitude (:func:`to_amplitude`; up to an unknown gain, and
saturated/clipped pixels stay saturated/clipped: the 8-bit file holds no more), and that
amplitude is rendered again in the ways real archives do:

* ``linear``: linear magnitude, white point at the image maximum (for the dev chips, whose
  brightest pixels sit at 255, this reproduces the delivered image);
* ``quarter_power``: the paper's quarter-power LUT (``|s|^(1/2)``), white point at the maximum;
* ``gamma_G``: power law ``|s|^G`` (G = 0.5 is the quarter-power LUT, 1 linear), white at max;
* ``hist_eq``: global histogram equalisation;
* ``stretch_LO_HI``: contrast stretch with clipping: the ``LO`` quantile maps to 0, the ``HI``
  quantile to 255 (``stretch_2_90``: bright speckle and saturated targets);
* ``uint16_fixed35``: a 16-bit linear-magnitude image (the 8-bit amplitude times 257, no
  added information) converted back to 8 bits by a fixed rule: the quarter-power LUT with
  the image's median amplitude at level ``UINT16_MEDIAN_LEVEL``;
* ``uint16`` (in :data:`MODEL_RENDERINGS`: depends on the detector): the same 16-bit image
  rendered the way the runtime renders it for that detector (:func:`render_like_runtime`:
  the tiler with the model's recorded rendering, ``ModelInfo.render``).

Every function is pure: uint8 (H, W) in, uint8 (H, W) out, the input untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from sar_atd.sar.lut import histogram_match_lut, power_law_render

__all__ = ["to_amplitude", "render_power", "render_linear", "render_quarter_power",
           "equalize_histogram", "contrast_stretch", "to_uint16", "uint16_to_8bit",
           "UINT16_MEDIAN_LEVEL", "RENDERINGS", "MODEL_RENDERINGS", "rendering",
           "render_like_runtime", "reference_quantiles", "match_histogram"]

UINT16_MEDIAN_LEVEL = 35.0
"""8-bit level of the median amplitude when a 16-bit image is brought to 8 bits (inside the
training randomisation's 12-58 range for the median)."""


def _check_u8(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 2 or img.dtype != np.uint8 or img.size == 0:
        raise ValueError(f"expected a non-empty uint8 (H, W) image, got {img.dtype} "
                         f"{img.shape}")
    return img


def to_amplitude(image: np.ndarray) -> np.ndarray:
    """Linear magnitude (float32 (H, W), arbitrary gain) of a linear 8-bit rendering."""
    return _check_u8(image).astype(np.float32)


def render_power(image: np.ndarray, gamma: float) -> np.ndarray:
    """Power-law rendering ``255 * (a / max a) ** gamma`` of the image's amplitude.

    Args:
        image: uint8 (H, W), linear magnitude.
        gamma: amplitude exponent (> 0); 0.5 = quarter-power LUT, 1 = linear.

    Returns:
        uint8 (H, W). An all-zero image stays all zero.
    """
    if not np.isfinite(gamma) or gamma <= 0:
        raise ValueError(f"gamma must be finite and > 0, got {gamma}")
    amp = to_amplitude(image)
    top = float(amp.max())
    if top <= 0:
        return np.zeros_like(image)
    return power_law_render(amp, gamma=gamma, ref=top ** gamma)


def render_linear(image: np.ndarray) -> np.ndarray:
    """Linear magnitude with the white point at the maximum (:func:`render_power`, 1)."""
    return render_power(image, 1.0)


def render_quarter_power(image: np.ndarray) -> np.ndarray:
    """The quarter-power LUT with the white point at the maximum (:func:`render_power`, 0.5)."""
    return render_power(image, 0.5)


def equalize_histogram(image: np.ndarray) -> np.ndarray:
    """Global histogram equalisation: ``255 * (cdf(v) - cdf_min) / (n - cdf_min)``.

    Same rule as OpenCV's ``equalizeHist``; a constant image is returned unchanged.
    """
    img = _check_u8(image)
    hist = np.bincount(img.ravel(), minlength=256)
    cdf = np.cumsum(hist)
    cdf_min = int(cdf[hist > 0][0])
    if cdf_min == img.size:
        return img.copy()
    lut = np.clip(np.round((cdf - cdf_min) * 255.0 / (img.size - cdf_min)), 0, 255)
    return lut.astype(np.uint8)[img]


def contrast_stretch(image: np.ndarray, low_q: float = 0.02, high_q: float = 0.90
                     ) -> np.ndarray:
    """Linear contrast stretch with clipping between two quantiles of the image.

    The ``low_q`` quantile maps to 0 and the ``high_q`` quantile to 255; everything beyond
    clips. ``high_q = 0.90`` saturates most target pixels and renders clutter speckle bright.

    Raises:
        ValueError: quantiles outside [0, 1] or ``low_q >= high_q``.
    """
    img = _check_u8(image)
    if not 0.0 <= low_q < high_q <= 1.0:
        raise ValueError(f"need 0 <= low_q < high_q <= 1, got {low_q}, {high_q}")
    lo, hi = np.quantile(img, [low_q, high_q])
    if hi <= lo:
        return img.copy()
    v = (img.astype(np.float64) - lo) * 255.0 / (hi - lo)
    return np.clip(np.round(v), 0, 255).astype(np.uint8)


def to_uint16(image: np.ndarray) -> np.ndarray:
    """16-bit linear magnitude of a linear 8-bit image: ``v * 257`` (0 -> 0, 255 -> 65535)."""
    return _check_u8(image).astype(np.uint16) * np.uint16(257)


def uint16_to_8bit(image16: np.ndarray, median_level: float = UINT16_MEDIAN_LEVEL
                   ) -> np.ndarray:
    """8-bit image of a 16-bit linear magnitude: quarter-power LUT, median at ``median_level``.

    A 16-bit archive carries no display gain; anchoring the median amplitude (mostly
    clutter) at a fixed 8-bit level is the rule the training randomisation covers.

    Raises:
        ValueError: not a uint16 (H, W) image, or ``median_level`` outside (0, 255).
    """
    img = np.asarray(image16)
    if img.ndim != 2 or img.dtype != np.uint16 or img.size == 0:
        raise ValueError(f"expected a non-empty uint16 (H, W) image, got {img.dtype} "
                         f"{img.shape}")
    if not 0.0 < median_level < 255.0:
        raise ValueError(f"median_level must be in (0, 255), got {median_level}")
    med = float(np.median(img))
    if med <= 0:
        med = float(img.max()) or 1.0
    ref = np.sqrt(med) * 255.0 / median_level
    return power_law_render(img.astype(np.float32), gamma=0.5, ref=ref)


def _uint16_roundtrip(image: np.ndarray) -> np.ndarray:
    return uint16_to_8bit(to_uint16(image))


def render_like_runtime(scene: np.ndarray, render: Mapping[str, Any] | None) -> np.ndarray:
    """The 8-bit image the runtime tiler makes of ``scene`` for a model recording ``render``.

    Same code path as :class:`sar_atd.scene.SceneDetector` with the default
    :class:`~sar_atd.config.TilerConfig` (``render: model``): the record's fields replace
    the tiler's LUT fields (:func:`sar_atd.tiling.config_with_render_record`), then
    :meth:`sar_atd.tiling.Tiler.prepare` renders the scene on the CPU.

    Args:
        scene: (H, W) uint8, uint16, float or complex scene.
        render: ``ModelInfo.render`` of the model, or None (a detector recording none,
            e.g. CFAR: the tiler's defaults).

    Returns:
        uint8 (H, W).
    """
    from sar_atd.config import TilerConfig
    from sar_atd.tiling import Tiler, config_with_render_record

    cfg = config_with_render_record(TilerConfig(device="cpu"), render)
    return Tiler(cfg).prepare(np.asarray(scene)).image.numpy()


RENDERINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "as_delivered": lambda im: _check_u8(im).copy(),
    "linear": render_linear,
    "quarter_power": render_quarter_power,
    "gamma_0.75": lambda im: render_power(im, 0.75),
    "gamma_1.5": lambda im: render_power(im, 1.5),
    "gamma_2.0": lambda im: render_power(im, 2.0),
    "hist_eq": equalize_histogram,
    "stretch_1_99": lambda im: contrast_stretch(im, 0.01, 0.99),
    "stretch_2_90": lambda im: contrast_stretch(im, 0.02, 0.90),
    "uint16_fixed35": _uint16_roundtrip,
}
"""Named renderings used by ``benchmarks.bench_rendering`` (uint8 (H, W) -> uint8 (H, W))."""

MODEL_RENDERINGS: dict[str, Callable[[np.ndarray, Mapping[str, Any] | None], np.ndarray]] = {
    "uint16": lambda im, render: render_like_runtime(to_uint16(im), render),
}
"""Renderings that depend on the detector's recorded rendering (``ModelInfo.render``):
``f(uint8 (H, W), render) -> uint8 (H, W)``."""


def rendering(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The rendering called ``name`` (see :data:`RENDERINGS`).

    Raises:
        ValueError: an unknown name (the message lists the choices).
    """
    if name not in RENDERINGS:
        raise ValueError(f"unknown rendering {name!r}; choices: {sorted(RENDERINGS)}")
    return RENDERINGS[name]


def reference_quantiles(images: list[np.ndarray], n_levels: int = 1024) -> np.ndarray:
    """Quantiles of the pooled pixels of reference images: float64 (n_levels,) at the
    probabilities ``(k + 0.5) / n_levels`` (the target of :func:`match_histogram`)."""
    if not images or n_levels < 2:
        raise ValueError("need at least one reference image and n_levels >= 2")
    pix = np.concatenate([_check_u8(im).ravel() for im in images])
    return np.quantile(pix, (np.arange(n_levels) + 0.5) / n_levels)


def match_histogram(image: np.ndarray, ref_q: np.ndarray, keep_extremes: bool = True
                    ) -> np.ndarray:
    """Map an 8-bit image onto a reference histogram (test-time rendering normalisation).

    The image's grey-level LUT is :func:`sar_atd.sar.lut.histogram_match_lut` (the rule the
    runtime tiler applies to uint8 scenes with ``uint8_match``): each grey level's mid-rank
    goes to the reference quantile at that rank, undoing any global monotonic rendering up
    to quantisation and clipping; with ``keep_extremes`` grey levels 0 and 255 stay.

    Args:
        image: uint8 (H, W).
        ref_q: :func:`reference_quantiles` output.
        keep_extremes: keep grey levels 0 and 255 where they are.

    Returns:
        uint8 (H, W).
    """
    img = _check_u8(image)
    hist = np.bincount(img.ravel(), minlength=256)
    return histogram_match_lut(hist, ref_q, keep_extremes)[img]
