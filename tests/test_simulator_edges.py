"""Edge diffraction of the simulator: leading vs trailing edges, no edges on curved surfaces."""

from __future__ import annotations

import numpy as np
import pytest

from sar_atd_training.simulator import scattering as sc
from sar_atd_training.simulator.models import build_model, model_edges


def _edge(outward_y: float, normal_z: float = 1.0, direction=(1.0, 0.0, 0.0)):
    one = np.array([direction])
    return sc.edges(np.zeros((1, 3)), one, np.ones(1), np.ones(1), 17.0,
                    np.array([[0.0, 0.0, normal_z]]), np.array([[0.0, outward_y, 0.0]]))[1]


def test_trailing_edge_of_a_lit_face_is_weak_and_unlit_faces_do_not_diffract():
    """Radar toward -y: the top face's near edge (outward -y) leads, its far edge trails."""
    lead, trail = abs(_edge(-1.0)[0]), abs(_edge(+1.0)[0])
    assert lead == pytest.approx(1.0)  # broadside horizontal edge, unit coefficient/length
    assert trail == pytest.approx(sc.TRAILING_EDGE_SOFT)  # HH along the edge: soft wedge
    assert abs(_edge(-1.0, normal_z=-1.0)[0]) == 0.0  # the face looks away from the sensor
    # a vertical trailing edge (field across it: hard wedge) keeps half its amplitude
    vert = abs(_edge(+1.0, direction=(0.0, 0.0, 1.0))[0])
    full = abs(_edge(-1.0, direction=(0.0, 0.0, 1.0))[0])
    assert vert / full == pytest.approx(sc.TRAILING_EDGE_HARD)
    # without face information the old isotropic term is kept
    amp = sc.edges(np.zeros((1, 3)), np.array([[1.0, 0.0, 0.0]]), np.ones(1), np.ones(1), 17.0)[1]
    assert abs(amp[0]) == pytest.approx(1.0)


def test_wedge_model_drops_gun_tube_facet_edges_but_keeps_box_edges():
    model = build_model("T72")
    gun = [i for i, p in enumerate(model.parts) if p.joint == "gun"][0]
    x0, _ = model.gun_pivot
    pos, _, _, _, parts, _, _ = model_edges("T72")  # isotropic: every facet edge
    assert ((parts == gun) & (pos[:, 0] > x0 + 1.0)).sum() > 24
    pos, dirs, _, _, parts, normals, outs = model_edges("T72", edge_model="wedge")
    tube = (parts == gun) & (pos[:, 0] > x0 + 1.0)  # the 24-sided tube beyond the mantlet
    assert not tube.any(), "edges of the smooth tube's facets are faceting, not wedges"
    mantlet = (parts == gun) & (pos[:, 0] < x0 + 0.5)  # the mantlet box keeps its edges
    assert (np.abs(dirs[mantlet, 0]) > 0.99).sum() >= 4
    # the hull (boxes, plates) keeps its wedge edges, each with unit normal and outward
    hull = parts == 0
    assert hull.sum() > 100
    np.testing.assert_allclose(np.linalg.norm(normals[hull], axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(outs[hull], axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.einsum("ij,ij->i", outs, dirs), 0.0, atol=1e-6)


def test_edge_model_is_checked_and_recorded_only_when_not_default():
    from sar_atd_training.simulator import simulate_signature
    from sar_atd_training.simulator.bank import BankConfig

    with pytest.raises(ValueError, match="edge model"):
        BankConfig(edge_model="gtd")
    with pytest.raises(ValueError, match="edge model"):
        simulate_signature("BMP2", 0.0, 17.0, seed=0, edge_model="gtd")
    assert "edge_model" not in BankConfig().to_json()  # old manifests still resume
    assert BankConfig(edge_model="wedge").to_json()["edge_model"] == "wedge"
    # the wedge model takes the far (trailing) top edges away: less energy, same footprint
    iso = simulate_signature("BMP2", 90.0, 17.0, seed=3, articulation={})
    wedge = simulate_signature("BMP2", 90.0, 17.0, seed=3, articulation={}, edge_model="wedge")
    np.testing.assert_array_equal(iso[1], wedge[1])
    np.testing.assert_array_equal(iso[2], wedge[2])
    assert np.sum(np.abs(wedge[0]) ** 2) < np.sum(np.abs(iso[0]) ** 2)
