"""Re-renderings of 8-bit chips (quality.renderings): fixed small cases for every function."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sar_atd_training.quality.renderings import (
    RENDERINGS,
    UINT16_MEDIAN_LEVEL,
    contrast_stretch,
    equalize_histogram,
    render_linear,
    render_power,
    render_quarter_power,
    rendering,
    to_amplitude,
    to_uint16,
    uint16_to_8bit,
)


@pytest.fixture()
def ramp() -> np.ndarray:
    """uint8 (4, 64) image holding every value 0, 4, ..., 252 and one 255."""
    img = (np.arange(256, dtype=np.int64).reshape(4, 64) // 4 * 4).astype(np.uint8)
    img[-1, -1] = 255
    return img


def test_to_amplitude_is_the_8bit_value_as_float(ramp: np.ndarray) -> None:
    a = to_amplitude(ramp)
    assert a.dtype == np.float32 and np.array_equal(a, ramp.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        to_amplitude(ramp.astype(np.float32))


def test_linear_with_max_255_reproduces_the_image(ramp: np.ndarray) -> None:
    assert np.array_equal(render_linear(ramp), ramp)


def test_power_law_values_on_fixed_pixels() -> None:
    img = np.array([[0, 64, 255]], np.uint8)
    # quarter power: 255 * sqrt(64 / 255) = 127.75 -> 128
    assert render_quarter_power(img).tolist() == [[0, 128, 255]]
    # gamma 2: 255 * (64 / 255)^2 = 16.06 -> 16
    assert render_power(img, 2.0).tolist() == [[0, 16, 255]]


def test_power_law_is_monotonic_and_keeps_zero_images(ramp: np.ndarray) -> None:
    for g in (0.5, 0.75, 1.5, 2.0):
        out = render_power(ramp, g).ravel().astype(int)
        assert np.all(np.diff(out[np.argsort(ramp.ravel(), kind="stable")]) >= 0)
    zero = np.zeros((3, 3), np.uint8)
    assert np.array_equal(render_power(zero, 0.5), zero)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="gamma"):
            render_power(zero, bad)


def test_histogram_equalisation_matches_opencv() -> None:
    rng = np.random.default_rng(0)
    img = rng.gamma(2.0, 20.0, (32, 48)).clip(0, 255).astype(np.uint8)
    assert np.array_equal(equalize_histogram(img), cv2.equalizeHist(img))
    const = np.full((4, 4), 7, np.uint8)
    assert np.array_equal(equalize_histogram(const), const)


def test_contrast_stretch_maps_quantiles_and_clips(ramp: np.ndarray) -> None:
    out = contrast_stretch(ramp, 0.25, 0.75)
    lo, hi = np.quantile(ramp, [0.25, 0.75])
    assert out[ramp <= lo].max() == 0 and out[ramp >= hi].min() == 255
    mid = (ramp > lo) & (ramp < hi)
    assert np.all((out[mid] > 0) & (out[mid] < 255))
    assert np.array_equal(contrast_stretch(np.full((2, 2), 9, np.uint8)),
                          np.full((2, 2), 9, np.uint8))
    with pytest.raises(ValueError, match="low_q"):
        contrast_stretch(ramp, 0.9, 0.1)


def test_uint16_round_trip_puts_the_median_at_its_level(ramp: np.ndarray) -> None:
    img16 = to_uint16(ramp)
    assert img16.dtype == np.uint16 and img16.max() == 65535 and img16.min() == 0
    out = uint16_to_8bit(img16)
    assert out.dtype == np.uint8
    assert abs(float(np.median(out)) - UINT16_MEDIAN_LEVEL) <= 2.0
    with pytest.raises(ValueError, match="uint16"):
        uint16_to_8bit(ramp)
    with pytest.raises(ValueError, match="median_level"):
        uint16_to_8bit(img16, 300.0)


def test_every_named_rendering_is_pure_and_shape_preserving(ramp: np.ndarray) -> None:
    before = ramp.copy()
    for name, fn in RENDERINGS.items():
        out = fn(ramp)
        assert out.dtype == np.uint8 and out.shape == ramp.shape, name
        assert np.array_equal(ramp, before), f"{name} modified its input"
    with pytest.raises(ValueError, match="unknown rendering"):
        rendering("sepia")


def test_histogram_matching_undoes_a_monotonic_rendering() -> None:
    """Two renderings of the same amplitudes match back to the reference (within a level
    or two: quantisation), and a mismatched table is refused."""
    from sar_atd_training.quality.renderings import match_histogram, reference_quantiles

    rng = np.random.default_rng(1)
    ref = rng.rayleigh(30.0, (64, 64)).clip(0, 255).astype(np.uint8)
    q = reference_quantiles([ref])
    for fn in (render_quarter_power, equalize_histogram, lambda im: render_power(im, 2.0)):
        back = match_histogram(fn(ref), q)
        assert np.median(np.abs(back.astype(int) - ref.astype(int))) <= 2
    assert match_histogram(ref, q).dtype == np.uint8
    with pytest.raises(ValueError, match="non-decreasing"):
        match_histogram(ref, q[::-1])


def test_histogram_matching_keeps_clipped_extremes() -> None:
    from sar_atd_training.quality.renderings import match_histogram, reference_quantiles

    rng = np.random.default_rng(2)
    ref = rng.rayleigh(30.0, (64, 64)).clip(0, 255).astype(np.uint8)
    clipped = contrast_stretch(ref, 0.02, 0.90)  # ~10 % of the pixels at 255
    q = reference_quantiles([ref])
    out = match_histogram(clipped, q)
    assert np.all(out[clipped == 255] == 255) and np.all(out[clipped == 0] == 0)
    mid = match_histogram(clipped, q, keep_extremes=False)
    assert mid[clipped == 255].max() < 255  # the tie goes to its mid-rank quantile instead
