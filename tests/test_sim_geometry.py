"""Target geometry measurement (simulator vs real): known offsets on hand-made chips."""

from __future__ import annotations

import numpy as np
import pytest

from sar_atd.sar.chips import MASK_SHADOW, MASK_TARGET
from sar_atd_training.simulator.measure import (
    CLUTTER_MEDIAN,
    GEOMETRY_FIELDS,
    bright_returns,
    measure_geometry,
    synthetic_chip,
)


def _chip(shadow_rows=(4, 10)) -> tuple[np.ndarray, np.ndarray]:
    """40x40: target rows 10-20, cols 10-25; shadow above it; returns rows 12-22,
    cols 10-23 (far -2, near +2, left 0, right -2)."""
    mask = np.zeros((40, 40), np.uint8)
    mask[shadow_rows[0]:shadow_rows[1], 10:26] = MASK_SHADOW
    mask[10:21, 10:26] = MASK_TARGET
    img = np.ones((40, 40))
    img[12:23, 10:24] = 10.0
    return img, mask


def test_known_offsets_extents_and_shares():
    img, mask = _chip()
    g = measure_geometry(img, mask)
    assert g is not None
    assert (g.length_px, g.width_px) == (11.0, 16.0)
    np.testing.assert_array_equal(g.offsets, [-2.0, 2.0, 0.0, -2.0])
    assert g.shadow_gap_px == 0.0
    inside = 9 * 14  # rows 12-20 x cols 10-23
    assert g.bright_inside == pytest.approx(inside / (11 * 14))
    assert g.fill == pytest.approx(inside / (11 * 16))
    assert g.shadow_head == pytest.approx(1.0)  # the shadow is as bright as the clutter
    assert g.as_row().shape == (len(GEOMETRY_FIELDS),)
    img[mask == MASK_SHADOW] = 0.2
    img[9, :] = np.where(mask[9] == MASK_SHADOW, 0.8, img[9])  # the row touching the target
    g = measure_geometry(img, mask)
    assert g.shadow_head == pytest.approx((0.2 + 0.2 + 0.8) / 3)  # its first 3 rows


def test_shadow_gap_and_isolated_speckle():
    img, mask = _chip(shadow_rows=(2, 8))  # two clutter rows between target and shadow
    img[30, 35] = 50.0  # a bright clutter pixel far from the target: not a return
    img[3, 12] = 50.0
    g = measure_geometry(img, mask)
    assert g is not None and g.shadow_gap_px == 2.0
    np.testing.assert_array_equal(g.offsets, [-2.0, 2.0, 0.0, -2.0])
    # a bright pixel connected to the returns and within reach does count
    img[23:25, 15] = 10.0
    assert measure_geometry(img, mask).offsets[1] == 4.0
    assert not bright_returns(img, mask)[30, 35]


def test_no_target_or_no_return_and_bad_input():
    img, mask = _chip()
    assert measure_geometry(img, np.zeros_like(mask)) is None
    assert measure_geometry(np.ones((40, 40)), mask) is None
    with pytest.raises(ValueError, match="same 2-D shape"):
        measure_geometry(img[:30], mask)
    with pytest.raises(ValueError, match="factor"):
        bright_returns(img, mask, factor=0.0)


def test_synthetic_chip_levels_and_mask():
    sig = np.zeros((64, 64), np.complex64)
    sig[30:34, 28:36] = 0.5
    support = np.zeros((64, 64), bool)
    support[30:34, 28:36] = True
    shadow = np.zeros((64, 64), bool)
    shadow[10:30, 28:36] = True
    img, m = synthetic_chip(sig, support, shadow, np.random.default_rng(0), shadow_ratio=0.3)
    assert img.shape == (64, 64) and img.dtype == np.float32
    assert set(np.unique(m)) == {0, MASK_TARGET, MASK_SHADOW}
    assert (m[support] == MASK_TARGET).all()
    clutter = np.median(img[m == 0])
    assert 0.7 * CLUTTER_MEDIAN < clutter < 1.3 * CLUTTER_MEDIAN
    assert np.median(img[12:24, 30:34]) < 0.5 * clutter  # away from the sidelobes
    g = measure_geometry(img, m)
    assert g is not None and g.fill > 0.9 and abs(g.offsets[2]) <= 1
    with pytest.raises(ValueError, match="same 2-D shape"):
        synthetic_chip(sig, support[:10], shadow, np.random.default_rng(0))


def test_benchmark_runs_on_real_chips(mstar_chips, capsys):
    from benchmarks.bench_sim_geometry import main

    assert main(["--classes", "BRDM_2", "--step", "90", "--subset", "heldback"]) == 0
    out = capsys.readouterr().out
    assert "BRDM_2" in out and "real" in out and "sim isotropic" in out
