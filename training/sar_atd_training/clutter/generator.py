"""Synthetic MSTAR-like clutter scenes: fields, tree lines, forest, buildings, roads, fences.

The generator is the embedded default background for users without MSTAR clutter files. It
builds an *ideal* (full-band) complex reflectivity field on the MSTAR pixel grid and renders
it with the same sensor model as the targets (:func:`sar_atd.sar.sensor.apply_sensor_function`),
so speckle correlation, point-scatterer responses and sidelobes match the target signatures.

Scene model (conventions of :mod:`sar_atd.sar.sensor`: radar at the bottom, rows grow toward
the sensor; a height ``h`` casts a shadow ``h / tan(psi)`` metres *up* the image and lays over
``h * tan(psi)`` metres *down*):

* **Fields / grass**: a Voronoi tessellation into fields, each with its own mean reflectivity
  (dB offset around the grass level); fully developed speckle (Rayleigh amplitude). The grass
  level is calibrated on real MSTAR clutter: median amplitude 0.032 (measured on the real
  MSTAR file ``fixtures/HB14931.015``), i.e. mean power ``0.032**2 / ln 2``.
* **Tree lines and forest patches**: canopy with a spatially correlated gamma texture (so the
  amplitude is K-distributed), varying crown heights (internal shadows), a bright lit edge on
  the sensor side (bottom) and a shadow on the far side (up) cast from the height map.
* **Buildings**: (rotated) rectangular footprints; the ground under the building is hidden, the
  roof is laid over toward the sensor, the sensor-facing wall gives a bright layover band and a
  dihedral line of strong point scatterers at its foot (strongest for walls facing the radar),
  and the building casts a shadow behind it.
* **Roads / tracks**: dark (low-reflectivity) polylines.
* **Fences and poles**: lines of bright posts and isolated bright points (with thin shadows);
  sparse "discretes" (rocks, debris) as weaker isolated points.
* **Thermal noise floor**: added everywhere (it is what fills shadows).

Counts of objects are given for the default MSTAR clutter scene size (1784 rows x 1478 columns,
about 360 m x 300 m) and scale with the scene area (Poisson draws).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
from scipy import ndimage, special
from scipy.spatial import cKDTree

from sar_atd.config import check_range
from sar_atd.errors import SarAtdError
from sar_atd.sar.sensor import SensorConfig, apply_sensor_function, noise_power_gain

LOG = logging.getLogger(__name__)

MSTAR_CLUTTER_SHAPE = (1784, 1478)
"""(rows, cols) of an MSTAR clutter scene (DESIGN.md section 2: about 1478 x 1784)."""

GRASS_MEDIAN_AMPLITUDE = 0.032
"""Median clutter magnitude measured on the real MSTAR file ``HB14931.015``."""

MIN_SCENE_SIDE = 16
MAX_SCENE_SIDE = 8192
"""Accepted scene sides (pixels), checked before anything is allocated: a scene holds a
dozen float32/complex64 (H, W) layers while it is built, several GiB at the maximum."""

SCENE_MEDIAN_RANGE = (0.125, 8.0)
"""Accepted median amplitude of a generated scene, in multiples of the configured
``grass_median_amplitude`` (the default recipe gives ~0.7: roads and shadows are darker,
forests brighter). Outside it the scene is wrong (e.g. a failed FFT) and is refused."""


class ClutterStatisticsError(SarAtdError, RuntimeError):
    """A generated scene is outside its calibrated statistics (non-finite or wrong level)."""


def check_scene_statistics(scene: np.ndarray, cfg: ClutterConfig, seed: int = 0) -> float:
    """Refuse a generated scene whose amplitude statistics are off calibration.

    Args:
        scene: complex64 (H, W) scene from :func:`generate_scene`.
        cfg: the configuration it was generated with.
        seed: its seed (named in the error).

    Returns:
        The scene's median amplitude.

    Raises:
        ClutterStatisticsError: non-finite pixels, or a median amplitude outside
            :data:`SCENE_MEDIAN_RANGE` times ``cfg.grass_median_amplitude``.
    """
    what = f"clutter scene {scene.shape[0]}x{scene.shape[1]} seed {seed}"
    n_bad = int(scene.size - np.count_nonzero(np.isfinite(scene)))
    if n_bad:
        raise ClutterStatisticsError(f"{what}: {n_bad} non-finite pixels")
    median = float(np.median(np.abs(scene)))
    lo, hi = (f * cfg.grass_median_amplitude for f in SCENE_MEDIAN_RANGE)
    if not lo <= median <= hi:
        raise ClutterStatisticsError(
            f"{what}: median amplitude {median:.3g} is outside the calibrated range "
            f"[{lo:.3g}, {hi:.3g}] (grass level {cfg.grass_median_amplitude}); "
            "the scene is not written")
    return median


@dataclass(frozen=True)
class FieldsConfig:
    """Fields / grass parcels (Voronoi cells), Rayleigh speckle."""

    count: float = 10.0
    """Mean number of fields in a default-size scene."""
    offset_db: tuple[float, float] = (-3.0, 3.0)
    """Mean power of each field relative to the grass level (dB); one field is at 0 dB."""
    texture_shape: tuple[float, float] = (4.0, 12.0)
    """Gamma shape ``nu`` of a mild per-field texture (K-distributed grass, as measured on real
    MSTAR clutter: amplitude CV ~0.6 rather than Rayleigh 0.52); (0, 0) for pure Rayleigh."""
    texture_corr_m: float = 1.0
    """Correlation scale of the field texture (m)."""
    edge_prob: float = 0.4
    """Probability that a boundary between two fields carries a slightly brighter edge
    (hedge bank, ditch) of ``edge_gain_db``."""
    edge_gain_db: float = 5.0
    edge_width_m: float = 1.0


@dataclass(frozen=True)
class TreesConfig:
    """Tree lines and forest patches: K-distributed canopy with lit edges and shadows."""

    treelines: float = 2.5
    """Mean number of tree lines (random polylines) in a default-size scene."""
    forests: float = 1.5
    """Mean number of forest patches in a default-size scene."""
    treeline_width_m: tuple[float, float] = (4.0, 12.0)
    forest_radius_m: tuple[float, float] = (15.0, 50.0)
    height_m: tuple[float, float] = (6.0, 16.0)
    """Range of the base height of each tree stand (m)."""
    crown_height_std_m: float = 0.8
    """Crown-to-crown height variation (m); gives the canopy its small internal shadows."""
    canopy_gain_db: tuple[float, float] = (6.0, 10.0)
    """Canopy mean power above the grass level (dB)."""
    texture_shape: tuple[float, float] = (1.0, 4.0)
    """Gamma shape ``nu`` of the canopy texture (K-distribution order; smaller = spikier)."""
    crown_m: float = 2.0
    """Correlation scale of the texture and of the crown heights (m)."""
    lit_edge_m: float = 2.5
    """Depth of the bright sensor-side edge (m)."""
    lit_edge_gain_db: float = 6.0


@dataclass(frozen=True)
class BuildingsConfig:
    """Buildings: hidden ground, laid-over roof, bright wall + dihedral, shadow."""

    count: float = 6.0
    """Mean number of buildings in a default-size scene (placed in 1-2 clusters)."""
    length_m: tuple[float, float] = (8.0, 25.0)
    width_m: tuple[float, float] = (6.0, 15.0)
    height_m: tuple[float, float] = (4.0, 10.0)
    rotation_deg: tuple[float, float] = (-30.0, 30.0)
    roof_gain_db: tuple[float, float] = (-6.0, 6.0)
    wall_gain_db: float = 10.0
    dihedral_amplitude: tuple[float, float] = (0.5, 3.0)
    """Amplitude (sqrt RCS, m) of each dihedral point scatterer along a wall facing the radar."""


@dataclass(frozen=True)
class RoadsConfig:
    """Roads (smooth, dark) and tracks (narrower, less dark)."""

    roads: float = 0.8
    tracks: float = 1.5
    road_width_m: tuple[float, float] = (4.0, 8.0)
    track_width_m: tuple[float, float] = (2.0, 3.5)
    road_gain_db: float = -12.0
    track_gain_db: float = -6.0


@dataclass(frozen=True)
class PointsConfig:
    """Fences (lines of posts), poles and discretes (isolated point scatterers)."""

    fences: float = 3.0
    fence_length_m: tuple[float, float] = (30.0, 150.0)
    post_spacing_m: tuple[float, float] = (2.0, 4.0)
    post_amplitude: tuple[float, float] = (0.1, 0.6)
    poles: float = 8.0
    pole_amplitude: tuple[float, float] = (0.3, 2.0)
    pole_height_m: tuple[float, float] = (5.0, 12.0)
    discretes: float = 60.0
    discrete_amplitude: tuple[float, float] = (0.05, 0.3)


@dataclass(frozen=True)
class ClutterConfig:
    """All parameters of :func:`generate_scene` (YAML-loadable with ``sar_atd.config``).

    Counts are means for a default-size scene (1784 x 1478) and scale with the area.
    """

    height: int = MSTAR_CLUTTER_SHAPE[0]
    """Rows (range), pixels."""
    width: int = MSTAR_CLUTTER_SHAPE[1]
    """Columns (cross-range), pixels."""
    depression_deg: float = 17.0
    grass_median_amplitude: float = GRASS_MEDIAN_AMPLITUDE
    noise_floor_db: float = -36.0
    """Thermal noise power per pixel (dB re unit amplitude squared); fills shadows."""
    range_res_m: float = 0.3047
    xrange_res_m: float = 0.3047
    fields: FieldsConfig = field(default_factory=FieldsConfig)
    trees: TreesConfig = field(default_factory=TreesConfig)
    buildings: BuildingsConfig = field(default_factory=BuildingsConfig)
    roads: RoadsConfig = field(default_factory=RoadsConfig)
    points: PointsConfig = field(default_factory=PointsConfig)

    def __post_init__(self) -> None:
        lo, hi = MIN_SCENE_SIDE, MAX_SCENE_SIDE
        if not (lo <= self.height <= hi and lo <= self.width <= hi):
            raise ValueError(f"scene size must be between {lo} x {lo} and {hi} x {hi} "
                             f"pixels, got {self.height} x {self.width}")
        if not 0.0 < self.depression_deg < 90.0:
            raise ValueError(f"depression_deg must be in (0, 90), got {self.depression_deg}")
        if not self.grass_median_amplitude > 0:
            raise ValueError("grass_median_amplitude must be > 0, got "
                             f"{self.grass_median_amplitude}")
        for cfg in (self.fields, self.trees, self.buildings, self.roads, self.points):
            for name, value in vars(cfg).items():
                if isinstance(value, tuple):
                    check_range(f"{type(cfg).__name__}.{name}", value)
                elif isinstance(value, float) and name in ("count", "treelines", "forests",
                                                           "roads", "tracks", "fences",
                                                           "poles", "discretes"):
                    if value < 0:
                        raise ValueError(f"{type(cfg).__name__}.{name} must be >= 0, "
                                         f"got {value}")


# --------------------------------------------------------------------------- helpers
class _Scene:
    """Mutable layers of a scene being built (all (H, W) float32 / bool numpy arrays)."""

    def __init__(self, cfg: ClutterConfig, sensor: SensorConfig) -> None:
        self.cfg = cfg
        self.h, self.w = cfg.height, cfg.width
        self.dy = sensor.range_spacing_m
        self.dx = sensor.xrange_spacing_m
        self.grass_power = cfg.grass_median_amplitude**2 / math.log(2.0)
        self.power = np.full((self.h, self.w), self.grass_power, np.float32)  # mean power
        self.texture = np.ones((self.h, self.w), np.float32)
        self.height_m = np.zeros((self.h, self.w), np.float32)  # shadow-casting heights
        self.hidden = np.zeros((self.h, self.w), bool)  # ground hidden under buildings
        self.layers: dict[str, np.ndarray] = {
            k: np.zeros((self.h, self.w), bool)
            for k in ("field", "road", "canopy", "building", "shadow", "point")
        }
        self.points_rc: list[np.ndarray] = []  # (N, 2) float rows/cols
        self.points_amp: list[np.ndarray] = []  # (N,) float amplitudes
        # buildings drawn after shadowing: (roof mask, roof power, wall mask, wall power)
        self.pending: list[tuple[np.ndarray, float, np.ndarray, float]] = []
        self.area_scale = (self.h * self.w) / float(MSTAR_CLUTTER_SHAPE[0] * MSTAR_CLUTTER_SHAPE[1])

    def m2px(self, metres: float) -> float:
        return metres / (0.5 * (self.dx + self.dy))

    def add_points(self, rc: np.ndarray, amp: np.ndarray) -> None:
        if len(rc):
            self.points_rc.append(np.asarray(rc, np.float64).reshape(-1, 2))
            self.points_amp.append(np.asarray(amp, np.float64).reshape(-1))


def _count(rng: np.random.Generator, mean: float, scale: float) -> int:
    return int(rng.poisson(mean * scale)) if mean > 0 else 0


def _uniform(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def _random_polyline(rng: np.random.Generator, h: int, w: int, n_vertices: int,
                     length_px: float | None = None) -> np.ndarray:
    """(N, 2) int32 (x, y) vertices of a gently bending polyline (cv2 point order)."""
    if length_px is None:  # across the scene: start on one border, cross it
        if rng.random() < 0.5:
            start = np.array([rng.uniform(0, w), -10.0])
            end = np.array([rng.uniform(0, w), h + 10.0])
        else:
            start = np.array([-10.0, rng.uniform(0, h)])
            end = np.array([w + 10.0, rng.uniform(0, h)])
    else:
        start = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        ang = rng.uniform(0, 2 * math.pi)
        end = start + length_px * np.array([math.cos(ang), math.sin(ang)])
    t = np.linspace(0.0, 1.0, n_vertices)[:, None]
    pts = start + t * (end - start)
    normal = np.array([-(end - start)[1], (end - start)[0]])
    normal /= np.linalg.norm(normal) + 1e-9
    seg = np.linalg.norm(end - start) / max(n_vertices - 1, 1)
    jitter = rng.normal(0.0, 0.15 * seg, size=(n_vertices, 1))
    jitter[0] = jitter[-1] = 0.0
    pts = pts + jitter * normal
    return np.round(pts).astype(np.int32)


def _correlated_gamma(rng: np.random.Generator, shape: tuple[int, int], nu: float,
                      corr_px: float) -> np.ndarray:
    """Unit-mean gamma(nu) texture, spatially correlated over ``corr_px`` pixels (float32)."""
    step = max(1, int(corr_px // 2))
    small = (max(2, shape[0] // step + 2), max(2, shape[1] // step + 2))
    g = ndimage.gaussian_filter(rng.standard_normal(small), sigma=max(corr_px / step / 2, 0.5))
    g = (g - g.mean()) / (g.std() + 1e-12)
    u = np.clip(special.ndtr(g), 1e-6, 1 - 1e-6)
    tex_small = special.gammaincinv(nu, u) / nu
    tex = cv2.resize(tex_small.astype(np.float32), (small[1] * step, small[0] * step),
                     interpolation=cv2.INTER_LINEAR)
    return np.maximum(tex[: shape[0], : shape[1]], 1e-3).astype(np.float32)


def _rayleigh_fields(s: _Scene, rng: np.random.Generator) -> None:
    cfg = s.cfg.fields
    n = max(1, _count(rng, cfg.count, s.area_scale))
    seeds = np.stack([rng.uniform(0, s.h, n), rng.uniform(0, s.w, n)], axis=1)
    step = 2
    rr, cc = np.mgrid[0:s.h:step, 0:s.w:step]
    _, lab = cKDTree(seeds).query(np.stack([rr.ravel(), cc.ravel()], 1))
    lab = lab.reshape(rr.shape).astype(np.int32)
    lab = np.repeat(np.repeat(lab, step, 0), step, 1)[: s.h, : s.w]
    offsets = rng.uniform(cfg.offset_db[0], cfg.offset_db[1], n)
    offsets[0] = 0.0  # the calibrated grass level is always present
    s.power *= (10.0 ** (offsets[lab] / 10.0)).astype(np.float32)
    s.layers["field"][:] = True
    if cfg.texture_shape[1] > 0:
        nu = rng.uniform(max(cfg.texture_shape[0], 0.1), cfg.texture_shape[1], n)
        corr = s.m2px(cfg.texture_corr_m)
        for nu_i in np.unique(np.round(nu, 1)):  # one texture per distinct order
            sel = np.round(nu, 1)[lab] == nu_i
            s.texture[sel] = _correlated_gamma(rng, (s.h, s.w), float(nu_i), corr)[sel]
    # field edges: boundaries between cells, a random subset brighter
    edge = np.zeros_like(s.layers["field"])
    edge[:-1] |= lab[:-1] != lab[1:]
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    if edge.any() and cfg.edge_prob > 0:
        keep = rng.random(n) < cfg.edge_prob
        edge &= keep[lab]
        r = max(0, int(round(s.m2px(cfg.edge_width_m) / 2)))
        if r:
            edge = ndimage.binary_dilation(edge, iterations=r)
        s.power[edge] *= 10.0 ** (cfg.edge_gain_db / 10.0)


def _roads(s: _Scene, rng: np.random.Generator) -> None:
    cfg = s.cfg.roads
    for _kind, count, width, gain in (("road", cfg.roads, cfg.road_width_m, cfg.road_gain_db),
                                     ("track", cfg.tracks, cfg.track_width_m,
                                      cfg.track_gain_db)):
        for _ in range(_count(rng, count, math.sqrt(s.area_scale))):
            pts = _random_polyline(rng, s.h, s.w, int(rng.integers(2, 6)))
            m = np.zeros((s.h, s.w), np.uint8)
            cv2.polylines(m, [pts], False, 1, thickness=max(1, int(round(s.m2px(
                _uniform(rng, width))))))
            mb = m.astype(bool)
            s.power[mb] = s.grass_power * 10.0 ** (gain / 10.0)
            s.texture[mb] = 1.0
            s.height_m[mb] = 0.0
            s.layers["road"] |= mb
            for other in ("field", "canopy"):
                s.layers[other] &= ~mb


def _canopy(s: _Scene, rng: np.random.Generator) -> None:
    cfg = s.cfg.trees
    mask = np.zeros((s.h, s.w), np.uint8)
    for _ in range(_count(rng, cfg.treelines, math.sqrt(s.area_scale))):
        pts = _random_polyline(rng, s.h, s.w, int(rng.integers(2, 5)))
        cv2.polylines(mask, [pts], False, 1,
                      thickness=max(2, int(round(s.m2px(_uniform(rng, cfg.treeline_width_m))))))
    for _ in range(_count(rng, cfg.forests, s.area_scale)):
        rad = s.m2px(_uniform(rng, cfg.forest_radius_m))
        cy, cx = rng.uniform(0, s.h), rng.uniform(0, s.w)
        y0, y1 = int(max(0, cy - 1.6 * rad)), int(min(s.h, cy + 1.6 * rad + 1))
        x0, x1 = int(max(0, cx - 1.6 * rad)), int(min(s.w, cx + 1.6 * rad + 1))
        if y1 <= y0 or x1 <= x0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        ang = rng.uniform(0, math.pi)
        ax = rng.uniform(0.6, 1.0)
        u = ((xx - cx) * math.cos(ang) + (yy - cy) * math.sin(ang)) / rad
        v = (-(xx - cx) * math.sin(ang) + (yy - cy) * math.cos(ang)) / (rad * ax)
        noise = ndimage.gaussian_filter(rng.standard_normal(yy.shape), sigma=max(rad / 5, 1))
        noise /= noise.std() + 1e-9
        blob = (u**2 + v**2) < 1.0 + 0.35 * noise
        mask[y0:y1, x0:x1] |= blob.astype(np.uint8)
    canopy = mask.astype(bool)
    if not canopy.any():
        return
    crown_px = s.m2px(cfg.crown_m)
    # per stand (connected component) a base height, plus crown-to-crown variation
    labels, n_stands = ndimage.label(canopy)
    base = rng.uniform(cfg.height_m[0], cfg.height_m[1], n_stands + 1).astype(np.float32)
    crowns = ndimage.gaussian_filter(rng.standard_normal((s.h, s.w)).astype(np.float32),
                                     sigma=crown_px)
    crowns *= cfg.crown_height_std_m / (crowns.std() + 1e-9)
    heights = np.maximum(base[labels] + crowns, 1.0)
    s.height_m = np.where(canopy, np.maximum(s.height_m, heights), s.height_m)
    nu = _uniform(rng, cfg.texture_shape)
    tex = _correlated_gamma(rng, (s.h, s.w), nu, crown_px)
    gain = 10.0 ** (_uniform(rng, cfg.canopy_gain_db) / 10.0)
    s.power[canopy] = s.grass_power * gain
    s.texture[canopy] = tex[canopy]
    # lit edge: canopy pixels with open ground within lit_edge_m toward the sensor (below)
    d = max(1, int(round(cfg.lit_edge_m / s.dy)))
    below_open = np.zeros_like(canopy)
    for k in range(1, d + 1):
        below_open[:-k] |= ~canopy[k:]
    lit = canopy & below_open
    s.power[lit] *= 10.0 ** (cfg.lit_edge_gain_db / 10.0)
    s.layers["canopy"] |= canopy
    s.layers["field"] &= ~canopy


def _buildings(s: _Scene, rng: np.random.Generator) -> None:
    cfg = s.cfg.buildings
    n = _count(rng, cfg.count, s.area_scale)
    if n == 0:
        return
    tan_psi = math.tan(math.radians(s.cfg.depression_deg))
    n_clusters = int(rng.integers(1, 3))
    centres = np.stack([rng.uniform(0.1 * s.h, 0.9 * s.h, n_clusters),
                        rng.uniform(0.1 * s.w, 0.9 * s.w, n_clusters)], 1)
    for _ in range(n):
        c = centres[rng.integers(n_clusters)] + rng.normal(0, s.m2px(30.0), 2)
        length = s.m2px(_uniform(rng, cfg.length_m))
        width = s.m2px(_uniform(rng, cfg.width_m))
        hgt = _uniform(rng, cfg.height_m)
        rot = math.radians(_uniform(rng, cfg.rotation_deg))
        if rng.random() < 0.5:
            rot += math.pi / 2
        rect = ((float(c[1]), float(c[0])), (float(length), float(width)), math.degrees(rot))
        box = np.round(cv2.boxPoints(rect)).astype(np.int32)
        fp = np.zeros((s.h, s.w), np.uint8)
        cv2.fillPoly(fp, [box], 1)
        foot = fp.astype(bool)
        if not foot.any():
            continue
        lay_px = int(round(hgt * tan_psi / s.dy))
        # hidden ground under the building: dark (noise only)
        s.hidden |= foot
        s.height_m[foot] = np.maximum(s.height_m[foot], hgt)
        # sensor-facing wall foot: footprint pixels whose lower neighbour is outside
        near = foot.copy()
        near[:-1] &= ~foot[1:]
        # wall orientation: facing the radar (bottom) when the edge runs along columns
        rows, cols = np.nonzero(near)
        edge_dir = abs(math.cos(rot)) if length >= width else abs(math.sin(rot))
        facing = max(abs(math.cos(rot)), abs(math.sin(rot)))  # 1 for axis-aligned walls
        amp_scale = facing**8 * (0.5 + 0.5 * edge_dir)
        amps = rng.uniform(cfg.dihedral_amplitude[0], cfg.dihedral_amplitude[1],
                           rows.size) * amp_scale
        s.add_points(np.stack([rows + 0.5, cols + 0.5], 1), amps)
        # roof laid over toward the sensor; wall layover band between foot and roof
        roof = np.zeros_like(foot)
        if lay_px < s.h:
            roof[lay_px:] = foot[: s.h - lay_px]
        wall = np.zeros_like(foot)
        for k in range(1, min(lay_px, s.h - 1) + 1):
            wall[k:] |= near[:-k]
        roof_power = s.grass_power * 10.0 ** (_uniform(rng, cfg.roof_gain_db) / 10.0)
        s.layers["building"] |= foot | roof | wall
        s.layers["field"] &= ~(foot | roof | wall)
        s.pending.append((roof, roof_power, wall,
                           s.grass_power * 10.0 ** (cfg.wall_gain_db / 10.0)))


def _points(s: _Scene, rng: np.random.Generator) -> None:
    cfg = s.cfg.points
    for _ in range(_count(rng, cfg.fences, math.sqrt(s.area_scale))):
        length = s.m2px(_uniform(rng, cfg.fence_length_m))
        pts = _random_polyline(rng, s.h, s.w, 2, length_px=length).astype(np.float64)
        spacing = s.m2px(_uniform(rng, cfg.post_spacing_m))
        n_posts = max(2, int(length / max(spacing, 1.0)))
        t = np.linspace(0, 1, n_posts)[:, None]
        xy = pts[0] + t * (pts[1] - pts[0])
        rc = xy[:, ::-1]
        ok = (rc[:, 0] >= 0) & (rc[:, 0] < s.h) & (rc[:, 1] >= 0) & (rc[:, 1] < s.w)
        amps = rng.uniform(*cfg.post_amplitude, n_posts)
        s.add_points(rc[ok], amps[ok])
    n_poles = _count(rng, cfg.poles, s.area_scale)
    if n_poles:
        rc = np.stack([rng.uniform(0, s.h, n_poles), rng.uniform(0, s.w, n_poles)], 1)
        s.add_points(rc, rng.uniform(*cfg.pole_amplitude, n_poles))
        ri, ci = rc.astype(int).T
        s.height_m[ri, ci] = np.maximum(s.height_m[ri, ci],
                                        rng.uniform(*cfg.pole_height_m, n_poles))
    n_disc = _count(rng, cfg.discretes, s.area_scale)
    if n_disc:
        rc = np.stack([rng.uniform(0, s.h, n_disc), rng.uniform(0, s.w, n_disc)], 1)
        s.add_points(rc, rng.uniform(*cfg.discrete_amplitude, n_disc))


def cast_shadows(height_m: np.ndarray, depression_deg: float, range_spacing_m: float
                 ) -> np.ndarray:
    """Ground shadow of a height map, radar at the bottom (rows grow toward the sensor).

    A pixel is shadowed when a ray toward the sensor is blocked: some pixel ``k`` rows closer to
    the sensor has height above ``k * dy * tan(psi)`` plus the pixel's own height.

    Args:
        height_m: float (H, W) heights (m), 0 on open ground.
        depression_deg: depression angle (degrees).
        range_spacing_m: row spacing (m).

    Returns:
        bool (H, W), True in shadow.
    """
    step = range_spacing_m * math.tan(math.radians(depression_deg))
    h = height_m.shape[0]
    shadow = np.zeros(height_m.shape, bool)
    horizon = np.full(height_m.shape[1], -np.inf, np.float32)
    for r in range(h - 1, -1, -1):
        horizon = horizon - step
        shadow[r] = horizon > height_m[r] + 1e-3
        np.maximum(horizon, height_m[r], out=horizon)
    return shadow


def generate_scene(config: ClutterConfig | None = None, seed: int = 0, *,
                   sensor: SensorConfig | None = None, return_layers: bool = False
                   ) -> Any:
    """Generate a calibrated complex clutter scene at MSTAR pixel spacing.

    Args:
        config: scene parameters; defaults to :class:`ClutterConfig` (1784 x 1478 pixels).
        seed: random seed; the same seed and config give the identical scene.
        sensor: pixel spacing and window; defaults to the MSTAR sensor.
        return_layers: also return the bool (H, W) layer masks ``field``, ``road``,
            ``canopy``, ``building``, ``shadow``, ``point`` (for tests and realism checks).

    Returns:
        complex64 numpy (H, W) calibrated amplitudes (sqrt RCS per pixel), or
        ``(scene, layers)`` when ``return_layers``.
    """
    cfg = config or ClutterConfig()
    sensor = sensor or SensorConfig()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5A7C]))
    s = _Scene(cfg, sensor)
    _rayleigh_fields(s, rng)
    _canopy(s, rng)
    _roads(s, rng)
    _buildings(s, rng)
    _points(s, rng)
    shadow = cast_shadows(s.height_m, cfg.depression_deg, s.dy)
    dark = shadow | s.hidden
    s.power[dark] = 0.0
    for roof, roof_power, wall, wall_power in s.pending:
        s.power[roof] = roof_power
        s.texture[roof] = 1.0
        s.power[wall] = np.maximum(s.power[wall], wall_power)
        dark &= ~(roof | wall)
    s.layers["shadow"] = dark & ~s.layers["building"]
    for key in ("field", "canopy", "road"):
        s.layers[key] &= ~(dark | s.layers["building"])
    s.power += np.float32(10.0 ** (cfg.noise_floor_db / 10.0))
    # ideal full-band field: pre-compensate the sensor function's white-noise power gain
    gain = noise_power_gain((s.h, s.w), sensor, cfg.range_res_m, cfg.xrange_res_m)
    std = np.sqrt(s.power * s.texture / (2.0 * gain)).astype(np.float32)
    ideal = torch.complex(torch.from_numpy(rng.standard_normal((s.h, s.w), np.float32) * std),
                          torch.from_numpy(rng.standard_normal((s.h, s.w), np.float32) * std))
    if s.points_rc:
        rc = np.concatenate(s.points_rc)
        amp = np.concatenate(s.points_amp)
        ri = np.clip(rc[:, 0].astype(int), 0, s.h - 1)
        ci = np.clip(rc[:, 1].astype(int), 0, s.w - 1)
        phase = rng.uniform(0, 2 * math.pi, amp.size)
        vals = torch.from_numpy((amp * np.exp(1j * phase)).astype(np.complex64))
        ideal.index_put_((torch.from_numpy(ri), torch.from_numpy(ci)), vals, accumulate=True)
        s.layers["point"][ri, ci] = True
    scene = apply_sensor_function(ideal, sensor, cfg.range_res_m, cfg.xrange_res_m)
    out = scene.numpy().astype(np.complex64)
    check_scene_statistics(out, cfg, seed)
    LOG.debug("generated clutter scene %dx%d seed=%d", s.h, s.w, seed)
    return (out, s.layers) if return_layers else out
