"""Render one target signature: visibility, shadow, scattering, image formation.

Geometry conventions are those of :mod:`sar_atd.sar.sensor` (radar at the bottom of the
image, rows grow toward the sensor, scene ``y`` away from the sensor) and
:mod:`sar_atd_training.simulator.geometry` (azimuth 0: vehicle front toward the top of the
image / away from the sensor, increasing counter-clockwise seen from above).

Occlusion and shadow are ray casts from the sensor direction done with a z-buffer in the
sensor frame (cells of 0.1 m across the line of sight): a facet is visible when nothing in
its cell is nearer the sensor; a ground point is in shadow when something in its cell is.
Layover comes from the image formation (height ``z`` shifts toward the sensor by
``z tan(psi)``); shadows extend away from the sensor (up the image) by ``h / tan(psi)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from sar_atd.sar.sensor import SensorConfig
from sar_atd_training.simulator import scattering as sc
from sar_atd_training.simulator.geometry import Facets, ZBuffer, model_to_scene_rotation
from sar_atd_training.simulator.models import (
    MATERIAL_NAMES,
    MATERIALS,
    articulated_corners,
    articulated_edges,
    articulated_facets,
    articulated_fittings,
    build_model,
    check_name,
    random_articulation,
)

CHIP_SHAPE = (128, 128)
MECHANISMS = ("specular", "diffuse", "dihedral", "trihedral", "edge", "fitting", "volume")

_REFL = np.array([MATERIALS[n].reflectivity for n in MATERIAL_NAMES])
_RMS = np.array([MATERIALS[n].rms_height_m for n in MATERIAL_NAMES])
_SIGMA0 = np.array([MATERIALS[n].sigma0 for n in MATERIAL_NAMES])


@dataclass
class SceneObject:
    """Everything the renderer needs about one object, in its model frame.

    Attributes:
        facets: surface facets.
        corners: (positions (K, 3), unit axes (K, 3), sizes (K,)) trihedral corners.
        edges: (positions (E, 3), directions (E, 3), lengths (E,), coefficients (E,), face
            normals (E, 3), outward in-face directions (E, 3)); see
            :func:`~sar_atd_training.simulator.models.model_edges`.
        fittings: (positions (F, 3), axes (F, 3), sizes (F,), kinds (F,)) small features and
            gun-tube ring steps (see :func:`scattering.fittings`).
        volume: (centre (3,), radii (3,), coefficient) of a foliage volume, or None.
        edge_model: edge diffraction model, one of ``scattering.EDGE_MODELS``.
    """

    facets: Facets
    corners: tuple[np.ndarray, np.ndarray, np.ndarray] = field(
        default_factory=lambda: (np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0)))
    edges: tuple[np.ndarray, ...] = field(
        default_factory=lambda: (np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros(0),
                                 np.zeros((0, 3)), np.zeros((0, 3))))
    volume: tuple[np.ndarray, np.ndarray, float] | None = None
    edge_model: str = "isotropic"
    fittings: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] = field(
        default_factory=lambda: (np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0),
                                 np.zeros(0, np.int8)))


@dataclass
class RenderResult:
    """Output of :func:`render_object`.

    Attributes:
        signature: complex64 (H, W) ideal (full-band) target-only image.
        shadow: bool (H, W) ground in the object's shadow (occluded from the sensor).
        support: bool (H, W) pixels covered by the visible, laid-over object.
        offset_m: (x, y) scene position of the model origin (after centring).
        n_visible: number of visible facets.
    """

    signature: np.ndarray
    shadow: np.ndarray
    support: np.ndarray
    offset_m: tuple[float, float]
    n_visible: int


def check_angles(azimuth_deg: float, depression_deg: float) -> None:
    """Raise ValueError for non-finite angles or a depression outside (0, 90) degrees."""
    if not math.isfinite(azimuth_deg):
        raise ValueError(f"azimuth_deg must be finite, got {azimuth_deg}")
    if not (math.isfinite(depression_deg) and 0.0 < depression_deg < 90.0):
        raise ValueError(f"depression_deg must be in (0, 90) degrees, got {depression_deg}")


def scene_object(name: str, articulation: dict[str, float] | None = None,
                 edge_model: str = "isotropic") -> SceneObject:
    """The :class:`SceneObject` of a named model with the given joint values and edge
    diffraction model (``scattering.EDGE_MODELS``)."""
    model = build_model(name)
    vol = None
    if model.volume is not None:
        c, r = model.volume
        vol = (np.array(c), np.array(r), MATERIALS["foliage"].volume)
    return SceneObject(articulated_facets(name, articulation),
                       articulated_corners(name, articulation),
                       articulated_edges(name, articulation, edge_model), vol,
                       edge_model, articulated_fittings(name, articulation))


def _centring_shift(centre: np.ndarray, depression_deg: float, shape: tuple[int, int],
                    sensor: SensorConfig, margin_m: float = 0.6) -> float:
    """Ground-range shift (m) keeping the model origin centred while the laid-over object
    and its shadow fit in the chip (the near, target side has priority)."""
    psi = math.radians(depression_deg)
    half = shape[0] // 2 * sensor.range_spacing_m - margin_m
    near = float(np.min(centre[:, 1] - centre[:, 2] * math.tan(psi)))
    far = float(np.max(centre[:, 1] + centre[:, 2] / math.tan(psi)))
    shift = 0.0
    if far - shift > half:
        shift = far - half
    if near - shift < -half:
        shift = near + half
    return shift


def render_object(obj: SceneObject, azimuth_deg: float, depression_deg: float,
                  rng: np.random.Generator, shape: tuple[int, int] = CHIP_SHAPE,
                  sensor: SensorConfig | None = None,
                  mechanisms: tuple[str, ...] = MECHANISMS, centre: bool = True
                  ) -> RenderResult:
    """Render an object's ideal signature, shadow and support at one aspect.

    Args:
        obj: the object in its model frame.
        azimuth_deg: aspect (see module doc).
        depression_deg: depression in (0, 90) degrees.
        rng: random generator (roughness phases, diffuse and volume scatterers).
        shape: chip (H, W).
        sensor: sensor (pixel spacing, wavelength).
        mechanisms: scattering mechanisms to include (subset of :data:`MECHANISMS`).
        centre: shift in ground range so that the object and its shadow fit in the chip.
    """
    check_angles(azimuth_deg, depression_deg)
    bad = set(mechanisms) - set(MECHANISMS)
    if bad:
        raise ValueError(f"unknown mechanisms {sorted(bad)}: expected some of {MECHANISMS}")
    sensor = sensor or SensorConfig()
    lam = sensor.wavelength_m
    psi = math.radians(depression_deg)
    rot = model_to_scene_rotation(azimuth_deg)
    f = obj.facets.transformed(rot, np.zeros(3))
    dy = _centring_shift(f.centre, depression_deg, shape, sensor) if centre else 0.0
    shift = np.array([0.0, -dy, 0.0])
    f.centre = f.centre + shift
    s = sc.line_of_sight(depression_deg)

    zb = ZBuffer.build(f.centre, depression_deg)
    facing = (f.normal @ s) > 0.0
    vis = facing & zb.visible(f.centre, depression_deg)
    mat = f.material[vis]
    c, n = f.centre[vis], f.normal[vis]
    pts: list[np.ndarray] = []
    amps: list[np.ndarray] = []

    def add(p: np.ndarray, a: np.ndarray) -> None:
        if p.shape[0]:
            pts.append(p)
            amps.append(a)

    if "specular" in mechanisms:
        add(*sc.specular(c, n, f.axis_u[vis], f.axis_v[vis], f.size_u[vis], f.size_v[vis],
                         f.area[vis], _REFL[mat], _RMS[mat], depression_deg, rng, lam))
    if "diffuse" in mechanisms:
        add(*sc.diffuse(c, n, f.area[vis], _SIGMA0[mat], depression_deg, rng))
    if "dihedral" in mechanisms:
        base = f.dihedral_base[vis]
        cand = np.isfinite(base) & (np.abs(n[:, 2]) < 0.26) & (c[:, 2] > base)
        if np.any(cand):
            cc = c[cand]
            bz = base[cand]
            refl_pt = cc.copy()
            refl_pt[:, 1] -= (cc[:, 2] - bz) / math.tan(psi)  # toward the sensor
            refl_pt[:, 2] = bz
            lit = zb.visible(refl_pt, depression_deg, tol_m=0.08)
            mc = mat[cand]
            add(*sc.dihedral(cc, n[cand], f.axis_u[vis][cand], f.axis_v[vis][cand],
                             f.size_u[vis][cand], f.size_v[vis][cand], f.area[vis][cand],
                             _REFL[mc], _RMS[mc], bz, lit, depression_deg, rng, lam))
    if "trihedral" in mechanisms and obj.corners[0].shape[0]:
        cp = obj.corners[0] @ rot.T + shift
        ca = obj.corners[1] @ rot.T
        ok = zb.visible(cp + 0.2 * ca, depression_deg, tol_m=0.25)
        add(*sc.trihedral(cp[ok], ca[ok], obj.corners[2][ok], depression_deg, lam))
    if "edge" in mechanisms and obj.edges[0].shape[0]:
        ep = obj.edges[0] @ rot.T + shift
        ed = obj.edges[1] @ rot.T
        en = obj.edges[4] @ rot.T
        eo = obj.edges[5] @ rot.T
        ok = zb.visible(ep, depression_deg, tol_m=0.15)
        faces = obj.edge_model == "wedge"
        add(*sc.edges(ep[ok], ed[ok], obj.edges[2][ok], obj.edges[3][ok], depression_deg,
                      en[ok] if faces else None, eo[ok] if faces else None))
    if "fitting" in mechanisms and obj.fittings[0].shape[0]:
        fp = obj.fittings[0] @ rot.T + shift
        fa = obj.fittings[1] @ rot.T
        ok = zb.visible(fp, depression_deg, tol_m=0.15)
        add(*sc.fittings(fp[ok], fa[ok], obj.fittings[2][ok], obj.fittings[3][ok],
                         depression_deg, rng, lam))
    if "volume" in mechanisms and obj.volume is not None:
        vc, vr, coef = obj.volume
        add(*sc.volume(rot @ vc + shift, vr, coef, depression_deg, rng))

    h, w = shape
    if pts:
        xyz = np.concatenate(pts)
        amp = np.concatenate(amps) * sc.AMPLITUDE_GAIN
        sig = sc.form_ideal_image(xyz, amp, shape, depression_deg, sensor)
    else:
        sig = np.zeros(shape, np.complex64)

    # shadow: ground points of every pixel, ray cast through the z-buffer
    rows, cols = np.mgrid[0:h, 0:w]
    ground = np.zeros((h * w, 3))
    ground[:, 0] = (cols.ravel() - w // 2) * sensor.xrange_spacing_m
    ground[:, 1] = (h // 2 - rows.ravel()) * sensor.range_spacing_m
    occ, d = zb.lookup(ground, depression_deg)
    shadow = (occ > d + 0.05).reshape(h, w)
    shadow = ndimage.binary_closing(shadow, iterations=1) | shadow

    # support: visible facets at their laid-over pixel
    y_img = c[:, 1] - c[:, 2] * math.tan(psi)
    r = np.floor(h // 2 - y_img / sensor.range_spacing_m + 0.5).astype(np.int64)
    q = np.floor(w // 2 + c[:, 0] / sensor.xrange_spacing_m + 0.5).astype(np.int64)
    inside = (r >= 0) & (r < h) & (q >= 0) & (q < w)
    support = np.zeros(shape, bool)
    support[r[inside], q[inside]] = True
    support = ndimage.binary_closing(support, iterations=1) | support
    return RenderResult(sig, shadow, support, (0.0, -dy), int(vis.sum()))


def simulate_signature(class_name: str, azimuth_deg: float, depression_deg: float, seed: int,
                       articulation: dict[str, float] | None = None,
                       edge_model: str = "isotropic"
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulate one MSTAR-like signature chip of a target (or 'tree' / 'house').

    Args:
        class_name: MSTAR folder name (2S1, BMP2, BRDM_2, BTR70, BTR_60, D7, T62, T72,
            ZIL131, ZSU_23_4) or 'tree' / 'house'.
        azimuth_deg: aspect in degrees; 0 = vehicle front toward the top of the image (away
            from the sensor), increasing counter-clockwise seen from above.
        depression_deg: depression angle in (0, 90) degrees.
        seed: random seed (roughness phases, diffuse speckle, articulation when None).
        articulation: joint values (``turret_yaw_deg``, ``gun_elevation_deg``,
            ``blade_height_m``); None draws them at random from the model's ranges.
        edge_model: edge diffraction model (``scattering.EDGE_MODELS``): ``isotropic``
            (default) or ``wedge`` (lit faces only, weak trailing edges, no faceting edges).

    Returns:
        (signature complex64 (128, 128) ideal full-band calibrated amplitude,
        shadow bool (128, 128), support bool (128, 128)). Deterministic for a seed.

    Raises:
        ValueError: unknown class, bad angles, articulation keys or edge model.
    """
    check_name(class_name)
    check_angles(float(azimuth_deg), float(depression_deg))
    sc.check_edge_model(edge_model)
    rng = np.random.default_rng(seed)
    art = random_articulation(class_name, rng) if articulation is None else articulation
    res = render_object(scene_object(class_name, art, edge_model), float(azimuth_deg),
                        float(depression_deg), rng)
    return res.signature, res.shadow, res.support
