"""Signature simulator: geometry (shadow, layover, dihedral, occlusion), models, bank I/O."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sar_atd.sar.chips import MSTAR_CLASSES
from sar_atd.sar.sensor import SensorConfig, form_image
from sar_atd_training.errors import BankError
from sar_atd_training.simulator import SceneObject, render_object, scene_object, simulate_signature
from sar_atd_training.simulator.bank import BankConfig, SignatureBank, SignatureRecord, write_bank
from sar_atd_training.simulator.geometry import box, sample_quads
from sar_atd_training.simulator.models import ALL_NAMES, DIMENSIONS, MATERIAL_INDEX, model_extent
from sar_atd_training.simulator.scattering import form_ideal_image

SPACING = SensorConfig().range_spacing_m


def _box_object(size=(2.0, 2.0, 2.0), centre_z=None, dihedral=True) -> SceneObject:
    lx, ly, lz = size
    q = box((0.0, 0.0, lz / 2 if centre_z is None else centre_z), size, "armour",
            dihedral_base=0.0 if dihedral else None)
    return SceneObject(sample_quads(q, MATERIAL_INDEX["armour"]))


def test_shadow_extends_up_with_length_h_over_tan_psi():
    """A 2 m cube at 17 deg: the shadow lies above (away from the sensor) with the right
    length; rows below the box (sensor side) are never in shadow."""
    psi = 17.0
    res = render_object(_box_object(), 0.0, psi, np.random.default_rng(0), centre=False)
    rows = np.nonzero(res.shadow.any(axis=1))[0]
    top_row, bottom_row = rows.min(), rows.max()
    far_edge_row = 64 - 1.0 / SPACING  # box far face at y = +1 m
    near_edge_row = 64 + 1.0 / SPACING
    expected_top = far_edge_row - 2.0 / math.tan(math.radians(psi)) / SPACING
    assert abs(top_row - expected_top) <= 2.0
    assert bottom_row <= near_edge_row + 1
    assert not res.shadow[int(near_edge_row) + 2:].any()


def test_layover_moves_elevated_returns_toward_sensor():
    """The same plate 3 m higher images 3 m * tan(psi) lower in the image (toward the
    sensor)."""
    psi = 17.0
    peaks = []
    for z in (0.05, 3.05):
        obj = _box_object(size=(1.0, 1.0, 0.1), centre_z=z, dihedral=False)
        res = render_object(obj, 0.0, psi, np.random.default_rng(0), centre=False,
                            mechanisms=("specular", "diffuse"))
        prof = np.abs(res.signature).sum(axis=1)
        peaks.append(float((prof**2 * np.arange(128)).sum() / (prof**2).sum()))
    shift = peaks[1] - peaks[0]
    assert shift == pytest.approx(3.0 * math.tan(math.radians(psi)) / SPACING, abs=0.7)
    assert shift > 0


def test_dihedral_base_return_on_sensor_facing_side():
    """Broadside wall on the ground: the dihedral line sits at the base of the sensor-side
    face (at azimuth 0 the model's 3 m x-extent lies along range: face at y = -1.5 m)."""
    obj = _box_object(size=(3.0, 2.0, 1.5))
    res = render_object(obj, 0.0, 17.0, np.random.default_rng(0), centre=False,
                        mechanisms=("dihedral",))
    mag = np.abs(res.signature)
    base_row = 64 + 1.5 / SPACING
    assert np.argmax(mag.sum(axis=1)) == pytest.approx(base_row, abs=1.0)
    # nothing of it on the far side (the face turned away from the sensor)
    far_row = int(64 - 1.5 / SPACING)
    assert mag[far_row - 2:far_row + 3].max() < 0.05 * mag.max()


def test_occluded_facets_do_not_contribute():
    """A small plate hidden right behind a big box adds nothing; in the open it does."""
    big = sample_quads(box((0.0, 0.0, 1.0), (3.0, 1.0, 2.0), "armour"), MATERIAL_INDEX["armour"])
    # at azimuth 0 model x is ground range: the small box sits 2 m behind the big one
    hidden = sample_quads(box((2.0, 0.0, 0.45), (0.2, 0.6, 0.9), "armour"),
                          MATERIAL_INDEX["armour"])
    from sar_atd_training.simulator.geometry import Facets

    a = render_object(SceneObject(big), 0.0, 17.0, np.random.default_rng(1), centre=False)
    b = render_object(SceneObject(Facets.concatenate([big, hidden])), 0.0, 17.0,
                      np.random.default_rng(1), centre=False)
    assert a.n_visible == b.n_visible
    c = render_object(SceneObject(hidden), 0.0, 17.0, np.random.default_rng(1), centre=False)
    assert c.n_visible > 0


def test_fast_image_formation_matches_form_image():
    """form_ideal_image equals sensor.form_image(ideal=True) for positions on its fine grid."""
    rng = np.random.default_rng(3)
    rows = rng.integers(40, 88, 20) + rng.integers(0, 4, 20) / 4
    cols = rng.integers(40, 88, 20) + rng.integers(0, 4, 20) / 4
    xyz = np.stack([(cols - 64) * SensorConfig().xrange_spacing_m, (64 - rows) * SPACING,
                    np.zeros(20)], 1)
    amp = rng.standard_normal(20) + 1j * rng.standard_normal(20)
    ref = form_image(xyz, amp, (128, 128), 16.0, ideal=True)
    fast = form_ideal_image(xyz, amp, (128, 128), 16.0)
    assert np.abs(fast - ref).max() < 1e-4 * np.abs(ref).max()


def test_determinism_and_seed_dependence():
    a = simulate_signature("BMP2", 30.0, 16.0, seed=5)
    b = simulate_signature("BMP2", 30.0, 16.0, seed=5)
    c = simulate_signature("BMP2", 30.0, 16.0, seed=6)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert a[0].dtype == np.complex64 and a[0].shape == (128, 128)
    assert a[1].dtype == bool and a[2].dtype == bool


@pytest.mark.parametrize("name", ALL_NAMES)
def test_models_build_with_documented_dimensions(name):
    """Every model's facet extent is within 6 % (or 0.25 m) of its published dimensions."""
    length, width, height = model_extent(name)
    d = DIMENSIONS[name]
    for got, want in ((length, d.length_m), (width, d.width_m), (height, d.height_m)):
        assert abs(got - want) <= max(0.25, 0.06 * want), (name, got, want)
    assert d.source


def test_signature_amplitudes_are_mstar_like():
    from sar_atd.sar.sensor import apply_sensor_function

    sig, shadow, support = simulate_signature("T72", 45.0, 17.0, seed=0)
    mag = np.abs(apply_sensor_function(sig))
    assert 0.3 < mag.max() < 30.0
    assert shadow.sum() > 200 and support.sum() > 100


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown class"):
        simulate_signature("M1A1", 0.0, 17.0, seed=0)
    for dep in (0.0, 90.0, -5.0, float("nan")):
        with pytest.raises(ValueError, match="depression"):
            simulate_signature("T72", 0.0, dep, seed=0)
    with pytest.raises(ValueError, match="articulation"):
        simulate_signature("T72", 0.0, 17.0, seed=0, articulation={"wings_deg": 3.0})
    with pytest.raises(ValueError, match="unknown class"):
        BankConfig(classes=("T80",))


def test_turret_articulation_moves_the_gun():
    obj0 = scene_object("T72", {"turret_yaw_deg": 0.0})
    obj90 = scene_object("T72", {"turret_yaw_deg": 90.0})
    assert obj0.facets.centre[:, 0].max() > 5.5  # gun forward
    assert obj90.facets.centre[:, 1].max() > 4.0  # gun to the left


def _tiny_config() -> BankConfig:
    return BankConfig(classes=("BRDM_2", "D7"), azimuth_step_deg=120.0,
                      depressions_deg=(17.0,), objects=("tree",),
                      object_azimuths_deg=(0.0, 10.0, 5.0))


def test_bank_round_trip_resume_and_corruption(tmp_path):
    cfg = _tiny_config()
    write_bank(tmp_path, cfg, workers=1, progress=False)
    bank = SignatureBank.open(tmp_path)
    assert len(bank) == 2 * 3 + 3
    assert bank.records[0] == SignatureRecord("target", "BRDM_2", 0.0, 17.0)
    assert bank.select(kind="tree").tolist() == [6, 7, 8]
    assert bank.select(classes=["D7"]).tolist() == [3, 4, 5]
    sig, sh, su = simulate_signature("D7", 120.0, 17.0,
                                     seed=__import__("sar_atd_training.simulator.bank",
                                                     fromlist=["entry_seed"]).entry_seed(
                                         0, "D7", 17.0, 120.0))
    np.testing.assert_allclose(bank.signature(4), sig, atol=2e-3 * np.abs(sig).max())
    assert np.array_equal(bank.shadow(4), sh) and np.array_equal(bank.support(4), su)
    assert bank.signature(4).dtype == np.complex64

    # resume: nothing regenerated when complete (files untouched)
    mtimes = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.npy")}
    write_bank(tmp_path, cfg, workers=1, progress=False)
    assert mtimes == {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.npy")}

    # an interrupted run (a chunk missing from the manifest) regenerates only that chunk
    man = json.loads((tmp_path / "manifest.json").read_text())
    man["chunks"] = [c for c in man["chunks"] if c["name"] != "D7_17"]
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    write_bank(tmp_path, cfg, workers=1, progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.npy")}
    assert after["BRDM_2_17.sig.npy"] == mtimes["BRDM_2_17.sig.npy"]
    assert after["D7_17.sig.npy"] != mtimes["D7_17.sig.npy"]

    # corruption: flip bytes in a chunk -> clear error naming the chunk
    p = tmp_path / "BRDM_2_17.sig.npy"
    data = bytearray(p.read_bytes())
    data[-100] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(BankError, match="BRDM_2_17.*checksum"):
        SignatureBank.open(tmp_path)
    p.unlink()
    with pytest.raises(BankError, match="missing file"):
        SignatureBank.open(tmp_path)
    with pytest.raises(BankError, match="not found"):
        SignatureBank.open(tmp_path / "nowhere")


def test_bank_from_arrays_and_pickle(tmp_path):
    import pickle

    sig = (np.ones((2, 8, 8)) * (1 + 2j)).astype(np.complex64)
    sh = np.zeros((2, 8, 8), bool)
    sh[1, 2] = True
    recs = [SignatureRecord("target", "T72", 0.0, 17.0), SignatureRecord("house", "house",
                                                                         5.0, 15.0)]
    bank = SignatureBank.from_arrays(sig, sh, ~sh, recs)
    assert len(bank) == 2 and bank.shadow(1)[2].all() and bank.select(kind="house").tolist() == [1]
    assert np.array_equal(pickle.loads(pickle.dumps(bank)).signature(0), sig[0])
    with pytest.raises(ValueError, match="records"):
        SignatureBank.from_arrays(sig, sh, sh, recs[:1])


def test_all_mstar_classes_present():
    assert set(MSTAR_CLASSES) <= set(ALL_NAMES)
