"""Point-spread-function (PSF) measurements of a complex SAR image of one isolated point.

Used by the sensor tests and ``benchmarks.bench_sensor`` to check the sensor model against
the MSTAR header (-3 dB widths ~0.30 m, -35 dB Taylor sidelobes).

- :func:`upsample`: band-limited interpolation by zero-padding the centred 2-D spectrum, so
  that sub-pixel widths and peak positions are resolved.
- :func:`half_power_width`: -3 dB width (samples) of the lobe around a peak of a 1-D cut.
- :func:`first_nulls`: the first minima either side of a peak of a 1-D cut.
- :func:`psf_metrics`: all of the above on the upsampled image: range / cross-range -3 dB
  widths (metres), 2-D and 1-D peak sidelobe ratios and the integrated sidelobe ratio (dB).

Axis conventions follow :mod:`sar_atd.sar.sensor`: rows are range (spacing
``SensorConfig.range_spacing_m``), columns cross-range (``xrange_spacing_m``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sar_atd.sar.sensor import SensorConfig

DEFAULT_UPSAMPLING = 16
"""Default upsampling factor of :func:`psf_metrics` (samples per original pixel)."""


@dataclass(frozen=True)
class PsfMetrics:
    """PSF figures of one point image.

    Attributes:
        range_width_m: -3 dB width of the range (column) cut through the peak, metres.
        xrange_width_m: -3 dB width of the cross-range (row) cut through the peak, metres.
        psl_db: 2-D peak sidelobe ratio: largest power outside the null-to-null mainlobe
            rectangle over the peak power, dB (<= 0).
        islr_db: integrated sidelobe ratio: energy outside the mainlobe rectangle over the
            energy inside it, dB.
        range_psl_db: 1-D peak sidelobe ratio of the range cut, dB.
        xrange_psl_db: 1-D peak sidelobe ratio of the cross-range cut, dB.
    """

    range_width_m: float
    xrange_width_m: float
    psl_db: float
    islr_db: float
    range_psl_db: float
    xrange_psl_db: float


def upsample(img: np.ndarray, factor: int = DEFAULT_UPSAMPLING) -> np.ndarray:
    """Band-limited interpolation by zero-padding the centred spectrum.

    Args:
        img: complex (or real) image, shape (H, W).
        factor: upsampling factor, an integer >= 1.

    Returns:
        complex128 array of shape (H * factor, W * factor); sample ``(r * factor,
        c * factor)`` is the input pixel ``(r, c)`` (amplitudes preserved).

    Raises:
        ValueError: if ``img`` is not 2-D or ``factor`` is not an integer >= 1.
    """
    img = np.asarray(img)
    if img.ndim != 2:
        raise ValueError(f"upsample expects an image of shape (H, W), got {img.shape}")
    if int(factor) != factor or factor < 1:
        raise ValueError(f"upsampling factor must be an integer >= 1, got {factor}")
    up = int(factor)
    h, w = img.shape
    spec = np.fft.fftshift(np.fft.fft2(img))
    pad = np.zeros((h * up, w * up), dtype=np.complex128)
    r0, c0 = (h * up - h) // 2, (w * up - w) // 2
    pad[r0:r0 + h, c0:c0 + w] = spec
    return np.fft.ifft2(np.fft.ifftshift(pad)) * up * up


def half_power_width(profile: np.ndarray, i: int) -> float:
    """-3 dB width of the lobe of ``|profile|`` around its peak at index ``i``.

    The half-power crossings either side of ``i`` are found by linear interpolation of the
    power ``(|profile| / |profile[i]|)**2`` between samples.

    Args:
        profile: 1-D amplitude (or complex) cut, shape (L,).
        i: index of the peak in ``profile``.

    Returns:
        The width in samples (divide by the upsampling factor and multiply by the pixel
        spacing for metres).

    Raises:
        ValueError: if the power does not fall below half before an end of the profile.
    """
    p = (np.abs(profile) / np.abs(profile[i])) ** 2

    def crossing(step: int) -> float:
        j = i
        while 0 <= j + step < len(p) and p[j + step] > 0.5:
            j += step
        if not 0 <= j + step < len(p):
            raise ValueError(f"no half-power crossing of the lobe at {i} within the profile "
                             f"(length {len(p)})")
        return j + step * (p[j] - 0.5) / (p[j] - p[j + step])

    return crossing(1) - crossing(-1)


def first_nulls(profile: np.ndarray, i: int) -> tuple[int, int]:
    """Indices ``(lo, hi)`` of the first minima of ``|profile|`` left and right of the peak ``i``.

    Args:
        profile: 1-D amplitude (or complex) cut, shape (L,).
        i: index of the peak in ``profile``.

    Returns:
        ``lo <= i <= hi``; the mainlobe is ``profile[lo:hi + 1]``.
    """
    p = np.abs(profile)
    lo, hi = i, i
    while lo > 0 and p[lo - 1] < p[lo]:
        lo -= 1
    while hi < len(p) - 1 and p[hi + 1] < p[hi]:
        hi += 1
    return lo, hi


def psf_metrics(img: np.ndarray, sensor: SensorConfig | None = None,
                up: int = DEFAULT_UPSAMPLING) -> PsfMetrics:
    """PSF figures of a complex image of one isolated point.

    Widths are measured on the range (column) and cross-range (row) cuts through the peak of
    the upsampled image; the PSL is the largest sidelobe of the 2-D image outside the
    null-to-null mainlobe rectangle; the ISLR is the energy outside that rectangle over the
    energy inside it.

    Args:
        img: complex image of one point, shape (H, W); rows range, columns cross-range.
        sensor: gives the pixel spacings (metres); default ``SensorConfig()``.
        up: upsampling factor (see :func:`upsample`).

    Returns:
        The :class:`PsfMetrics` (widths in metres, ratios in dB).
    """
    sensor = SensorConfig() if sensor is None else sensor
    amp = np.abs(upsample(img, up))
    r, c = (int(v) for v in np.unravel_index(int(amp.argmax()), amp.shape))
    col, row = amp[:, c], amp[r, :]
    r0, r1 = first_nulls(col, r)
    c0, c1 = first_nulls(row, c)
    power = (amp / amp[r, c]) ** 2
    inside = np.zeros(power.shape, dtype=bool)
    inside[r0:r1 + 1, c0:c1 + 1] = True

    def psl_1d(p: np.ndarray, lo: int, hi: int) -> float:
        return 10 * math.log10(max(p[:lo].max(), p[hi + 1:].max()))

    return PsfMetrics(
        range_width_m=float(half_power_width(col, r) / up * sensor.range_spacing_m),
        xrange_width_m=float(half_power_width(row, c) / up * sensor.xrange_spacing_m),
        psl_db=10 * math.log10(power[~inside].max()),
        islr_db=10 * math.log10(power[~inside].sum() / power[inside].sum()),
        range_psl_db=psl_1d(power[:, c], r0, r1),
        xrange_psl_db=psl_1d(power[r, :], c0, c1),
    )
