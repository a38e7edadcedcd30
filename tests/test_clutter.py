"""Clutter generator and background loaders: statistics, structure, determinism, errors."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sar_atd.sar.lut import quarter_power_lut
from sar_atd_training.clutter import (
    BackgroundSet,
    BuildingsConfig,
    ClutterConfig,
    TreesConfig,
    cast_shadows,
    generate_scene,
    load_background,
)
from sar_atd_training.clutter.backgrounds import BackgroundError


def test_field_is_fully_developed_rayleigh_speckle(
        plain_grass_config: Callable[[int, int], ClutterConfig]) -> None:
    """A plain grass field: amplitude CV ~0.5227 (Rayleigh) and the calibrated median."""
    cfg = plain_grass_config(256, 256)
    amp = np.abs(generate_scene(cfg, seed=3))
    cv = amp.std() / amp.mean()
    assert abs(cv - math.sqrt(4 / math.pi - 1)) < 0.02, cv
    assert abs(np.median(amp) - cfg.grass_median_amplitude) < 0.1 * cfg.grass_median_amplitude


def test_trees_and_buildings_brighter_than_fields() -> None:
    """Canopy median and building (wall/dihedral) highlights exceed the field clutter."""
    cfg = ClutterConfig(height=512, width=512, trees=TreesConfig(forests=40, treelines=10),
                        buildings=BuildingsConfig(count=60, rotation_deg=(0.0, 0.0)))
    scene, layers = generate_scene(cfg, seed=1, return_layers=True)
    amp = np.abs(scene)
    field = np.median(amp[layers["field"]])
    assert layers["canopy"].any() and layers["building"].any() and layers["shadow"].any()
    assert np.median(amp[layers["canopy"]]) > 1.5 * field
    assert np.percentile(amp[layers["building"]], 99) > 5 * np.percentile(
        amp[layers["field"]], 99)
    assert np.median(amp[layers["shadow"]]) < 0.6 * field


def test_scene_determinism_and_shape() -> None:
    cfg = ClutterConfig(height=200, width=160)
    a, b, c = (generate_scene(cfg, 5), generate_scene(cfg, 5), generate_scene(cfg, 6))
    assert a.shape == (200, 160) and a.dtype == np.complex64
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_default_scene_size_is_mstar_clutter() -> None:
    assert (ClutterConfig().height, ClutterConfig().width) == (1784, 1478)


def test_cast_shadows_length_and_direction() -> None:
    """A 10 m pole shadows h / tan(psi) metres UP the image (away from the radar)."""
    h = np.zeros((300, 5), np.float32)
    h[250, 2] = 10.0
    sh = cast_shadows(h, 17.0, 0.2)
    rows = np.nonzero(sh[:, 2])[0]
    expect = 10.0 / math.tan(math.radians(17.0)) / 0.2
    assert rows.max() == 249 and abs((250 - rows.min()) - expect) <= 1.5
    assert not sh[:, [0, 1, 3, 4]].any() and not sh[251:].any()


def test_bad_clutter_config() -> None:
    with pytest.raises(ValueError, match="height_m"):
        ClutterConfig(trees=TreesConfig(height_m=(10.0, 5.0)))
    with pytest.raises(ValueError, match="16 x 16"):
        ClutterConfig(height=8)


def test_background_loaders(tmp_path: Path) -> None:
    """complex .npy as is, float .npy as magnitude, 8-bit PNG through the inverse LUT."""
    import cv2

    rng = np.random.default_rng(0)
    z = (rng.standard_normal((40, 50)) + 1j * rng.standard_normal((40, 50))).astype(
        np.complex64) * 0.05
    np.save(tmp_path / "c.npy", z)
    np.save(tmp_path / "m.npy", np.abs(z))
    cv2.imwrite(str(tmp_path / "q.png"), quarter_power_lut(z))
    assert np.array_equal(load_background(tmp_path / "c.npy"), z)
    m = load_background(tmp_path / "m.npy")
    assert np.allclose(np.abs(m), np.abs(z), atol=1e-6)
    q = np.abs(load_background(tmp_path / "q.png"))
    assert np.allclose(quarter_power_lut(q), quarter_power_lut(z), atol=1)
    bs = BackgroundSet.from_folder(tmp_path)
    assert len(bs) == 3 and bs.names == ["c.npy", "m.npy", "q.png"]
    assert np.array_equal(bs[1], bs[1])  # random phase is seeded by the name
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(BackgroundError, match="unknown background format"):
        load_background(tmp_path / "junk.txt")
    with pytest.raises(BackgroundError, match="not found"):
        load_background(tmp_path / "missing.npy")


def test_mstar_file_background(mstar_raw_file: Path) -> None:
    """A real MSTAR raw file loads as a complex background (via the MSTAR reader)."""
    img = load_background(mstar_raw_file)
    assert img.dtype == np.complex64 and img.shape == (54, 54)
    assert np.isfinite(img).all() and np.abs(img).max() > 0


def test_generated_background_set() -> None:
    bs = BackgroundSet.generated(3, ClutterConfig(height=64, width=64), seed=10)
    assert len(bs) == 3
    assert np.array_equal(bs[1], generate_scene(ClutterConfig(height=64, width=64), 11))
    sub = bs.subset([2])
    assert np.array_equal(sub[0], bs[2]) and sub.names == ["generated_seed12"]
