"""3-D models of the ten MSTAR targets and five out-of-distribution objects, from primitives.

The out-of-distribution (OOD) objects are natural and man-made clutter a vehicle detector
must not fire on: a tree and a house (the kinds the detector's hard negatives and the stock
verifier train on, :data:`DEFAULT_OOD_KINDS`) and three kinds of bright man-made clutter
chosen to look like vehicles in SAR (vehicle-sized, steel, strong wall-ground dihedrals or
point-like returns): a 20 ft shipping container, a free-standing brick wall with piers and
a row of steel lamp posts (:data:`OBJECT_NAMES`).

Each model is a list of parts (quad sets in the model frame: ``x`` forward, ``y`` left,
``z`` up, origin on the ground at the footprint centre) with a joint that articulation moves
(turret yaw, gun elevation, blade height). Overall dimensions are the published ones; the
source of each is cited in :data:`DIMENSIONS`. Where a figure could not be found it is
marked *approximate*. Internal proportions (turret size, wheel count and size, deck height)
are approximate, from photographs and the general layout of each vehicle.

Materials are generic EM materials (MOCEM-like): a specular reflectivity (amplitude factor
at normal incidence), an rms surface height (roughness: spreads the specular lobe and feeds
the diffuse term), a diffuse backscatter coefficient ``sigma0`` (linear, at normal
incidence), an edge-diffraction coefficient and, for foliage, a volume coefficient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from sar_atd.sar.chips import MSTAR_CLASSES
from sar_atd_training.simulator.geometry import (
    Facets,
    QuadSet,
    box,
    cylinder,
    ellipsoid,
    hull_profile,
    plate,
    rot_y,
    rot_z,
    sample_quads,
)


# --------------------------------------------------------------------------- materials
@dataclass(frozen=True)
class Material:
    """Generic EM material.

    Attributes:
        reflectivity: specular amplitude reflection factor at normal incidence (0..1).
        rms_height_m: rms surface height (m): random phase of std ``2 k h cos(theta)`` per
            facet, which spreads the specular lobe (roughness).
        sigma0: diffuse backscatter coefficient (linear m^2/m^2) at normal incidence.
        edge: edge-diffraction amplitude per metre of edge (sqrt(m^2)/m).
        volume: volume backscatter per m^3 (foliage), else 0.
    """

    reflectivity: float
    rms_height_m: float
    sigma0: float
    edge: float = 0.0
    volume: float = 0.0


MATERIALS: dict[str, Material] = {
    "armour": Material(0.90, 0.0040, 0.60, 0.35),   # painted steel plates, bolts, fittings
    "track": Material(0.80, 0.0080, 1.00, 0.25),    # steel track links, road wheels
    "rubber": Material(0.45, 0.0040, 0.40, 0.10),   # tyres
    "glass": Material(0.60, 0.0005, 0.05, 0.05),
    "canvas": Material(0.25, 0.0100, 0.90, 0.02),   # tarpaulin over a cargo bed
    "engine": Material(0.90, 0.0100, 1.20, 0.30),   # grilles, exhausts, clutter on decks
    "bark": Material(0.20, 0.0100, 0.10, 0.0),
    "foliage": Material(0.0, 0.0, 0.10, 0.0, 0.25),
    "masonry": Material(0.55, 0.0060, 0.20, 0.15),
    "roof_tile": Material(0.50, 0.0080, 0.35, 0.15),
    "wood": Material(0.35, 0.0050, 0.60, 0.10),
}
MATERIAL_NAMES: tuple[str, ...] = tuple(MATERIALS)
MATERIAL_INDEX: dict[str, int] = {n: i for i, n in enumerate(MATERIAL_NAMES)}


# --------------------------------------------------------------------------- dimensions
@dataclass(frozen=True)
class Dimensions:
    """Published overall size (m) and where it comes from."""

    length_m: float
    width_m: float
    height_m: float
    source: str


DIMENSIONS: dict[str, Dimensions] = {
    "2S1": Dimensions(7.26, 2.85, 2.72,
                      "army-military.com catalogue, 2S1 Gvozdika: length 7.26 m, width 2.85 m, "
                      "height 2.72 m"),
    "BMP2": Dimensions(6.735, 3.15, 2.45,
                       "Wikipedia 'BMP-2' infobox: 6.735 m x 3.15 m x 2.45 m"),
    "BRDM_2": Dimensions(5.75, 2.37, 2.31,
                         "Wikipedia 'BRDM-2' infobox: 5.75 m x 2.37 m x 2.31 m"),
    "BTR70": Dimensions(7.535, 2.80, 2.32,
                        "Wikipedia 'BTR-70' infobox: 7.535 m x 2.80 m x 2.32 m"),
    "BTR_60": Dimensions(7.56, 2.825, 2.31,
                         "Wikipedia 'BTR-60' infobox (BTR-60PB): 7.56 m x 2.825 m x 2.31 m"),
    "D7": Dimensions(5.6, 3.66, 3.1,
                     "approximate: Caterpillar D7 track-type tractor with straight blade; no "
                     "published figure found for the MSTAR vehicle, sizes scaled from "
                     "photographs (blade width ~3.7 m, ROPS height ~3.1 m)"),
    "T62": Dimensions(9.34, 3.30, 2.40,
                      "T-62 specification (gun forward 9.34 m, width 3.30 m, height 2.40 m), "
                      "ghostrecon wiki / Tucson Military Vehicle Museum (30 ft 8 in gun forward)"),
    "T72": Dimensions(9.53, 3.59, 2.23,
                      "Wikipedia 'T-72' infobox: 9.53 m gun forward (6.95 m hull), width "
                      "3.59 m, height 2.23 m"),
    "ZIL131": Dimensions(7.04, 2.50, 2.74,
                         "Wikipedia 'ZIL-131': length 7040 mm, width 8 ft (2.5 m commonly "
                         "quoted), height 9 ft (2.74 m) over the cargo body"),
    "ZSU_23_4": Dimensions(6.53, 3.12, 2.58,
                           "weblio 'ZSU-23-4': length 6.53 m, width 3.12 m (height 3.57 m with "
                           "the radar raised); 2.58 m with the radar stowed is approximate"),
    "tree": Dimensions(3.6, 3.6, 5.5, "generic deciduous tree (chosen size)"),
    "house": Dimensions(8.1, 6.1, 4.7, "generic small country house (chosen size): walls "
                        "7.5 m x 5.5 m x 2.5 m, roof overhang 0.3 m, ridge 4.2 m, chimney 4.7 m"),
    "container": Dimensions(6.058, 2.438, 2.591,
                            "ISO 668 series 1 freight container type 1CC (20 ft x 8 ft x "
                            "8 ft 6 in): external 6.058 m x 2.438 m x 2.591 m; corrugated "
                            "steel walls, double doors at one end, corner castings"),
    "wall": Dimensions(8.1, 0.44, 1.95,
                       "approximate: free-standing one-brick (215 mm) garden/boundary wall, "
                       "1.8 m high, brick piers 440 mm square at 2.6 m centres (typical "
                       "UK guidance for free-standing walls: piers at <= 3 m centres) and a "
                       "coping 0.1 m proud; length 8 m chosen (8.1 m over the coping)"),
    "lamp_posts": Dimensions(7.0, 1.5, 4.0,
                             "approximate: three 4 m steel street-lighting columns (EN 40-2 "
                             "nominal height 4 m, residential roads), 140 mm base, 76 mm top, "
                             "3.2 m apart, each with a lantern on a 0.6 m bracket, and a steel "
                             "feeder pillar 0.9 m x 0.35 m x 1.1 m beside the first (overall "
                             "7.0 m x 1.5 m x 4.0 m)"),
}


# --------------------------------------------------------------------------- model
@dataclass
class Part:
    """A rigid part: its quads and the joint articulation moves it with."""

    name: str
    quads: list[QuadSet]
    joint: str = "fixed"  # fixed | turret | gun | blade


@dataclass(frozen=True)
class Corner:
    """A trihedral corner reflector (concave corner): position, opening axis, edge size."""

    position: tuple[float, float, float]
    axis: tuple[float, float, float]
    size_m: float
    joint: str = "fixed"


@dataclass
class Model:
    """A simulator model in its model frame.

    Attributes:
        name: class name (MSTAR folder name or an OOD object of :data:`OBJECT_NAMES`).
        kind: 'target', or the OOD object's name ('tree', 'house', 'container', ...).
        parts: rigid parts.
        corners: trihedral corners.
        turret_pivot: (x, y) of the turret's yaw axis (m).
        gun_pivot: (x, z) of the gun trunnion (m).
        articulation: default joint values and the random ranges (see :func:`articulate`).
        volume: (centre (3,), radii (3,)) of a foliage volume (tree crown), or None.
    """

    name: str
    kind: str
    parts: list[Part]
    corners: list[Corner] = field(default_factory=list)
    turret_pivot: tuple[float, float] = (0.0, 0.0)
    gun_pivot: tuple[float, float] = (0.0, 0.0)
    articulation_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    volume: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None

    @property
    def dimensions(self) -> Dimensions:
        return DIMENSIONS[self.name]


ARTICULATION_KEYS = ("turret_yaw_deg", "gun_elevation_deg", "blade_height_m")


def _tracked(length: float, width: float, track_w: float, track_h: float, hull_top: float,
             clearance: float, n_wheels: int, wheel_r: float, glacis: float,
             rear_slope: float = 0.3) -> list[Part]:
    """Lower hull, tracks with road wheels, fenders and a hull with a sloped glacis."""
    quads: list[QuadSet] = []
    inner_w = width - 2 * track_w
    yt = width / 2 - track_w / 2
    tl = length - 0.25
    for side in (-1, 1):
        quads.append(box((0.0, side * yt, track_h / 2), (tl, track_w - 0.02, track_h), "track",
                         dihedral_base=0.0, top_inset=(0.25, 0.0)))
        xs = np.linspace(-tl / 2 + wheel_r + 0.2, tl / 2 - wheel_r - 0.2, n_wheels)
        for x in xs:
            quads.append(cylinder((x, side * (width / 2 - 0.06), wheel_r + 0.08), (0, 1, 0),
                                  wheel_r, 0.14, "track", n_sides=12, dihedral_base=0.0))
    # lower hull between the tracks
    quads.append(box((0.0, 0.0, (clearance + track_h) / 2), (length - 0.2, inner_w,
                                                             track_h - clearance), "armour"))
    # upper hull over the tracks (fenders), glacis at the front, slope at the back
    prof = [(-length / 2, track_h, hull_top - rear_slope),
            (-length / 2 + 0.5, track_h, hull_top),
            (length / 2 - glacis, track_h, hull_top),
            (length / 2, track_h, track_h + 0.15)]
    quads.append(hull_profile(prof, width, width - 0.1, "armour", dihedral_base=0.0))
    return [Part("hull", quads)]


def _turret(centre_x: float, deck_z: float, radius: float, height: float, dome: bool,
            gun_len: float, gun_r: float, gun_z: float, extra: list[QuadSet] | None = None
            ) -> tuple[list[Part], tuple[float, float], tuple[float, float]]:
    tq: list[QuadSet] = []
    height = height - 0.245  # ``height`` is the top of the cupola above the deck
    if dome:
        tq.append(ellipsoid((centre_x, 0.0, deck_z), (radius, radius * 0.95, height), "armour",
                            n_lon=18, n_lat=5, z_min_frac=0.0))
    else:
        tq.append(cylinder((centre_x, 0.0, deck_z + height / 2), (0, 0, 1), radius, height,
                           "armour", n_sides=10, radius_end=radius * 0.8, dihedral_base=deck_z))
    tq.append(cylinder((centre_x - radius * 0.3, 0.35 * radius, deck_z + height + 0.12),
                       (0, 0, 1), 0.3, 0.25, "armour", n_sides=8, dihedral_base=deck_z + height))
    if extra:
        tq += extra
    gun_x0 = centre_x + radius * 0.7
    # a gun tube is a smooth cylinder: 24 sides keep a facet normal within 7.5 deg of any
    # direction around it, so its specular line appears near broadside at any depression
    gq = [cylinder((gun_x0 + gun_len / 2, 0.0, gun_z), (1, 0, 0), gun_r, gun_len, "armour",
                   n_sides=24),
          box((gun_x0 + 0.1, 0.0, gun_z), (0.35, 0.45, 0.35), "armour")]  # mantlet
    return ([Part("turret", tq, "turret"), Part("gun", gq, "gun")], (centre_x, 0.0),
            (gun_x0, gun_z))


def _wheeled_hull(length: float, width: float, hull_top: float, clearance: float,
                  axles_x: list[float], wheel_r: float, bow: float, stern: float
                  ) -> list[QuadSet]:
    """A boat-shaped armoured hull on wheels (BTR / BRDM)."""
    mid = (clearance + hull_top) / 2 + 0.1
    prof = [(-length / 2, mid, hull_top - 0.25), (-length / 2 + stern, clearance, hull_top),
            (length / 2 - bow, clearance, hull_top), (length / 2, mid, hull_top - 0.45)]
    quads = [hull_profile(prof, width - 0.45, width - 0.35, "armour", dihedral_base=0.0)]
    # sloped upper side plates
    quads.append(hull_profile([(-length / 2 + stern, 1.05, hull_top - 0.05),
                               (length / 2 - bow, 1.05, hull_top - 0.05)],
                              width - 0.05, width - 0.55, "armour"))
    for x in axles_x:
        for side in (-1, 1):
            quads.append(cylinder((x, side * (width / 2 - 0.2), wheel_r), (0, 1, 0), wheel_r,
                                  0.36, "rubber", n_sides=14, dihedral_base=0.0))
            quads.append(cylinder((x, side * (width / 2 - 0.015), wheel_r), (0, 1, 0), 0.24,
                                  0.03, "armour", n_sides=10, dihedral_base=0.0))  # hub
    return quads


def _build(name: str) -> Model:
    d = DIMENSIONS[name]
    L, W, H = d.length_m, d.width_m, d.height_m
    if name == "T72":
        hull_l = 6.95
        parts = _tracked(hull_l, W, 0.58, 0.82, 1.45, 0.49, 6, 0.37, 1.6)
        tp, piv, gpv = _turret(-0.3, 1.45, 1.15, H - 1.45, True,
                               -hull_l / 2 + L - (-0.3 + 0.8), 0.09, 1.75)
        parts += tp
        parts[0].quads += [box((-2.8, 0.0, 1.5), (1.0, 2.2, 0.1), "engine"),   # engine deck
                           plate((-3.4, -1.8, 1.0), (3.3, -1.8, 1.0), (3.3, -1.8, 0.78),
                                 (-3.4, -1.8, 0.78), "armour"),                  # side skirts
                           plate((-3.4, 1.8, 1.0), (3.3, 1.8, 1.0), (3.3, 1.8, 0.78),
                                 (-3.4, 1.8, 0.78), "armour")]
        corners = [Corner((0.6, 0.9, 1.47), (0.7, 0.5, 0.5), 0.35, "turret"),
                   Corner((0.6, -0.9, 1.47), (0.7, -0.5, 0.5), 0.35, "turret")]
        arts = {"turret_yaw_deg": (-12.0, 12.0), "gun_elevation_deg": (-3.0, 8.0)}
        return Model(name, "target", parts, corners, piv, gpv, arts)
    if name == "T62":
        hull_l = 6.63
        parts = _tracked(hull_l, W, 0.58, 0.85, 1.5, 0.43, 5, 0.40, 1.4)
        tp, piv, gpv = _turret(0.1, 1.5, 1.2, H - 1.5, True, -hull_l / 2 + L - (0.1 + 0.84),
                               0.09, 1.85)
        parts += tp
        parts[0].quads += [box((-2.6, 0.0, 1.55), (1.2, 2.2, 0.1), "engine"),
                           cylinder((-2.9, 1.35, 1.15), (1, 0, 0), 0.3, 0.9, "armour")]  # tanks
        corners = [Corner((1.0, 1.0, 1.52), (0.7, 0.5, 0.5), 0.3, "turret")]
        arts = {"turret_yaw_deg": (-12.0, 12.0), "gun_elevation_deg": (-3.0, 8.0)}
        return Model(name, "target", parts, corners, piv, gpv, arts)
    if name == "2S1":
        parts = _tracked(L - 0.15, W, 0.42, 0.75, 1.72, 0.40, 7, 0.30, 1.2, rear_slope=0.05)
        tp, piv, gpv = _turret(-1.4, 1.72, 1.15, H - 1.72, False, 3.2, 0.08, 2.05)
        parts += tp
        parts[0].quads.append(box((1.8, 0.6, 1.85), (0.6, 0.6, 0.25), "engine"))
        corners = [Corner((-0.2, 0.9, 1.74), (0.7, 0.6, 0.4), 0.35, "turret")]
        arts = {"turret_yaw_deg": (-10.0, 10.0), "gun_elevation_deg": (-2.0, 15.0)}
        return Model(name, "target", parts, corners, piv, gpv, arts)
    if name == "BMP2":
        parts = _tracked(L, W, 0.45, 0.75, 1.92, 0.42, 6, 0.33, 2.6, rear_slope=0.2)
        tp, piv, gpv = _turret(-0.1, 1.92, 0.95, H - 1.92, False, 2.6, 0.05, 2.2)
        parts += tp
        corners = [Corner((0.9, 0.8, 1.94), (0.7, 0.6, 0.4), 0.3, "turret"),
                   Corner((-2.9, 1.1, 1.94), (-0.5, 0.6, 0.6), 0.25)]
        arts = {"turret_yaw_deg": (-15.0, 15.0), "gun_elevation_deg": (-3.0, 20.0)}
        return Model(name, "target", parts, corners, piv, gpv, arts)
    if name in ("BTR70", "BTR_60"):
        axles = [-2.45, -1.05, 0.75, 2.15] if name == "BTR70" else [-2.25, -0.9, 0.6, 2.0]
        quads = _wheeled_hull(L, W, H - 0.42, 0.47, axles, 0.55, 1.3, 0.6)
        quads.append(box((-2.7, 0.0, H - 0.38), (1.4, 1.8, 0.1), "engine"))
        tp, piv, gpv = _turret(0.9, H - 0.42, 0.5, 0.42, False, 1.4, 0.04, H - 0.2)
        parts = [Part("hull", quads)] + tp
        corners = [Corner((0.0, (W - 0.4) / 2, 1.0), (0.0, 0.7, 0.7), 0.3),
                   Corner((0.0, -(W - 0.4) / 2, 1.0), (0.0, -0.7, 0.7), 0.3)]
        arts = {"turret_yaw_deg": (-20.0, 20.0), "gun_elevation_deg": (-3.0, 15.0)}
        return Model(name, "target", parts, corners, piv, gpv, arts)
    if name == "BRDM_2":
        quads = _wheeled_hull(L, W, H - 0.48, 0.43, [-1.4, 1.4], 0.58, 1.4, 0.5)
        quads.append(box((-1.9, 0.0, H - 0.45), (1.0, 1.6, 0.08), "engine"))
        tp, piv, gpv = _turret(-0.1, H - 0.48, 0.5, 0.48, False, 1.3, 0.04, H - 0.2)
        parts = [Part("hull", quads)] + tp
        corners = [Corner((1.6, 0.6, H - 0.46), (0.6, 0.6, 0.5), 0.25)]
        arts = {"turret_yaw_deg": (-20.0, 20.0), "gun_elevation_deg": (-3.0, 15.0)}
        return Model(name, "target", parts, corners, piv, gpv, arts)
    if name == "ZSU_23_4":
        parts = _tracked(L - 0.2, W, 0.45, 0.72, 1.55, 0.40, 6, 0.33, 1.4, rear_slope=0.1)
        radar = [box((-1.6, 0.0, H - 0.1), (0.3, 1.1, 0.2), "armour"),
                 cylinder((-1.55, 0.0, H - 0.25), (0, 0, 1), 0.12, 0.3, "armour")]
        tp, piv, gpv = _turret(-0.3, 1.55, 1.35, 0.78, False, 1.9, 0.06, 2.0, extra=radar)
        tp[0].quads[0] = box((-0.3, 0.0, 1.55 + 0.39), (2.6, W - 0.1, 0.78), "armour",
                             dihedral_base=1.55, top_inset=(0.25, 0.25))
        tp[1].quads += [cylinder((0.7 + 0.95, 0.3, 2.2), (1, 0, 0), 0.06, 1.9, "armour", 8),
                        cylinder((0.7 + 0.95, -0.3, 2.2), (1, 0, 0), 0.06, 1.9, "armour", 8)]
        parts += tp
        corners = [Corner((1.1, 1.4, 1.57), (0.7, 0.6, 0.4), 0.35, "turret"),
                   Corner((1.1, -1.4, 1.57), (0.7, -0.6, 0.4), 0.35, "turret")]
        arts = {"turret_yaw_deg": (-15.0, 15.0), "gun_elevation_deg": (-3.0, 25.0)}
        return Model(name, "target", parts, corners, piv, gpv, arts)
    if name == "ZIL131":
        q: list[QuadSet] = []
        axles = [2.35, -0.95, -2.35]
        for x in axles:
            for side in (-1, 1):
                q.append(cylinder((x, side * (W / 2 - 0.25), 0.54), (0, 1, 0), 0.54, 0.32,
                                  "rubber", 14, dihedral_base=0.0))
        q.append(box((0.0, 0.0, 0.85), (6.6, 1.0, 0.3), "armour"))              # chassis
        q.append(box((2.7, 0.0, 1.35), (1.5, 1.6, 0.8), "armour", top_inset=(0.1, 0.1)))  # hood
        q.append(box((1.4, 0.0, 1.75), (1.25, W - 0.1, 1.45), "armour",
                     dihedral_base=1.0))                                          # cab
        q.append(box((1.95, 0.0, 1.95), (0.1, W - 0.3, 0.6), "glass"))           # windscreen
        for side in (-1, 1):  # fenders
            q.append(box((2.35, side * (W / 2 - 0.25), 1.2), (1.2, 0.45, 0.05), "armour"))
        bed_x0, bed_x1, bed_z = -3.45, 0.65, 1.2
        q.append(box(((bed_x0 + bed_x1) / 2, 0.0, bed_z - 0.05), (bed_x1 - bed_x0, W, 0.1),
                     "wood"))                                                    # bed floor
        for side in (-1, 1):
            y = side * W / 2
            q.append(plate((bed_x0, y, bed_z), (bed_x1, y, bed_z), (bed_x1, y, bed_z + 0.6),
                           (bed_x0, y, bed_z + 0.6), "wood", dihedral_base=0.0))
        q.append(plate((bed_x0, -W / 2, bed_z), (bed_x0, W / 2, bed_z),
                       (bed_x0, W / 2, bed_z + 0.6), (bed_x0, -W / 2, bed_z + 0.6), "wood"))
        q.append(plate((bed_x1, -W / 2, bed_z), (bed_x1, W / 2, bed_z), (bed_x1, W / 2, H - 0.1),
                       (bed_x1, -W / 2, H - 0.1), "wood"))                       # front wall
        q.append(box(((bed_x0 + bed_x1) / 2, 0.0, (bed_z + 0.6 + H) / 2),
                     (bed_x1 - bed_x0, W - 0.02, H - bed_z - 0.6), "canvas",
                     top_inset=(0.0, 0.15)))                                     # tarpaulin
        corners = [Corner((bed_x1 - 0.05, 0.0, bed_z + 0.05), (-0.6, 0.0, 0.8), 0.4),
                   Corner((0.75, W / 2 - 0.1, 1.05), (0.6, 0.7, 0.3), 0.3)]
        return Model(name, "target", [Part("body", q)], corners, (0.0, 0.0), (0.0, 0.0), {})
    if name == "D7":
        q = []
        trk_l, trk_w = 3.3, 0.56
        for side in (-1, 1):
            q.append(box((-0.4, side * (1.15), 0.45), (trk_l, trk_w, 0.9), "track",
                         dihedral_base=0.0, top_inset=(0.3, 0.0)))
        q.append(box((-0.3, 0.0, 1.35), (3.0, 1.3, 0.9), "engine", top_inset=(0.05, 0.1)))
        q.append(box((-1.35, 0.0, 1.2), (1.3, 2.3, 0.6), "armour"))               # operator deck
        for x in (-0.75, -1.95):  # ROPS posts and canopy
            for side in (-1, 1):
                q.append(box((x, side * 0.95, 2.2), (0.12, 0.12, 1.8), "armour"))
        q.append(box((-1.35, 0.0, H - 0.05), (1.5, 2.1, 0.1), "armour"))
        q.append(cylinder((0.7, 0.3, 2.2), (0, 0, 1), 0.07, 0.9, "armour", 8))  # exhaust stack
        q.append(box((-2.5, 0.0, 0.7), (0.5, 0.3, 1.0), "armour"))               # ripper
        body = Part("body", q)
        bx = L / 2 - 0.25
        bl = [plate((bx - 0.15, -W / 2, 0.0), (bx - 0.15, W / 2, 0.0),
                    (bx - 0.05, W / 2, 0.6), (bx - 0.05, -W / 2, 0.6), "armour",
                    dihedral_base=0.0),
              plate((bx - 0.05, -W / 2, 0.6), (bx - 0.05, W / 2, 0.6),
                    (bx + 0.2, W / 2, 1.25), (bx + 0.2, -W / 2, 1.25), "armour")]
        for side in (-1, 1):  # push arms
            bl.append(box((bx - 1.4, side * 1.45, 0.55), (2.6, 0.2, 0.25), "armour"))
        corners = [Corner((bx - 0.2, 0.0, 0.15), (-0.7, 0.0, 0.7), 0.5, "blade"),
                   Corner((-1.9, 0.9, 1.52), (-0.6, 0.5, 0.6), 0.3)]
        return Model(name, "target", [body, Part("blade", bl, "blade")], corners, (0.0, 0.0),
                     (0.0, 0.0), {"blade_height_m": (0.0, 0.35)})
    if name == "tree":
        trunk = cylinder((0.0, 0.0, 1.3), (0, 0, 1), 0.18, 2.6, "bark", 10, dihedral_base=0.0)
        crown = ellipsoid((0.0, 0.0, 3.7), (1.8, 1.8, 1.8), "foliage", n_lon=14, n_lat=8)
        return Model(name, "tree", [Part("trunk", [trunk]), Part("crown", [crown])],
                     volume=((0.0, 0.0, 3.7), (1.75, 1.75, 1.75)))
    if name == "house":
        lx, ly, eave, ridge = 7.5, 5.5, 2.5, 4.2
        walls = box((0.0, 0.0, eave / 2), (lx, ly, eave), "masonry", dihedral_base=0.0)
        r0 = [(-lx / 2 - 0.3, -ly / 2 - 0.3, eave - 0.1), (lx / 2 + 0.3, -ly / 2 - 0.3, eave - 0.1),
              (lx / 2 + 0.3, 0.0, ridge), (-lx / 2 - 0.3, 0.0, ridge)]
        r1 = [(-lx / 2 - 0.3, ly / 2 + 0.3, eave - 0.1), (-lx / 2 - 0.3, 0.0, ridge),
              (lx / 2 + 0.3, 0.0, ridge), (lx / 2 + 0.3, ly / 2 + 0.3, eave - 0.1)]
        roof = [QuadSet(np.array([r0]), "roof_tile"), QuadSet(np.array([r1]), "roof_tile"),
                QuadSet(np.array([r0[::-1]]), "roof_tile"), QuadSet(np.array([r1[::-1]]),
                                                                     "roof_tile")]
        gables = []
        for sx in (-1, 1):
            x = sx * lx / 2
            tri = np.array([[(x, -ly / 2, eave), (x, ly / 2, eave), (x, 0.0, ridge),
                             (x, 0.0, ridge)]])
            if sx < 0:
                tri = tri[:, ::-1]
            gables.append(QuadSet(tri, "masonry"))
        chimney = box((1.5, 1.0, ridge - 0.2), (0.5, 0.5, 1.4), "masonry")
        door = plate((lx / 2 - 2.0, -ly / 2 - 0.01, 0.0), (lx / 2 - 1.1, -ly / 2 - 0.01, 0.0),
                     (lx / 2 - 1.1, -ly / 2 - 0.01, 2.0), (lx / 2 - 2.0, -ly / 2 - 0.01, 2.0),
                     "wood", two_sided=False, dihedral_base=0.0)
        return Model(name, "house", [Part("walls", [walls, door] + gables),
                                     Part("roof", roof + [chimney])])
    if name == "container":
        return _container(L, W, H)
    if name == "wall":
        return _wall(L, H)
    if name == "lamp_posts":
        return _lamp_posts()
    raise ValueError(f"unknown model {name!r}")


def _container(L: float, W: float, H: float) -> Model:
    """20 ft ISO container standing on the ground: a steel box whose walls make wall-ground
    dihedrals on every side, corrugated long walls (trapezoidal ribs), door locking bars at
    the rear, corner castings (trihedral corners between the end frames and the ground)."""
    q: list[QuadSet] = [box((0.0, 0.0, H / 2), (L, W, H), "armour", dihedral_base=0.0)]
    # corrugation of the long walls: 0.278 m pitch, outer flats 0.07 m proud of the wall
    n_rib = int((L - 0.4) / 0.278)
    for side in (-1, 1):
        y = side * (W / 2 + 0.02)
        for k in range(n_rib):
            x = -L / 2 + 0.2 + (k + 0.5) * 0.278
            q.append(box((x, y, H / 2), (0.07, 0.04, H - 0.3), "armour"))
    # end walls: door locking bars (4 vertical rods) and the door header
    for y in (-0.85, -0.35, 0.35, 0.85):
        q.append(cylinder((-L / 2 - 0.06, y, H / 2), (0, 0, 1), 0.014, H - 0.3, "armour",
                          n_sides=8))
    q.append(box((-L / 2 - 0.03, 0.0, H - 0.1), (0.06, W, 0.2), "armour"))
    corners = [Corner((sx * (L / 2 - 0.1), sy * (W / 2 - 0.1), 0.05),
                      (sx * 0.6, sy * 0.6, 0.5), 0.17)
               for sx in (-1, 1) for sy in (-1, 1)]
    return Model("container", "container", [Part("box", q)], corners)


def _wall(L: float, H: float) -> Model:
    """Free-standing brick wall along x: a 0.215 m thick wall 1.8 m high with brick piers
    every 2.6 m and a coping; both faces make a wall-ground dihedral (a bright line at
    broadside, nothing much end-on), the piers add short dihedral steps."""
    t, h_wall, pier = 0.215, 1.8, 0.44
    q: list[QuadSet] = [box((0.0, 0.0, h_wall / 2), (L, t, h_wall), "masonry",
                            dihedral_base=0.0),
                        box((0.0, 0.0, h_wall + 0.05), (L + 0.1, t + 0.1, 0.1), "masonry")]
    for x in np.linspace(-L / 2 + pier / 2, L / 2 - pier / 2, 4):
        q.append(box((float(x), 0.0, (H - 0.05) / 2), (pier, pier, H - 0.05), "masonry",
                     dihedral_base=0.0))
    return Model("wall", "wall", [Part("wall", q)])


def _lamp_posts() -> Model:
    """Three 4 m steel lighting columns in a row (tapered tubes: vertical cylinder-ground
    dihedrals bright at every azimuth, point-like), each with a bracket and a lantern box,
    and a steel feeder pillar (a small bright box) beside the first column."""
    q: list[QuadSet] = []
    for x in (-3.2, 0.0, 3.2):
        q.append(cylinder((x, 0.0, 2.0), (0, 0, 1), 0.07, 4.0, "armour", n_sides=16,
                          radius_end=0.038, dihedral_base=0.0))
        q.append(cylinder((x, 0.3, 3.95), (0, 1, 0), 0.03, 0.6, "armour", n_sides=8))
        q.append(box((x, 0.6, 3.85), (0.3, 0.45, 0.16), "armour"))
    q.append(box((-3.2, -0.5, 0.55), (0.9, 0.35, 1.1), "armour", dihedral_base=0.0))
    corners = [Corner((-3.2 + sx * 0.45, -0.5 - 0.175, 0.05), (sx * 0.5, -0.6, 0.6), 0.12)
               for sx in (-1, 1)]
    return Model("lamp_posts", "lamp_posts", [Part("posts", q)], corners)


OBJECT_NAMES: tuple[str, ...] = ("tree", "house", "container", "wall", "lamp_posts")
"""Every out-of-distribution object the simulator models, in bank order."""
DEFAULT_OOD_KINDS: tuple[str, ...] = ("tree", "house")
"""The OOD kinds the detector's hard negatives (``OverlayConfig.ood_kinds``), the stock
verifier and the OOD test set (``--ood-kinds``) use by default: the only kinds of banks
simulated before the man-made clutter kinds existed, so existing recipes keep their data."""
ALL_NAMES: tuple[str, ...] = tuple(MSTAR_CLASSES) + OBJECT_NAMES


def check_name(name: str) -> None:
    """Raise ValueError naming the valid choices when ``name`` is not a known model."""
    if name not in ALL_NAMES:
        raise ValueError(f"unknown class {name!r}: expected one of {', '.join(ALL_NAMES)}")


def check_object_kinds(kinds: Sequence[str], where: str = "OOD kinds") -> tuple[str, ...]:
    """``kinds`` as a tuple; ValueError naming the valid choices for an unknown or repeated
    OOD object kind."""
    bad = [k for k in kinds if k not in OBJECT_NAMES]
    if bad:
        raise ValueError(f"{where}: unknown OOD object kind(s) {bad}: expected some of "
                         f"{', '.join(OBJECT_NAMES)}")
    dup = sorted({k for k in kinds if list(kinds).count(k) > 1})
    if dup:
        raise ValueError(f"{where}: OOD object kind(s) {dup} given more than once")
    return tuple(kinds)


@cache
def build_model(name: str) -> Model:
    """The model of ``name`` (an MSTAR folder name or one of :data:`OBJECT_NAMES`), cached."""
    check_name(name)
    return _build(name)


@cache
def model_facets(name: str) -> tuple[Facets, tuple[str, ...]]:
    """Facets of every part in the model frame (neutral articulation) and the part joints."""
    model = build_model(name)
    items = []
    joints = []
    for pi, part in enumerate(model.parts):
        joints.append(part.joint)
        for qs in part.quads:
            items.append(sample_quads(qs, MATERIAL_INDEX[qs.material], pi))
    return Facets.concatenate(items), tuple(joints)


def random_articulation(name: str, rng: np.random.Generator) -> dict[str, float]:
    """Draw joint values uniformly in the model's ranges (empty dict for rigid objects)."""
    model = build_model(name)
    return {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in model.articulation_ranges.items()}


def _joint_transforms(model: Model, art: dict[str, float]) -> dict[str, tuple[np.ndarray,
                                                                             np.ndarray]]:
    """(rotation, translation) per joint for the articulation ``art``."""
    bad = set(art) - set(ARTICULATION_KEYS)
    if bad:
        raise ValueError(f"unknown articulation keys {sorted(bad)}: expected some of "
                         f"{ARTICULATION_KEYS}")
    yaw = art.get("turret_yaw_deg", 0.0)
    elev = art.get("gun_elevation_deg", 0.0)
    blade = art.get("blade_height_m", 0.0)
    tx, ty = model.turret_pivot
    piv = np.array([tx, ty, 0.0])
    rz = rot_z(yaw)
    t_turret = piv - rz @ piv
    gx, gz = model.gun_pivot
    gp = np.array([gx, 0.0, gz])
    ry = rot_y(-elev)
    # gun: elevate about the trunnion, then yaw with the turret
    r_gun = rz @ ry
    t_gun = rz @ (gp - ry @ gp) + t_turret
    eye = np.eye(3)
    return {"fixed": (eye, np.zeros(3)), "turret": (rz, t_turret), "gun": (r_gun, t_gun),
            "blade": (eye, np.array([0.0, 0.0, blade]))}


def _move_parts(tr: dict[str, tuple[np.ndarray, np.ndarray]], joints: Sequence[str],
                part: np.ndarray, points: np.ndarray, *vectors: np.ndarray
                ) -> tuple[np.ndarray, ...]:
    """Apply each part's joint transform to copies of per-sample arrays.

    Args:
        tr: (rotation (3, 3), translation (3,) m) per joint, from :func:`_joint_transforms`.
        joints: joint name of each part; ``part`` indexes it.
        part: (N,) part index of each sample.
        points: (N, 3) positions (m): rotated and translated.
        *vectors: (N, 3) directions / axes: rotated only.

    Returns:
        ``(points, *vectors)``, new arrays (the inputs are not modified).
    """
    points = points.copy()
    moved = [v.copy() for v in vectors]
    for pi, joint in enumerate(joints):
        if joint == "fixed":
            continue
        rot, t = tr[joint]
        sel = part == pi
        points[sel] = points[sel] @ rot.T + t
        for v in moved:
            v[sel] = v[sel] @ rot.T
    return (points, *moved)


def _articulate_samples(model: Model, articulation: dict[str, float] | None,
                        samples: tuple[np.ndarray, ...]
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Articulate ``(positions (N, 3), vectors (N, 3), a (N,), b (N,), part (N,))`` samples
    (edges or fittings) of ``model``: returns ``(positions, vectors, a, b)`` with positions
    moved and vectors rotated by their part's joint; ``a`` and ``b`` pass through."""
    pos, vec, a, b, parts = samples
    if not articulation or pos.shape[0] == 0:
        return pos, vec, a, b
    tr = _joint_transforms(model, dict(articulation))
    pos, vec = _move_parts(tr, [p.joint for p in model.parts], parts, pos, vec)
    return pos, vec, a, b


def articulated_facets(name: str, articulation: dict[str, float] | None = None) -> Facets:
    """Model-frame facets with the joints set to ``articulation`` (missing keys: 0)."""
    model = build_model(name)
    facets, joints = model_facets(name)
    art = dict(articulation or {})
    tr = _joint_transforms(model, art)
    if all(j == "fixed" for j in joints) or not art:
        return facets
    centre, normal, au, av = _move_parts(tr, joints, facets.part, facets.centre,
                                         facets.normal, facets.axis_u, facets.axis_v)
    return Facets(centre, normal, au, av, facets.size_u, facets.size_v, facets.area,
                  facets.material, facets.dihedral_base, facets.part)


def articulated_corners(name: str, articulation: dict[str, float] | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trihedral corners (positions (K, 3), unit axes (K, 3), sizes (K,)) after articulation."""
    model = build_model(name)
    if not model.corners:
        z = np.zeros((0, 3))
        return z, z, np.zeros(0)
    tr = _joint_transforms(model, dict(articulation or {}))
    pos, ax = [], []
    for c in model.corners:
        rot, t = tr[c.joint]
        pos.append(rot @ np.array(c.position) + t)
        a = rot @ np.array(c.axis, dtype=np.float64)
        ax.append(a / np.linalg.norm(a))
    return np.array(pos), np.array(ax), np.array([c.size_m for c in model.corners])


def model_extent(name: str, articulation: dict[str, float] | None = None
                 ) -> tuple[float, float, float]:
    """Measured (length along x, width along y, height) of the model's facets (m)."""
    c = articulated_facets(name, articulation).centre
    ext = c.max(axis=0) - c.min(axis=0)
    return float(ext[0]), float(ext[1]), float(c[:, 2].max())


__all__ = ["ALL_NAMES", "ARTICULATION_KEYS", "DIMENSIONS", "MATERIALS", "MATERIAL_NAMES",
           "Material", "Model", "Part", "Corner", "build_model", "model_facets",
           "articulated_facets", "articulated_corners", "random_articulation", "check_name",
           "model_extent", "OBJECT_NAMES", "DEFAULT_OOD_KINDS", "check_object_kinds"]


SMOOTH_EDGE_COS = float(np.cos(np.radians(40.0)))
"""Edges between two faces of one quad set whose normals differ by less than 40 deg are the
faceting of a curved surface (gun tubes: 15 deg, domes: ~20 deg, 10-14-sided cylinders:
26-36 deg), not wedges: a smooth curved surface has no edge diffraction, and the sum of the
facet-edge terms made a thin gun tube bright at every aspect."""


def _quad_normal(quad: np.ndarray) -> np.ndarray:
    p0, p1, p2, p3 = quad
    n = np.cross(p1 - p0, p3 - p0) + np.cross(p2 - p3, p2 - p1)
    return n / max(float(np.linalg.norm(n)), 1e-12)


def _edge_key(a: np.ndarray, b: np.ndarray) -> tuple:
    ka, kb = tuple(np.round(a, 4)), tuple(np.round(b, 4))
    return (ka, kb) if ka <= kb else (kb, ka)


def _edge_quads(corners: np.ndarray) -> dict[tuple, list[int]]:
    """Indices of the quads bounding each edge (keyed by its rounded end points)."""
    out: dict[tuple, list[int]] = {}
    for i, quad in enumerate(corners):
        for a, b in zip(quad, np.roll(quad, -1, axis=0)):
            out.setdefault(_edge_key(a, b), []).append(i)
    return out


@cache
def model_edges(name: str, spacing_m: float = 0.25, edge_model: str = "isotropic"
                ) -> tuple[np.ndarray, ...]:
    """Edge samples of every quad, in the model frame.

    With ``edge_model="wedge"`` the edges between facets of one curved surface
    (:data:`SMOOTH_EDGE_COS`) are left out; ``isotropic`` keeps every facet edge.

    Returns:
        positions (E, 3), unit directions (E, 3), lengths (E,), edge coefficients (E,) from
        the materials, part indices (E,) int32, the unit normal of the quad the edge bounds
        (E, 3) and the unit outward direction in that quad's plane, across the edge (E, 3):
        with the line of sight they tell a lit face's leading edge from its trailing edge
        (see :func:`scattering.edges`). A shared edge is sampled once per face.
    """
    from sar_atd_training.simulator.scattering import check_edge_model

    check_edge_model(edge_model)
    smooth = edge_model == "wedge"
    model = build_model(name)
    pos, dirs, lens, coef, parts, normals, outs = [], [], [], [], [], [], []
    for pi, part in enumerate(model.parts):
        for qs in part.quads:
            c_edge = MATERIALS[qs.material].edge
            if c_edge <= 0:
                continue
            quad_normals = np.array([_quad_normal(q) for q in qs.corners])
            shared = _edge_quads(qs.corners)
            for qi, (quad, nq) in enumerate(zip(qs.corners, quad_normals)):
                centroid = quad.mean(axis=0)
                for a, b in zip(quad, np.roll(quad, -1, axis=0)):
                    seg = b - a
                    ln = float(np.linalg.norm(seg))
                    if ln < 0.05:
                        continue
                    if smooth and any(float(nq @ quad_normals[j]) > SMOOTH_EDGE_COS
                                      for j in shared[_edge_key(a, b)] if j != qi):
                        continue  # faceting of a curved surface, not a wedge
                    u = seg / ln
                    o = 0.5 * (a + b) - centroid
                    o = o - (o @ u) * u - (o @ nq) * nq
                    o = o / max(float(np.linalg.norm(o)), 1e-12)
                    n = max(1, int(np.ceil(ln / spacing_m)))
                    t = (np.arange(n) + 0.5) / n
                    pos.append(a + t[:, None] * seg)
                    dirs.append(np.repeat(u[None], n, axis=0))
                    lens.append(np.full(n, ln / n))
                    coef.append(np.full(n, c_edge))
                    parts.append(np.full(n, pi, np.int32))
                    normals.append(np.repeat(nq[None], n, axis=0))
                    outs.append(np.repeat(o[None], n, axis=0))
    if not pos:
        z = np.zeros((0, 3))
        return z, z, np.zeros(0), np.zeros(0), np.zeros(0, np.int32), z, z
    return (np.concatenate(pos), np.concatenate(dirs), np.concatenate(lens),
            np.concatenate(coef), np.concatenate(parts), np.concatenate(normals),
            np.concatenate(outs))


def articulated_edges(name: str, articulation: dict[str, float] | None = None,
                      edge_model: str = "isotropic") -> tuple[np.ndarray, ...]:
    """Edge samples after articulation: positions (E, 3), directions (E, 3), lengths (E,),
    coefficients (E,), face normals (E, 3), outward in-face directions (E, 3)."""
    model = build_model(name)
    pos, dirs, lens, coef, parts, normals, outs = model_edges(name, edge_model=edge_model)
    if articulation and pos.shape[0]:
        tr = _joint_transforms(model, dict(articulation))
        pos, dirs, normals, outs = _move_parts(tr, [p.joint for p in model.parts], parts, pos,
                                               dirs, normals, outs)
    return pos, dirs, lens, coef, normals, outs


# --------------------------------------------------------------------------- fittings
FITTING_DENSITY_PER_M2: dict[str, float] = {
    "armour": 2.0,   # bolts, hinges, handles, hatch rims, lifting eyes, periscopes, lights
    "engine": 4.0,   # grille louvres, exhaust louvres, fuel caps, deck stowage
    "track": 3.0,    # track pins, guide horns, return rollers, sprocket teeth
}
"""Surface density of small fittings (m^-2) per material. Real vehicles carry a feature of
~5-10 cm every ~0.5-1 m on their armour and decks (cf. walk-around photographs of T-72, BMP-2,
BTR-70, ZIL-131); their concave corners give the dense field of medium returns that fills a
real MSTAR target region between the big flashes. Cargo canvas, glass, tyres, wood: none."""

FITTING_SIZE_M = (0.04, 0.09)
"""Range (m) of the edge size ``a`` of a fitting's concave corner (uniform)."""

BARREL_RING_STEP_M = 0.05
"""Radial step (m) of the ring discontinuities along a gun barrel (mantlet collar, clamp
bands, bore evacuator ends, muzzle)."""


def _gun_rings(name: str) -> list[tuple[float, float]]:
    """Ring steps on the gun tube: (station as a fraction of the tube from the mantlet end,
    direction of the step face along the tube: +1 forward, -1 backward). A raised band (clamp
    band, bore-evacuator end) has a concave corner on each side, one per direction.

    T-72 (2A46 with thermal sleeve): mantlet collar, four sleeve clamp bands, the bore
    evacuator at mid-tube (rear and front ends). T-62 (U-5TS, no sleeve): collar, the bore
    evacuator about a third of the tube from the muzzle, the muzzle ring. Others: collar and
    muzzle ring."""
    if name == "T72":
        bands = [0.18, 0.32, 0.68, 0.84]
        return ([(0.0, 1), (0.46, -1), (0.6, 1), (1.0, -1)]
                + [(b, d) for b in bands for d in (1, -1)])
    if name == "T62":
        return [(0.0, 1), (0.58, -1), (0.76, 1), (1.0, -1)]
    return [(0.0, 1), (1.0, -1)]


@cache
def model_fittings(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                       np.ndarray]:
    """Small scatterers of a model in its model frame, fixed per model (seeded by its name).

    Returns:
        (positions (F, 3) m, unit axes (F, 3), sizes (F,) m, kinds (F,) int8 with 0 = surface
        fitting (axis = surface normal) and 1 = barrel ring (axis = step face normal), part
        indices (F,) int32).
    """
    import zlib

    model = build_model(name)
    facets, joints = model_facets(name)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    pos, ax, size, kind, part = [], [], [], [], []
    for mname, dens in FITTING_DENSITY_PER_M2.items():
        sel = np.nonzero((facets.material == MATERIAL_INDEX[mname])
                         & (np.array(joints)[facets.part] != "gun"))[0]
        if sel.size == 0:
            continue
        area = facets.area[sel]
        n = int(rng.poisson(dens * float(area.sum())))
        if n == 0:
            continue
        pick = sel[rng.choice(sel.size, size=n, p=area / area.sum())]
        pos.append(facets.centre[pick] + 0.02 * facets.normal[pick])
        ax.append(facets.normal[pick])
        size.append(rng.uniform(*FITTING_SIZE_M, size=n))
        kind.append(np.zeros(n, np.int8))
        part.append(facets.part[pick].astype(np.int32))
    gun = [i for i, j in enumerate(joints) if j == "gun"]
    if gun:
        gsel = facets.part == gun[0]
        # the tube: the facets farthest forward along x at the gun height
        c = facets.centre[gsel]
        x0, x1 = float(model.gun_pivot[0]) + 0.25, float(c[:, 0].max())
        gz = float(model.gun_pivot[1])
        for frac, d in _gun_rings(name):
            x = x0 + frac * (x1 - x0)
            pos.append(np.array([[x, 0.0, gz]]))
            ax.append(np.array([[float(d), 0.0, 0.0]]))
            size.append(np.array([BARREL_RING_STEP_M]))
            kind.append(np.ones(1, np.int8))
            part.append(np.array([gun[0]], np.int32))
    if not pos:
        z = np.zeros((0, 3))
        return z, z, np.zeros(0), np.zeros(0, np.int8), np.zeros(0, np.int32)
    return (np.concatenate(pos), np.concatenate(ax), np.concatenate(size),
            np.concatenate(kind), np.concatenate(part))


def articulated_fittings(name: str, articulation: dict[str, float] | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fittings after articulation: positions (F, 3), axes (F, 3), sizes (F,), kinds (F,)."""
    model = build_model(name)
    return _articulate_samples(model, articulation, model_fittings(name))
