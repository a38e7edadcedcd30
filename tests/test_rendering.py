"""8-bit rendering: the general power law (quarter-power LUT, linear) and its randomisation in
the overlay pipeline (domain randomisation of step 5)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from sar_atd.config import load_config
from sar_atd.errors import ConfigError
from sar_atd.sar.lut import power_law_render, quarter_power_lut
from sar_atd_training.clutter import BackgroundSet, ClutterConfig, generate_scene
from sar_atd_training.overlay import OverlayConfig, OverlayPipeline
from sar_atd_training.overlay.toybank import make_toy_bank

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
RANDOMISED = dict(render_gamma_range=(0.5, 1.0), render_ref="quantile",
                  render_ref_level_range=(12.0, 58.0), render_black_quantile_range=(0.0, 0.025))


def reference_quarter_power(image: np.ndarray, ref: float | np.ndarray) -> np.ndarray:
    """The quarter-power LUT exactly as it was written before power_law_render existed."""
    mag = torch.as_tensor(image).abs().to(torch.float32)
    r = torch.as_tensor(ref, dtype=torch.float32)
    while r.ndim and r.ndim < mag.ndim:
        r = r[..., None]
    v = torch.nan_to_num(torch.sqrt(mag) / r, nan=0.0, posinf=1.0)
    return torch.round(255.0 * v.clamp(0.0, 1.0)).to(torch.uint8).numpy()


@pytest.fixture(scope="module")
def amplitudes() -> np.ndarray:
    """float32 (3, 40, 50) amplitudes over 5 decades plus NaN, inf and negative values."""
    rng = np.random.default_rng(0)
    a = (10.0 ** rng.uniform(-4, 1, (3, 40, 50))).astype(np.float32)
    a[0, 0, :4] = [np.nan, np.inf, -0.25, 0.0]
    return a


# --------------------------------------------------------------------------- power_law_render
def test_gamma_half_is_the_quarter_power_lut_bit_for_bit(amplitudes: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    z = (amplitudes * np.exp(1j * rng.uniform(0, 2 * np.pi, amplitudes.shape))).astype(
        np.complex64)
    refs = np.array([1.0, 0.37, 2.9], np.float32)
    for img in (amplitudes, z):
        for ref in (1.0, 0.61, refs):
            expected = reference_quarter_power(img, ref)
            np.testing.assert_array_equal(power_law_render(img, 0.5, ref), expected)
            np.testing.assert_array_equal(quarter_power_lut(img, ref), expected)
    # batched gammas that are all 0.5 take the same path
    np.testing.assert_array_equal(
        power_law_render(amplitudes, np.full(3, 0.5, np.float32), refs),
        reference_quarter_power(amplitudes, refs))


def test_gamma_one_is_linear() -> None:
    amp = np.array([0.0, 0.25, 0.5, 1.0, 2.0, 7.0], np.float32)
    np.testing.assert_array_equal(power_law_render(amp, 1.0, 1.0), [0, 64, 128, 255, 255, 255])
    np.testing.assert_array_equal(power_law_render(amp, 1.0, 4.0), [0, 16, 32, 64, 128, 255])
    # complex input: the magnitude, 0.6 + 0.8j has |s| = 1
    assert power_law_render(np.array([0.3 + 0.4j], np.complex64), 1.0, 1.0)[0] == 128


def test_black_point_maps_to_zero_and_ref_to_255() -> None:
    amp = np.array([0.0, 0.04, 0.09, 0.25, 1.0], np.float32)  # sqrt: 0, .2, .3, .5, 1
    out = power_law_render(amp, 0.5, 0.5, black=0.2)
    np.testing.assert_array_equal(out, [0, 0, 85, 255, 255])  # (0.3-0.2)/(0.5-0.2)*255 = 85


def test_monotonic_and_gamma_order(amplitudes: np.ndarray) -> None:
    a = np.sort(np.nan_to_num(np.abs(amplitudes.ravel()), posinf=1e3))
    prev = None
    for gamma in (0.3, 0.5, 0.75, 1.0, 1.6):
        out = power_law_render(a, gamma, 2.0 ** gamma).astype(int)  # amplitude 2 -> 255
        assert np.all(np.diff(out) >= 0), f"not monotonic for gamma {gamma}"
        assert out[0] == 0 and out[-1] == 255
        if prev is not None:  # below the white point a larger gamma renders darker
            assert np.all(out <= prev) and np.any(out < prev)
        prev = out


def test_batched_gammas_refs_and_blacks(amplitudes: np.ndarray) -> None:
    gam = np.array([0.5, 1.0, 0.8], np.float32)
    ref = np.array([1.0, 3.0, 0.7], np.float32)
    blk = np.array([0.0, 0.01, 0.05], np.float32)
    out = power_law_render(amplitudes, gam, ref, blk)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == amplitudes.shape
    for i in range(3):
        np.testing.assert_array_equal(
            out[i], power_law_render(amplitudes[i], float(gam[i]), float(ref[i]),
                                     float(blk[i])))
    t = power_law_render(torch.from_numpy(amplitudes), torch.from_numpy(gam),
                         torch.from_numpy(ref), torch.from_numpy(blk))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.uint8
    np.testing.assert_array_equal(t.numpy(), out)


@pytest.mark.parametrize("kw", [
    {"gamma": 0.0}, {"gamma": -1.0}, {"gamma": float("nan")}, {"gamma": float("inf")},
    {"gamma": np.array([0.5, 0.0])}, {"ref": 0.0}, {"ref": -2.0}, {"ref": float("nan")},
    {"black": -0.1}, {"black": float("inf")}, {"black": 1.0}, {"black": 2.0},
])
def test_bad_parameters_raise(kw: dict) -> None:
    args = {"gamma": 0.7, "ref": 1.0, "black": None} | kw
    with pytest.raises(ValueError):
        power_law_render(np.ones((2, 4, 4), np.float32), **args)


# --------------------------------------------------------------------------- pipeline step 5
@pytest.fixture(scope="module")
def setup() -> tuple:
    bank = make_toy_bank(classes=("T72", "BMP2"), azimuths_deg=(0.0, 90.0), size=64)
    bgs = BackgroundSet.from_arrays(
        [generate_scene(ClutterConfig(height=260, width=260), 4)], ["scene"])
    return bank, bgs


def _run(cfg: OverlayConfig, setup: tuple, seed: int = 3, n: int = 3) -> list:
    bank, bgs = setup
    return OverlayPipeline(cfg, bank, bgs).generate(n, torch.Generator().manual_seed(seed),
                                                    keep_complex=True)


def test_default_is_the_quarter_power_lut(setup: tuple) -> None:
    cfg = OverlayConfig(image_size=160, lut_ref=(0.6, 1.4))
    for s in _run(cfg, setup):
        ref = s.meta["lut_ref"]
        assert s.meta["render"] == {"gamma": 0.5, "ref": ref, "black": 0.0}
        np.testing.assert_array_equal(s.image.numpy(),
                                      reference_quarter_power(s.complex_image.numpy(), ref))


def test_degenerate_ranges_draw_nothing(setup: tuple) -> None:
    """Rendering fields with min == max consume no random number: same scenes as default."""
    base = OverlayConfig(image_size=160)
    fixed = dataclasses.replace(base, render_ref="quantile", render_gamma_range=(1.0, 1.0),
                                render_ref_level_range=(40.0, 40.0),
                                render_black_quantile_range=(0.01, 0.01))
    a, b = _run(base, setup), _run(fixed, setup)
    for sa, sb in zip(a, b):
        torch.testing.assert_close(sa.complex_image, sb.complex_image, rtol=0, atol=0)
        torch.testing.assert_close(sa.boxes, sb.boxes, rtol=0, atol=0)
        assert not torch.equal(sa.image, sb.image)  # only the rendering changed


def test_randomised_rendering(setup: tuple) -> None:
    cfg = OverlayConfig(image_size=160, **RANDOMISED)
    base = _run(OverlayConfig(image_size=160), setup)
    out = _run(cfg, setup, n=4)
    gammas = []
    for s in out:
        assert s.image.dtype == torch.uint8 and s.image.shape == (160, 160)
        r = s.meta["render"]
        gammas.append(r["gamma"])
        assert 0.5 <= r["gamma"] <= 1.0 and r["ref"] > r["black"] >= 0.0
        # the image is the power law of its own complex image with the recorded parameters
        np.testing.assert_array_equal(
            s.image.numpy(), power_law_render(s.complex_image.numpy(), r["gamma"], r["ref"],
                                              r["black"]))
        # the median amplitude lands at the drawn 8-bit level (the contrast anchor)
        med = float(s.complex_image.abs().median())
        level = (med ** r["gamma"] - r["black"]) / (r["ref"] - r["black"]) * 255.0
        assert 12.0 - 0.6 <= level <= 58.0 + 0.6
        assert abs(float(s.image.float().median()) - level) <= 1.0
    assert len(set(gammas)) == len(gammas)  # drawn per image
    assert not any(torch.equal(a.image, b.image) for a, b in zip(base, out))


def test_randomised_rendering_is_deterministic(setup: tuple) -> None:
    cfg = OverlayConfig(image_size=160, **RANDOMISED)
    a, b, c = _run(cfg, setup, 7), _run(cfg, setup, 7), _run(cfg, setup, 8)
    assert all(torch.equal(x.image, y.image) for x, y in zip(a, b))
    assert [x.meta["render"] for x in a] == [y.meta["render"] for y in b]
    assert not all(torch.equal(x.image, y.image) for x, y in zip(a, c))


@pytest.mark.parametrize("kw", [
    {"render_gamma_range": (0.0, 1.0)}, {"render_gamma_range": (1.0, 0.5)},
    {"render_ref": "auto"}, {"render_ref_level_range": (0.0, 30.0)},
    {"render_ref_level_range": (30.0, 300.0)}, {"render_ref_quantile_range": (0.5, 1.5)},
    {"render_black_quantile_range": (0.0, 0.6)},
    {"render_ref": "quantile", "render_ref_quantile_range": (0.01, 0.5),
     "render_black_quantile_range": (0.0, 0.02)},
])
def test_bad_rendering_config_raises(kw: dict) -> None:
    with pytest.raises(ConfigError):
        OverlayConfig(**kw)


def test_recommended_recipe_loads() -> None:
    cfg = load_config(OverlayConfig, ROOT / "training" / "configs" / "overlay_hybrid.yaml",
                      section="overlay")
    assert cfg.render_ref == "quantile"
    assert cfg.render_gamma_range[0] <= 0.5 <= cfg.render_gamma_range[1]  # keeps the paper LUT
    assert cfg.render_gamma_range[1] >= 0.75  # reaches the real chips' look
