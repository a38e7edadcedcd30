"""MSTAR-like SAR sensor model: phase-history image formation, sensor function, noise.

Conventions (used everywhere in SAR-ATD):

* Images are (H, W) = (range rows, cross-range columns) on a ground-plane grid with MSTAR
  pixel spacing (0.202148 m range x 0.203125 m cross-range by default).
* The radar is at the **bottom** of the image (MSTAR ``RadarPosition= bottom``): row index
  grows toward the sensor. A scatterer at height ``h`` lays over toward the sensor (down the
  image) by ``h * tan(depression)``; its shadow extends away from the sensor (up the image)
  by ``h / tan(depression)``.
* Scene coordinates are metres, origin at the image centre pixel ``(H // 2, W // 2)``:
  ``x`` cross-range (toward increasing columns), ``y`` ground range *away* from the sensor
  (toward decreasing rows), ``z`` height above ground.
* Complex images are complex64 calibrated amplitudes (sqrt of RCS per pixel); a point
  scatterer of amplitude ``a`` gives a peak of ``a`` after the sensor function (peak-gain
  normalisation), as in MSTAR magnitude files.

Resolution and bandwidth: a -35 dB Taylor window (nbar=4) broadens the -3 dB mainlobe to
``k / B`` with ``k ~= 1.19`` (computed numerically, :func:`taylor_broadening`), so the
spatial bandwidth for a resolution ``rho`` is ``B = k / rho`` cycles/m, the RF bandwidth
``k c / (2 rho)`` (0.587 GHz for 0.3047 m, MSTAR: 0.591 GHz) and the synthetic aperture
``k * lambda / (2 rho)`` radians.

Every function accepts numpy arrays or torch tensors (CUDA too) and returns the same kind.
Every FFT goes through :mod:`sar_atd.sar.fftcheck` (checked against known answers per
shape, dtype, device and thread count, with a correct fallback).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from sar_atd.sar import fftcheck
from sar_atd.sar._xp import back, to_torch

C_M_S = 299_792_458.0
"""Speed of light (m/s)."""


@dataclass(frozen=True)
class SensorConfig:
    """The MSTAR (Sandia Twin Otter) X-band spotlight sensor, from a real MSTAR header."""

    centre_freq_hz: float = 9.599e9
    range_res_m: float = 0.3047
    xrange_res_m: float = 0.3047
    range_spacing_m: float = 0.202148
    xrange_spacing_m: float = 0.203125
    taylor_sll_db: float = 35.0
    taylor_nbar: int = 4

    def __post_init__(self) -> None:
        for name in ("centre_freq_hz", "range_res_m", "xrange_res_m", "range_spacing_m",
                     "xrange_spacing_m", "taylor_sll_db"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.taylor_nbar < 1:
            raise ValueError(f"taylor_nbar must be >= 1, got {self.taylor_nbar}")

    @property
    def wavelength_m(self) -> float:
        return C_M_S / self.centre_freq_hz

    @property
    def broadening(self) -> float:
        """-3 dB mainlobe width x bandwidth of the Taylor window (dimensionless, ~1.19)."""
        return taylor_broadening(self.taylor_sll_db, self.taylor_nbar)

    @property
    def bandwidth_hz(self) -> float:
        """RF bandwidth giving ``range_res_m`` with this window (Hz)."""
        return self.broadening * C_M_S / (2.0 * self.range_res_m)

    @property
    def aperture_rad(self) -> float:
        """Synthetic aperture angle giving ``xrange_res_m`` with this window (radians)."""
        return self.broadening * self.wavelength_m / (2.0 * self.xrange_res_m)

    @property
    def min_resolution_m(self) -> tuple[float, float]:
        """Finest (range, cross-range) resolution the pixel grid can carry (Nyquist)."""
        return self.broadening * self.range_spacing_m, self.broadening * self.xrange_spacing_m


# --------------------------------------------------------------------------- Taylor window
@lru_cache(maxsize=32)
def taylor_coefficients(sll_db: float, nbar: int) -> tuple[float, ...]:
    """Cosine-series coefficients ``F_m`` (m = 1..nbar-1) of a Taylor window.

    The window over the normalised aperture ``u in [-1/2, 1/2]`` is
    ``w(u) = 1 + 2 * sum_m F_m cos(2 pi m u)`` (Carrara et al., *Spotlight SAR*, app. D).
    """
    a = math.acosh(10.0 ** (sll_db / 20.0)) / math.pi
    sigma2 = nbar**2 / (a**2 + (nbar - 0.5) ** 2)
    coeffs = []
    for m in range(1, nbar):
        num = 1.0
        den = 1.0
        for n in range(1, nbar):
            num *= 1.0 - m**2 / (sigma2 * (a**2 + (n - 0.5) ** 2))
            if n != m:
                den *= 1.0 - m**2 / n**2
        coeffs.append(((-1) ** (m + 1)) * num / (2.0 * den))
    return tuple(coeffs)


def taylor_window(u: torch.Tensor, sll_db: float, nbar: int) -> torch.Tensor:
    """Taylor weights at normalised aperture positions ``u`` (|u| <= 1/2, zero outside)."""
    w = torch.ones_like(u)
    for m, f in enumerate(taylor_coefficients(sll_db, nbar), start=1):
        w = w + 2.0 * f * torch.cos(2.0 * math.pi * m * u)
    return torch.where(u.abs() <= 0.5, w, torch.zeros_like(w))


@lru_cache(maxsize=32)
def taylor_broadening(sll_db: float, nbar: int) -> float:
    """-3 dB width of the window's impulse response, in units of 1/bandwidth."""
    m, pad = 1024, 32
    u = (torch.arange(m, dtype=torch.float64) + 0.5) / m - 0.5
    w = taylor_window(u, sll_db, nbar)
    power = fftcheck.fft(w, n=m * pad).abs() ** 2
    spec = (power / power.max()).numpy()
    # first bin below half power, then linear interpolation of the crossing
    i = int(np.argmax(spec < 0.5))
    frac = (spec[i - 1] - 0.5) / (spec[i - 1] - spec[i])
    half_width_bins = (i - 1) + float(frac)
    return 2.0 * half_width_bins / pad


def spectral_window(n: int, spacing_m: float, res_m: Any, sll_db: float, nbar: int,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """Taylor weights on the FFT frequency bins of an ``n``-sample axis.

    Args:
        n: samples along the axis.
        spacing_m: pixel spacing (m).
        res_m: -3 dB resolution (m): a float or a tensor of shape (B,).
        sll_db, nbar: Taylor parameters.

    Returns:
        float32 tensor (n,) or (B, n), in ``torch.fft.fftfreq`` order, normalised so that a
        point scatterer keeps its peak amplitude (the weights sum to ``n``). For a scalar
        resolution the tensor is cached and shared: treat it as read-only.

    Raises:
        ValueError: if the resolution is finer than the grid can carry.
    """
    if isinstance(res_m, (int, float)):
        return _scalar_window(n, float(spacing_m), float(res_m), float(sll_db), int(nbar),
                              str(torch.device(device) if device is not None else "cpu"))
    return _spectral_window(n, spacing_m, res_m, sll_db, nbar, device)


@lru_cache(maxsize=64)
def _scalar_window(n: int, spacing_m: float, res_m: float, sll_db: float, nbar: int,
                   device: str) -> torch.Tensor:
    """Cached :func:`spectral_window` of one resolution (read-only tensor)."""
    return _spectral_window(n, spacing_m, res_m, sll_db, nbar, device)


def _spectral_window(n: int, spacing_m: float, res_m: Any, sll_db: float, nbar: int,
                     device: torch.device | str | None) -> torch.Tensor:
    k = taylor_broadening(sll_db, nbar)
    res = torch.as_tensor(res_m, dtype=torch.float64, device=device)
    if torch.any(~torch.isfinite(res)) or torch.any(res <= 0):
        raise ValueError(f"resolution must be finite and > 0 m, got {res_m}")
    if torch.any(res < k * spacing_m * (1 - 1e-9)):
        raise ValueError(
            f"resolution {float(res.min()):.4f} m is finer than the grid supports "
            f"({k * spacing_m:.4f} m for {spacing_m} m spacing)"
        )
    freqs = torch.fft.fftfreq(n, d=spacing_m, dtype=torch.float64, device=device)  # cycles/m
    band = (k / res)[..., None]  # spatial bandwidth, cycles/m
    w = taylor_window(freqs / band, sll_db, nbar)
    w = w * (n / w.sum(dim=-1, keepdim=True))
    return w.to(torch.float32)


# --------------------------------------------------------------------------- sensor function
def apply_sensor_function(image: Any, sensor: SensorConfig | None = None,
                          range_res_m: Any = None, xrange_res_m: Any = None) -> Any:
    """Band-limit and weight a complex image as the sensor would (2-D Taylor, FFT domain).

    Args:
        image: complex (..., H, W) numpy array or torch tensor: an ideal (full-band)
            reflectivity image on the sensor's pixel grid.
        sensor: spacing and window; defaults to :class:`SensorConfig`.
        range_res_m, xrange_res_m: resolutions (m); floats, or tensors of shape (B,) for a
            batch (B, H, W) with one resolution per image. ``None`` takes the sensor's.

    Returns:
        complex64 image of the same shape and kind. Peak-gain normalised: an isolated point
        keeps its amplitude; white noise power is scaled by :func:`noise_power_gain`.

    Raises:
        FFTCheckError: the FFT gave wrong values (known-answer check or energy bound).
    """
    sensor = sensor or SensorConfig()
    x, was_np = to_torch(image)
    if x.ndim < 2:
        raise ValueError(f"image must be (..., H, W), got shape {tuple(x.shape)}")
    x = x.to(torch.complex64)
    h, w = x.shape[-2:]
    rr = sensor.range_res_m if range_res_m is None else range_res_m
    xr = sensor.xrange_res_m if xrange_res_m is None else xrange_res_m
    wr = spectral_window(h, sensor.range_spacing_m, rr, sensor.taylor_sll_db,
                         sensor.taylor_nbar, x.device)
    wc = spectral_window(w, sensor.xrange_spacing_m, xr, sensor.taylor_sll_db,
                         sensor.taylor_nbar, x.device)
    weights = wr[..., :, None] * wc[..., None, :]
    spec = fftcheck.fft2(x)
    fftcheck.check_parseval(x, spec, "sensor function forward FFT")
    spec = spec * weights
    out = fftcheck.ifft2(spec)
    fftcheck.check_parseval(out, spec, "sensor function inverse FFT")
    return back(out.to(torch.complex64), was_np)


def noise_power_gain(shape: tuple[int, int], sensor: SensorConfig | None = None,
                     range_res_m: Any = None, xrange_res_m: Any = None) -> Any:
    """Factor by which :func:`apply_sensor_function` scales the power of white noise.

    Args:
        shape: (H, W) of the filtered images.
        sensor: spacing and window; defaults to :class:`SensorConfig`.
        range_res_m, xrange_res_m: floats, or tensors of shape (B,) (one per image).

    Returns:
        A float, or a float32 tensor (B,) on the resolutions' device when either is a tensor.
    """
    sensor = sensor or SensorConfig()
    h, w = shape
    rr = sensor.range_res_m if range_res_m is None else range_res_m
    xr = sensor.xrange_res_m if xrange_res_m is None else xrange_res_m
    batched = isinstance(rr, torch.Tensor) or isinstance(xr, torch.Tensor)
    device = next((t.device for t in (rr, xr) if isinstance(t, torch.Tensor)), None)
    wr = spectral_window(h, sensor.range_spacing_m, rr, sensor.taylor_sll_db,
                         sensor.taylor_nbar, device)
    wc = spectral_window(w, sensor.xrange_spacing_m, xr, sensor.taylor_sll_db,
                         sensor.taylor_nbar, device)
    gain = (wr.double() ** 2).mean(-1) * (wc.double() ** 2).mean(-1)
    return gain.float() if batched else float(gain)


# --------------------------------------------------------------------------- image formation
def layover_shift_m(height_m: Any, depression_deg: float) -> Any:
    """Ground-range shift toward the sensor of a scatterer at ``height_m`` (m)."""
    return height_m * math.tan(math.radians(depression_deg))


def shadow_length_m(height_m: Any, depression_deg: float) -> Any:
    """Ground length of the shadow cast away from the sensor by an object of ``height_m``."""
    return height_m / math.tan(math.radians(depression_deg))


def scene_to_pixel(xyz_m: Any, shape: tuple[int, int], depression_deg: float,
                   sensor: SensorConfig | None = None) -> Any:
    """Map scene points (N, 3) metres to fractional (row, col) pixels (N, 2), with layover."""
    sensor = sensor or SensorConfig()
    p, was_np = to_torch(xyz_m)
    p = p.to(torch.float64)
    h, w = shape
    y_img = p[:, 1] - p[:, 2] * math.tan(math.radians(depression_deg))
    rows = h // 2 - y_img / sensor.range_spacing_m
    cols = w // 2 + p[:, 0] / sensor.xrange_spacing_m
    return back(torch.stack([rows, cols], dim=1), was_np)


def form_image(xyz_m: Any, amplitudes: Any, shape: tuple[int, int], depression_deg: float,
               sensor: SensorConfig | None = None, *, ideal: bool = False,
               chunk: int = 8192) -> Any:
    """Form a complex SAR image of point scatterers from their phase history.

    Each scatterer contributes ``a * exp(-j 4 pi R / lambda)`` (two-way carrier phase at its
    slant range ``R = y cos(psi) - z sin(psi)``) times a linear phase over the 2-D spatial
    frequency support; the support is Taylor-weighted and inverse-FFT'd onto the ground
    grid. Positions are exact (sub-pixel), layover comes from the slant-range projection.

    Args:
        xyz_m: (N, 3) float scene positions, metres (see module conventions).
        amplitudes: (N,) complex or real amplitudes (sqrt RCS, m).
        shape: output (H, W) pixels.
        depression_deg: depression angle of the line of sight (degrees).
        sensor: sensor; defaults to :class:`SensorConfig` (MSTAR).
        ideal: if True, return the full-band unweighted image (what the signature bank
            stores); :func:`apply_sensor_function` then gives exactly the weighted image.
        chunk: scatterers per matrix product (memory bound).

    Returns:
        complex64 (H, W), numpy or torch like ``xyz_m``.
    """
    sensor = sensor or SensorConfig()
    p, was_np = to_torch(xyz_m)
    a, _ = to_torch(amplitudes, p.device)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"xyz_m must have shape (N, 3), got {tuple(p.shape)}")
    if a.shape != (p.shape[0],):
        raise ValueError(f"amplitudes must have shape ({p.shape[0]},), got {tuple(a.shape)}")
    if not torch.all(torch.isfinite(p)):
        raise ValueError("xyz_m contains NaN or infinite positions")
    h, w = shape
    psi = math.radians(depression_deg)
    p = p.to(torch.float64)
    slant = p[:, 1] * math.cos(psi) - p[:, 2] * math.sin(psi)
    carrier = torch.exp(-1j * (4.0 * math.pi / sensor.wavelength_m) * slant)
    amp = a.to(torch.complex128) * carrier
    rc = scene_to_pixel(p, shape, depression_deg, sensor)
    kr = torch.fft.fftfreq(h, device=p.device, dtype=torch.float64)  # cycles/pixel
    kc = torch.fft.fftfreq(w, device=p.device, dtype=torch.float64)
    spec = torch.zeros((h, w), dtype=torch.complex64, device=p.device)
    for s in range(0, p.shape[0], chunk):
        r = rc[s:s + chunk, 0:1]
        c = rc[s:s + chunk, 1:2]
        er = (torch.exp(-2j * math.pi * r * kr[None, :]) * amp[s:s + chunk, None])
        ec = torch.exp(-2j * math.pi * c * kc[None, :])
        spec += (er.to(torch.complex64).T @ ec.to(torch.complex64))
    img = fftcheck.ifft2(spec)
    if not ideal:
        img = apply_sensor_function(img, sensor)
    return back(img.to(torch.complex64), was_np)


# --------------------------------------------------------------------------- noise
def add_thermal_noise(image: Any, noise_db: Any, rng: Any = None) -> Any:
    """Add circular complex Gaussian noise of power ``10**(noise_db/10)`` per pixel.

    Args:
        image: complex (..., H, W) numpy array or torch tensor.
        noise_db: noise power per pixel in dB (relative to unit amplitude squared); a float
            or a tensor broadcastable to the leading batch dims (e.g. shape (B,)).
        rng: ``numpy.random.Generator`` for numpy input, ``torch.Generator`` for torch.
    """
    x, was_np = to_torch(image)
    x = x.to(torch.complex64)
    db = torch.as_tensor(noise_db, dtype=torch.float32, device=x.device)
    sigma = torch.sqrt(10.0 ** (db / 10.0) / 2.0)
    while sigma.ndim < x.ndim:
        sigma = sigma[..., None]
    if was_np:
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise TypeError(f"numpy input needs a numpy.random.Generator, got {type(rng)}")
        g = rng if rng is not None else np.random.default_rng()
        re = torch.as_tensor(g.standard_normal(x.shape, dtype=np.float32))
        im = torch.as_tensor(g.standard_normal(x.shape, dtype=np.float32))
    else:
        if rng is not None and not isinstance(rng, torch.Generator):
            raise TypeError(f"torch input needs a torch.Generator, got {type(rng)}")
        re = torch.randn(x.shape, generator=rng, device=x.device, dtype=torch.float32)
        im = torch.randn(x.shape, generator=rng, device=x.device, dtype=torch.float32)
    out = x + torch.complex(re * sigma, im * sigma)
    return back(out, was_np)
