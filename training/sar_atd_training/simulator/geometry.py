"""Primitive geometry for the signature simulator: quads, solids, facets, sensor-frame z-buffer.

Every surface is a set of bilinear quads (4 corners, outward normal by the right-hand rule
``(p1 - p0) x (p3 - p0)``); triangles are quads with two equal corners. Quads are sampled
into small facets (centre, normal, area, in-plane sizes) once per part and cached; the
simulator then moves the facets rigidly (articulation, azimuth) and works on flat arrays.

Frames (metres): a *model frame* has ``x`` forward (vehicle length), ``y`` to the left,
``z`` up, origin on the ground at the centre of the footprint. The *scene frame* is that of
:mod:`sar_atd.sar.sensor`: ``x`` cross-range (image columns), ``y`` ground range away from the
sensor (up the image), ``z`` height. Azimuth ``phi`` (degrees) rotates the model
counter-clockwise seen from above: at ``phi = 0`` the vehicle front points along ``+y``
(away from the sensor, toward the top of the image); at ``phi = 90`` it points along ``-x``
(left in the image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

FACET_SPACING_M = 0.07
"""Largest facet edge (m). Must stay below ZBUFFER_CELL_M / sqrt(2) so that the sampled
surfaces leave no holes in the sensor-frame z-buffer."""

ZBUFFER_CELL_M = 0.10
"""Z-buffer cell size in the sensor frame (m)."""


# --------------------------------------------------------------------------- quads
@dataclass
class QuadSet:
    """A set of bilinear quads with their material and dihedral base.

    Attributes:
        corners: float64 (Q, 4, 3) corners p0, p1, p2, p3 (p0->p1 is the ``u`` edge,
            p0->p3 the ``v`` edge); normal = (p1 - p0) x (p3 - p0), outward.
        material: material name of every quad in the set.
        dihedral_base: height (m) of the horizontal reflector under these faces (0 for the
            ground, a deck height, or None where the faces form no wall-floor dihedral).
    """

    corners: np.ndarray
    material: str
    dihedral_base: float | None = None

    def __post_init__(self) -> None:
        self.corners = np.asarray(self.corners, dtype=np.float64).reshape(-1, 4, 3)


def _orient_outward(corners: np.ndarray, centroid: np.ndarray) -> np.ndarray:
    """Flip quads whose normal points toward ``centroid`` (closed convex solids)."""
    p0, p1, p2, p3 = (corners[:, i] for i in range(4))
    n = np.cross(p1 - p0, p3 - p0) + np.cross(p2 - p3, p2 - p1)  # robust for triangles
    c = corners.mean(axis=1)
    flip = np.einsum("ij,ij->i", n, c - centroid) < 0
    out = corners.copy()
    out[flip] = corners[flip][:, ::-1]
    return out


def hexahedron(vertices: np.ndarray, material: str,
               dihedral_base: float | None = None) -> QuadSet:
    """A convex solid from 8 vertices: bottom ring (0..3) then top ring (4..7), same order.

    Gives boxes, wedges (sloped glacis), frusta. Faces are oriented outward.
    """
    v = np.asarray(vertices, dtype=np.float64).reshape(8, 3)
    faces = [(0, 1, 2, 3), (4, 5, 6, 7)] + [(i, (i + 1) % 4, 4 + (i + 1) % 4, 4 + i)
                                            for i in range(4)]
    corners = np.stack([v[list(f)] for f in faces])
    return QuadSet(_orient_outward(corners, v.mean(axis=0)), material, dihedral_base)


def box(centre: tuple[float, float, float], size: tuple[float, float, float], material: str,
        dihedral_base: float | None = None, top_inset: tuple[float, float] = (0.0, 0.0),
        top_shift: float = 0.0) -> QuadSet:
    """Box (or wedge with a smaller top) centred at ``centre`` with ``size = (lx, ly, lz)``.

    Args:
        centre: (x, y, z) of the box centre (m).
        size: (lx, ly, lz) edge lengths (m).
        material: material name.
        dihedral_base: reflector height under the side faces (None: no dihedral).
        top_inset: (dx, dy) the top face is shrunk by per side (m): slopes the sides.
        top_shift: top face moved along x (m): leans the box forward/back.
    """
    cx, cy, cz = centre
    lx, ly, lz = size
    ix, iy = top_inset
    b = [(-lx / 2, -ly / 2), (lx / 2, -ly / 2), (lx / 2, ly / 2), (-lx / 2, ly / 2)]
    t = [(-lx / 2 + ix, -ly / 2 + iy), (lx / 2 - ix, -ly / 2 + iy), (lx / 2 - ix, ly / 2 - iy),
         (-lx / 2 + ix, ly / 2 - iy)]
    verts = [(cx + x, cy + y, cz - lz / 2) for x, y in b]
    verts += [(cx + x + top_shift, cy + y, cz + lz / 2) for x, y in t]
    return hexahedron(np.array(verts), material, dihedral_base)


def hull_profile(x_profile: list[tuple[float, float, float]], width_bottom: float,
                 width_top: float, material: str, y0: float = 0.0,
                 dihedral_base: float | None = None) -> QuadSet:
    """A boat-shaped hull extruded across ``y`` from a side profile.

    Args:
        x_profile: list of (x, z_bottom, z_top) stations along the length, front to back or
            back to front; the hull is the convex-ish solid between consecutive stations.
        width_bottom, width_top: hull width at the bottom and top edges (sloped sides).
        material: material name.
        y0: lateral centre.
    """
    parts = []
    for (xa, zba, zta), (xb, zbb, ztb) in zip(x_profile[:-1], x_profile[1:]):
        wb, wt = width_bottom / 2, width_top / 2
        v = np.array([(xa, y0 - wb, zba), (xb, y0 - wb, zbb), (xb, y0 + wb, zbb),
                      (xa, y0 + wb, zba), (xa, y0 - wt, zta), (xb, y0 - wt, ztb),
                      (xb, y0 + wt, ztb), (xa, y0 + wt, zta)])
        parts.append(hexahedron(v, material, dihedral_base).corners)
    return QuadSet(np.concatenate(parts), material, dihedral_base)


def cylinder(centre: tuple[float, float, float], axis: tuple[float, float, float],
             radius: float, length: float, material: str, n_sides: int = 16,
             caps: bool = True, radius_end: float | None = None,
             dihedral_base: float | None = None) -> QuadSet:
    """Cylinder (or frustum with ``radius_end``) as an ``n_sides`` prism with end caps."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    ref = np.array([0.0, 0.0, 1.0]) if abs(a[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = np.cross(a, ref)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(a, e1)
    c = np.asarray(centre, dtype=np.float64)
    r1 = radius if radius_end is None else radius_end
    ang = np.linspace(0, 2 * np.pi, n_sides + 1)
    ring = np.cos(ang)[:, None] * e1 + np.sin(ang)[:, None] * e2  # (n+1, 3)
    p_a = c - a * length / 2 + radius * ring
    p_b = c + a * length / 2 + r1 * ring
    quads = [np.stack([p_a[i], p_a[i + 1], p_b[i + 1], p_b[i]]) for i in range(n_sides)]
    if caps:
        ca, cb = c - a * length / 2, c + a * length / 2
        quads += [np.stack([ca, p_a[i + 1], p_a[i], ca]) for i in range(n_sides)]
        quads += [np.stack([cb, p_b[i], p_b[i + 1], cb]) for i in range(n_sides)]
    corners = _orient_outward(np.stack(quads), c)
    return QuadSet(corners, material, dihedral_base)


def ellipsoid(centre: tuple[float, float, float], radii: tuple[float, float, float],
              material: str, n_lon: int = 16, n_lat: int = 8,
              z_min_frac: float = -1.0) -> QuadSet:
    """Ellipsoid (or a dome: ``z_min_frac = 0`` keeps the upper half) as lat-long quads."""
    lat = np.linspace(math.asin(max(-1.0, z_min_frac)), np.pi / 2, n_lat + 1)
    lon = np.linspace(0, 2 * np.pi, n_lon + 1)
    c = np.asarray(centre, dtype=np.float64)
    r = np.asarray(radii, dtype=np.float64)

    def pt(la: float, lo: float) -> np.ndarray:
        return c + r * np.array([math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo),
                                 math.sin(la)])

    quads = []
    for i in range(n_lat):
        for j in range(n_lon):
            quads.append(np.stack([pt(lat[i], lon[j]), pt(lat[i], lon[j + 1]),
                                   pt(lat[i + 1], lon[j + 1]), pt(lat[i + 1], lon[j])]))
    if z_min_frac > -1.0:  # flat bottom
        base = [pt(lat[0], lo) for lo in lon]
        cb = c + np.array([0, 0, r[2] * math.sin(lat[0])])
        quads += [np.stack([cb, base[j + 1], base[j], cb]) for j in range(n_lon)]
    return QuadSet(_orient_outward(np.stack(quads), c), material)


def plate(p0: tuple[float, ...], p1: tuple[float, ...], p2: tuple[float, ...],
          p3: tuple[float, ...], material: str, two_sided: bool = True,
          dihedral_base: float | None = None) -> QuadSet:
    """A thin plate (skirt, blade, cargo-bed wall); two-sided by default."""
    q = np.array([p0, p1, p2, p3], dtype=np.float64)[None]
    if two_sided:
        q = np.concatenate([q, q[:, ::-1]])
    return QuadSet(q, material, dihedral_base)


# --------------------------------------------------------------------------- facets
@dataclass
class Facets:
    """Flat arrays of surface facets (N of them).

    Attributes:
        centre: float64 (N, 3) facet centres (m).
        normal: float64 (N, 3) unit outward normals.
        axis_u, axis_v: float64 (N, 3) unit in-plane edge directions.
        size_u, size_v: float64 (N,) facet edge lengths (m).
        area: float64 (N,) facet areas (m^2).
        material: int32 (N,) material index (see :data:`models.MATERIAL_NAMES`).
        dihedral_base: float64 (N,) reflector height under the facet (NaN: none).
        part: int32 (N,) index of the model part the facet belongs to.
    """

    centre: np.ndarray
    normal: np.ndarray
    axis_u: np.ndarray
    axis_v: np.ndarray
    size_u: np.ndarray
    size_v: np.ndarray
    area: np.ndarray
    material: np.ndarray
    dihedral_base: np.ndarray
    part: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    def __len__(self) -> int:
        return int(self.centre.shape[0])

    @staticmethod
    def concatenate(items: list[Facets]) -> Facets:
        names = ["centre", "normal", "axis_u", "axis_v", "size_u", "size_v", "area",
                 "material", "dihedral_base", "part"]
        return Facets(*[np.concatenate([getattr(f, n) for f in items]) for n in names])

    def transformed(self, rot: np.ndarray, trans: np.ndarray) -> Facets:
        """Rigid transform ``p -> rot @ p + trans`` (rot (3, 3), trans (3,))."""
        return Facets(self.centre @ rot.T + trans, self.normal @ rot.T, self.axis_u @ rot.T,
                      self.axis_v @ rot.T, self.size_u, self.size_v, self.area, self.material,
                      self.dihedral_base, self.part)


def sample_quads(quads: QuadSet, material_index: int, part: int = 0,
                 spacing_m: float = FACET_SPACING_M) -> Facets:
    """Sample every quad of ``quads`` into facets no larger than ``spacing_m``."""
    out = []
    base = np.nan if quads.dihedral_base is None else float(quads.dihedral_base)
    for p0, p1, p2, p3 in quads.corners:
        lu = max(np.linalg.norm(p1 - p0), np.linalg.norm(p2 - p3))
        lv = max(np.linalg.norm(p3 - p0), np.linalg.norm(p2 - p1))
        if lu < 1e-9 and lv < 1e-9:
            continue
        nu, nv = max(1, math.ceil(lu / spacing_m)), max(1, math.ceil(lv / spacing_m))
        s = (np.arange(nu) + 0.5) / nu
        t = (np.arange(nv) + 0.5) / nv
        S, T = (a.ravel() for a in np.meshgrid(s, t, indexing="ij"))
        S, T = S[:, None], T[:, None]
        pos = (1 - S) * (1 - T) * p0 + S * (1 - T) * p1 + S * T * p2 + (1 - S) * T * p3
        du = ((1 - T) * (p1 - p0) + T * (p2 - p3)) / nu  # dP/ds * ds
        dv = ((1 - S) * (p3 - p0) + S * (p2 - p1)) / nv
        n = np.cross(du, dv)
        area = np.linalg.norm(n, axis=1)
        keep = area > 1e-10
        if not np.any(keep):
            continue
        pos, du, dv, n, area = pos[keep], du[keep], dv[keep], n[keep], area[keep]
        su, sv = np.linalg.norm(du, axis=1), np.linalg.norm(dv, axis=1)
        m = pos.shape[0]
        out.append(Facets(pos, n / area[:, None], du / np.maximum(su, 1e-12)[:, None],
                          dv / np.maximum(sv, 1e-12)[:, None], su, sv, area,
                          np.full(m, material_index, np.int32), np.full(m, base),
                          np.full(m, part, np.int32)))
    if not out:
        raise ValueError("quad set has no area to sample")
    return Facets.concatenate(out)


# --------------------------------------------------------------------------- rotations
def rot_z(deg: float) -> np.ndarray:
    """Rotation about +z by ``deg`` degrees (counter-clockwise seen from above)."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_y(deg: float) -> np.ndarray:
    """Rotation about +y by ``deg`` degrees."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def model_to_scene_rotation(azimuth_deg: float) -> np.ndarray:
    """Model frame (x forward) -> scene frame at ``azimuth_deg`` (0: front along +y)."""
    return rot_z(azimuth_deg + 90.0)


# --------------------------------------------------------------------------- sensor frame
def sensor_frame(points: np.ndarray, depression_deg: float) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]:
    """Scene points (N, 3) -> (u, w, depth): image-plane coords and depth toward the sensor.

    The line of sight toward the sensor is ``s = (0, -cos psi, sin psi)``; ``depth = p . s``
    grows toward the sensor, ``w = p . (0, sin psi, cos psi)`` is the in-plane coordinate
    orthogonal to it, ``u = x``.
    """
    psi = math.radians(depression_deg)
    c, s = math.cos(psi), math.sin(psi)
    u = points[:, 0]
    w = points[:, 1] * s + points[:, 2] * c
    d = -points[:, 1] * c + points[:, 2] * s
    return u, w, d


@dataclass
class ZBuffer:
    """Largest depth (closest to the sensor) per sensor-frame cell, from surface samples."""

    u0: float
    w0: float
    nu: int
    nw: int
    depth: np.ndarray  # float64 (nu * nw,), -inf where empty
    cell_m: float = ZBUFFER_CELL_M

    @classmethod
    def build(cls, points: np.ndarray, depression_deg: float,
              cell_m: float = ZBUFFER_CELL_M) -> ZBuffer:
        u, w, d = sensor_frame(points, depression_deg)
        u0, w0 = float(u.min()) - 2 * cell_m, float(w.min()) - 2 * cell_m
        nu = int((u.max() - u0) / cell_m) + 3
        nw = int((w.max() - w0) / cell_m) + 3
        iu = ((u - u0) / cell_m).astype(np.int64)
        iw = ((w - w0) / cell_m).astype(np.int64)
        depth = np.full(nu * nw, -np.inf)
        np.maximum.at(depth, iu * nw + iw, d)
        return cls(u0, w0, nu, nw, depth, cell_m)

    def lookup(self, points: np.ndarray, depression_deg: float) -> tuple[np.ndarray,
                                                                          np.ndarray]:
        """Occluding depth at the cells of ``points`` (N, 3) and the points' own depth."""
        u, w, d = sensor_frame(points, depression_deg)
        iu = np.floor((u - self.u0) / self.cell_m).astype(np.int64)
        iw = np.floor((w - self.w0) / self.cell_m).astype(np.int64)
        inside = (iu >= 0) & (iu < self.nu) & (iw >= 0) & (iw < self.nw)
        occ = np.full(points.shape[0], -np.inf)
        occ[inside] = self.depth[iu[inside] * self.nw + iw[inside]]
        return occ, d

    def visible(self, points: np.ndarray, depression_deg: float,
                tol_m: float = 0.12) -> np.ndarray:
        """True where nothing lies more than ``tol_m`` in front of the point (ray cast)."""
        occ, d = self.lookup(points, depression_deg)
        return occ <= d + tol_m
