"""Scattering mechanisms and image formation of the signature simulator.

Every mechanism returns point scatterers ``(xyz (N, 3) m, amplitude complex128 (N,))``:
the complex amplitude is sqrt(RCS) (m) *without* the two-way carrier phase, which
:func:`form_ideal_image` adds from the exact slant range as :func:`sar_atd.sar.sensor.form_image`
does. Mechanisms (monostatic, line of sight toward the sensor ``s = (0, -cos psi, sin psi)``):

* **specular** (physical optics): each visible facet of area ``A`` and edges ``a x b`` returns
  ``R sqrt(4 pi) A / lambda cos(theta) sinc(k a s.u) sinc(k b s.v)`` with a random phase of
  std ``2 k h cos(theta)`` (rms height ``h``: roughness). Coherent sums over flat plates
  give the strong, narrow flashes near normal incidence; cylinders give a line.
* **dihedral** wall-floor double bounce: a vertical facet standing on a horizontal reflector
  (ground, or a deck) whose reflection point is illuminated returns
  ``R_floor R sqrt(8 pi) A / lambda cos(phi)`` (azimuth sinc pattern only: a dihedral is
  retro-reflective in elevation) at the *foot* of the facet (equal path length): the bright
  line at the base of the vehicle on the sensor side.
* **trihedral** concave corners: ``sqrt(12 pi) a^2 / lambda`` with a ~40 deg wide lobe.
* **edges**: ``c L (1 - (s.e)^2)`` per edge sample of length ``L``.
* **diffuse**: circular Gaussian amplitude of mean power ``sigma0 A cos(theta)``.
* **fittings**: small concave features (bolts, hinges, handles, hatch rims, louvres, track
  pins) of edge ``a``: a randomly oriented small trihedral, rms amplitude
  ``FITTING_EFFICIENCY sqrt(12 pi) a^2 / lambda`` on the lit side of their surface; and the
  ring steps of a gun tube (clamp bands, bore evacuator, muzzle): a ring dihedral of step
  height ``h`` whose two flash points (where the ring's tangent is normal to the line of
  sight) each return ``sqrt(8 pi) h L / lambda`` with the Fresnel length of the curved edge
  ``L = sqrt(r lambda / 2)``, seen from every aspect but nose-on/tail-on.
* **volume** (tree crown): random scatterers in the crown, attenuated by the foliage path.

All amplitudes are multiplied by :data:`AMPLITUDE_GAIN`, the calibration to MSTAR magnitudes
(grass clutter ~0.03, vehicle bright points ~0.5-3 after the sensor function).
"""

from __future__ import annotations

import math

import numpy as np

from sar_atd.sar.sensor import SensorConfig

AMPLITUDE_GAIN = 1.0
"""Global calibration of simulated amplitudes to MSTAR magnitude units (see module doc)."""

GROUND_REFLECTIVITY = 0.5
"""Specular reflection factor of the ground (grass/soil at 15-17 deg grazing) in dihedrals."""

DECK_REFLECTIVITY = 0.8
"""Specular reflection factor of a vehicle deck (metal) in deck-wall dihedrals."""

DIHEDRAL_EFFICIENCY = 0.35
"""Amplitude factor of real wall-floor dihedrals vs the ideal one (walls not exactly
vertical or flat, uneven ground, wheels and stowage breaking the corner). Calibrated so that
vehicle peaks are MSTAR-like (median ~1.5-3, rare flashes ~5-10)."""

TRIHEDRAL_EFFICIENCY = 0.25
"""Amplitude factor of real concave corners vs an ideal trihedral (same reason)."""

FITTING_EFFICIENCY = 0.3
"""rms amplitude of a randomly oriented small trihedral vs one pointed at the sensor: the
fraction of the hemisphere inside its ~40 deg lobe is ~0.1 in power, ~0.3 in amplitude."""

BARREL_RADIUS_M = 0.09
"""Gun-tube radius (m) used for the Fresnel length of ring steps."""

FOLIAGE_EXTINCTION_NP_M = 0.6
"""One-way amplitude extinction inside a tree crown (neper/m)."""


def line_of_sight(depression_deg: float) -> np.ndarray:
    """Unit vector from the scene toward the sensor, (3,)."""
    psi = math.radians(depression_deg)
    return np.array([0.0, -math.cos(psi), math.sin(psi)])


def _sinc(x: np.ndarray) -> np.ndarray:
    return np.sinc(x / np.pi)  # sin(x)/x


def specular(centre: np.ndarray, normal: np.ndarray, axis_u: np.ndarray, axis_v: np.ndarray,
             size_u: np.ndarray, size_v: np.ndarray, area: np.ndarray, reflectivity: np.ndarray,
             rms_height: np.ndarray, depression_deg: float, rng: np.random.Generator,
             wavelength_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Physical-optics facet returns of (already visible) facets; arrays (N, ...)."""
    s = line_of_sight(depression_deg)
    k = 2 * math.pi / wavelength_m
    cos_t = np.clip(normal @ s, 0.0, 1.0)
    pat = _sinc(k * size_u * (axis_u @ s)) * _sinc(k * size_v * (axis_v @ s))
    amp = reflectivity * math.sqrt(4 * math.pi) * area / wavelength_m * cos_t * pat
    phase = rng.standard_normal(amp.shape[0]) * (2 * k * rms_height * cos_t)
    return centre, amp * np.exp(1j * phase)


def diffuse(centre: np.ndarray, normal: np.ndarray, area: np.ndarray, sigma0: np.ndarray,
            depression_deg: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random-phase diffuse returns (mean power ``sigma0 * A * cos(theta)``)."""
    s = line_of_sight(depression_deg)
    cos_t = np.clip(normal @ s, 0.0, 1.0)
    std = np.sqrt(sigma0 * area * cos_t / 2.0)
    n = centre.shape[0]
    amp = std * (rng.standard_normal(n) + 1j * rng.standard_normal(n))
    return centre, amp


def dihedral(centre: np.ndarray, normal: np.ndarray, axis_u: np.ndarray, axis_v: np.ndarray,
             size_u: np.ndarray, size_v: np.ndarray, area: np.ndarray, reflectivity: np.ndarray,
             rms_height: np.ndarray, base_z: np.ndarray, reflector_lit: np.ndarray,
             depression_deg: float, rng: np.random.Generator, wavelength_m: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """Wall-floor double bounce of vertical facets (imaged at their foot on the floor).

    Args:
        base_z: (N,) floor height under each facet (m).
        reflector_lit: (N,) bool, the floor point that feeds the facet is illuminated.
    """
    psi = math.radians(depression_deg)
    k = 2 * math.pi / wavelength_m
    nh = normal[:, :2]
    nh_len = np.linalg.norm(nh, axis=1)
    cos_phi = np.clip(-nh[:, 1] / np.maximum(nh_len, 1e-9), 0.0, 1.0)  # vs horizontal LOS
    vertical = np.abs(normal[:, 2]) < 0.26
    # azimuth pattern: only the horizontal phase progression (retro-reflective in elevation)
    pat = (_sinc(k * size_u * (-math.cos(psi) * axis_u[:, 1]))
           * _sinc(k * size_v * (-math.cos(psi) * axis_v[:, 1])))
    floor_r = np.where(base_z <= 1e-6, GROUND_REFLECTIVITY, DECK_REFLECTIVITY)
    amp = (DIHEDRAL_EFFICIENCY * floor_r * reflectivity * math.sqrt(8 * math.pi) * area
           / wavelength_m * cos_phi * pat)
    keep = vertical & reflector_lit & (cos_phi > 0)
    foot = centre[keep].copy()
    foot[:, 2] = base_z[keep]
    phase = rng.standard_normal(int(keep.sum())) * (2 * k * rms_height[keep] * cos_phi[keep])
    return foot, amp[keep] * np.exp(1j * phase)


def trihedral(position: np.ndarray, axis: np.ndarray, size_m: np.ndarray,
              depression_deg: float, wavelength_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Concave trihedral corners: peak ``sqrt(12 pi) a^2 / lambda``, ~40 deg wide lobe."""
    s = line_of_sight(depression_deg)
    ang = np.arccos(np.clip(axis @ s, -1.0, 1.0))
    amp = (TRIHEDRAL_EFFICIENCY * math.sqrt(12 * math.pi) * size_m**2 / wavelength_m
           * np.exp(-(ang / 0.45) ** 2))
    return position, amp.astype(np.complex128)


EDGE_MODELS = ("isotropic", "wedge")
"""Edge-diffraction models: ``isotropic`` (every facet edge diffracts alike, by its length
and its angle to the line of sight: the default, which every published bank used) and
``wedge`` (only edges of lit faces, trailing edges weakened as below, no edges between the
facets of a curved surface; see :func:`edges` and ``models.SMOOTH_EDGE_COS``)."""


def check_edge_model(edge_model: str) -> None:
    """Raise ValueError naming the choices when ``edge_model`` is unknown."""
    if edge_model not in EDGE_MODELS:
        raise ValueError(f"unknown edge model {edge_model!r}: expected one of {EDGE_MODELS}")


TRAILING_EDGE_SOFT = 0.01
TRAILING_EDGE_HARD = 0.5
"""Backscatter of a lit face's trailing edge relative to its leading edge (amplitude), from
Keller's diffraction coefficient of a right-angle wedge seen 17 deg above the lit face
(exterior angle 270 deg, n = 1.5): 0.009 for the soft case (electric field along the edge:
HH on a horizontal edge) and 0.50 for the hard case (field across the edge: HH on a
vertical edge). A box seen from above diffracts at its near top edge, hardly at its far
one."""


def edges(position: np.ndarray, direction: np.ndarray, length: np.ndarray, coef: np.ndarray,
          depression_deg: float, normal: np.ndarray | None = None,
          outward: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Edge diffraction, strongest for edges broadside to the line of sight.

    With the face ``normal`` and the ``outward`` direction across the edge in that face
    (both (E, 3) unit vectors), only edges of lit faces diffract, and a trailing edge
    (``outward`` pointing away from the sensor) by :data:`TRAILING_EDGE_SOFT` /
    :data:`TRAILING_EDGE_HARD`, blended by the share of the horizontal (HH) field along the
    edge."""
    s = line_of_sight(depression_deg)
    amp = coef * length * (1.0 - (direction @ s) ** 2)
    if normal is not None and outward is not None:
        e_h = np.array([1.0, 0.0, 0.0])  # HH: horizontal, across the line of sight
        soft = (direction @ e_h) ** 2
        trailing = soft * TRAILING_EDGE_SOFT + (1.0 - soft) * TRAILING_EDGE_HARD
        amp = amp * (normal @ s > 0.0) * np.where(outward @ s > 0.0, 1.0, trailing)
    return position, amp.astype(np.complex128)


def fittings(position: np.ndarray, axis: np.ndarray, size_m: np.ndarray, kind: np.ndarray,
             depression_deg: float, rng: np.random.Generator, wavelength_m: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """Small features (kind 0, axis = surface normal, size = corner edge ``a``) and gun-tube
    ring steps (kind 1, axis = step-face normal along the tube, size = step height), (F, ...).

    Surface fittings return only from the lit side of their surface; their orientation is
    random, so their amplitude is Rayleigh-like (random phase, size-driven magnitude). Ring
    steps face the sensor when ``axis . s > 0`` (concave: ring dihedral); from behind only
    the convex edge diffracts (0.3 of it); their flash points vanish nose-on (the ring then
    acts as a whole, already covered by the facet returns of the muzzle face).
    """
    s = line_of_sight(depression_deg)
    cos_t = axis @ s
    n = position.shape[0]
    amp = np.zeros(n)
    surf = kind == 0
    amp[surf] = (FITTING_EFFICIENCY * math.sqrt(12 * math.pi) * size_m[surf] ** 2
                 / wavelength_m * (cos_t[surf] > 0.0))
    ring = ~surf
    if np.any(ring):
        l_eff = math.sqrt(BARREL_RADIUS_M * wavelength_m / 2)
        sin_t = np.sqrt(np.clip(1.0 - cos_t[ring] ** 2, 0.0, 1.0))
        one = math.sqrt(8 * math.pi) * size_m[ring] * l_eff / wavelength_m
        amp[ring] = (math.sqrt(2.0) * one * np.where(cos_t[ring] > 0.0, 1.0, 0.3)
                     * (sin_t > 0.1))
    phase = rng.uniform(0.0, 2 * math.pi, n)
    keep = amp > 0
    return position[keep], (amp * np.exp(1j * phase))[keep]


def volume(centre: np.ndarray, radii: np.ndarray, coef: float, depression_deg: float,
           rng: np.random.Generator, n_points: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """Random scatterers filling an ellipsoidal crown, attenuated along the path to its surface.

    Args:
        centre, radii: (3,) crown ellipsoid (m).
        coef: volume backscatter per m^3.
    """
    s = line_of_sight(depression_deg)
    u = rng.standard_normal((n_points, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    r = rng.random(n_points) ** (1 / 3)
    p = u * r[:, None]  # unit ball
    # path from p to the unit sphere along s (the ellipsoid scaled to a sphere)
    d = s / radii
    a = d @ d
    b = 2 * (p @ d)
    c = np.einsum("ij,ij->i", p, p) - 1.0
    t = (-b + np.sqrt(np.maximum(b * b - 4 * a * c, 0.0))) / (2 * a)  # metres along s
    vol = 4 / 3 * math.pi * float(np.prod(radii))
    std = math.sqrt(coef * vol / n_points / 2) * np.exp(-2 * FOLIAGE_EXTINCTION_NP_M * t)
    amp = std * (rng.standard_normal(n_points) + 1j * rng.standard_normal(n_points))
    return centre + p * radii, amp


# --------------------------------------------------------------------------- imaging
def form_ideal_image(xyz_m: np.ndarray, amplitudes: np.ndarray, shape: tuple[int, int],
                     depression_deg: float, sensor: SensorConfig | None = None,
                     upsample: int = 4) -> np.ndarray:
    """Fast equivalent of ``form_image(xyz, a, shape, psi, ideal=True)`` (numpy, complex64).

    Scatterers (with their exact two-way carrier phase) are deposited on a grid ``upsample``
    times finer than the pixels; the FFT of that grid restricted to the image's own
    frequency band is exactly the phase-history spectrum ``form_image`` builds for positions
    on the fine grid, so the result equals ``form_image`` up to rounding each position to
    1/``upsample`` pixel (0.05 m at 4x). Cost O(N + (uH)(uW) log) instead of O(N H W).

    Args:
        xyz_m: (N, 3) scene positions (m).
        amplitudes: (N,) complex amplitudes, carrier phase *not* included.
        shape: (H, W) output pixels (even sizes).
        depression_deg: depression (degrees).
        sensor: pixel spacing and wavelength; MSTAR by default.
        upsample: fine-grid factor.

    Returns:
        complex64 (H, W) ideal (full-band, unweighted) image.
    """
    sensor = sensor or SensorConfig()
    h, w = shape
    psi = math.radians(depression_deg)
    p = np.asarray(xyz_m, dtype=np.float64)
    a = np.asarray(amplitudes).astype(np.complex128)
    slant = p[:, 1] * math.cos(psi) - p[:, 2] * math.sin(psi)
    a = a * np.exp(-1j * (4 * math.pi / sensor.wavelength_m) * slant)
    y_img = p[:, 1] - p[:, 2] * math.tan(psi)
    rows = h // 2 - y_img / sensor.range_spacing_m
    cols = w // 2 + p[:, 0] / sensor.xrange_spacing_m
    fh, fw = upsample * h, upsample * w
    ir = np.rint(rows * upsample).astype(np.int64) % fh
    ic = np.rint(cols * upsample).astype(np.int64) % fw
    flat = ir * fw + ic
    grid = (np.bincount(flat, weights=a.real, minlength=fh * fw)
            + 1j * np.bincount(flat, weights=a.imag, minlength=fh * fw)).reshape(fh, fw)
    kc = np.r_[0:w // 2, fw - w // 2:fw]
    kr = np.r_[0:h // 2, fh - h // 2:fh]
    spec = np.fft.fft(grid.astype(np.complex64), axis=1)[:, kc]
    spec = np.fft.fft(spec, axis=0)[kr, :]
    return np.fft.ifft2(spec).astype(np.complex64)
