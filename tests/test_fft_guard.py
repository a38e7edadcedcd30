"""Guarded FFTs (sar_atd.sar.fftcheck) and the statistics checks on generated data.

A wrong library FFT is emulated by wrapping ``torch.fft.ifft2`` so that it returns the
failure seen with torch 2.14.1 (complex64 2048 x 2048, 2 threads: off by ~4) for chosen
shapes, dtypes and thread counts; everything else runs the real transforms.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch

from sar_atd.sar import fftcheck
from sar_atd.sar.fftcheck import FFTCheckError, plan_for
from sar_atd.sar.sensor import SensorConfig, apply_sensor_function, spectral_window
from sar_atd_training.clutter import (
    ClutterConfig,
    ClutterStatisticsError,
    check_scene_statistics,
    generate_scene,
)
from sar_atd_training.overlay import OverlayConfig, OverlayPipeline, OverlayStatisticsError
from sar_atd_training.overlay.toybank import make_toy_bank

N = 2048
REAL_IFFT2 = torch.fft.ifft2


@pytest.fixture(autouse=True)
def fresh_plans() -> Iterator[None]:
    """Every test starts and ends without cached plans, at 2 threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    fftcheck.clear_plans()
    yield
    fftcheck.clear_plans()
    torch.set_num_threads(threads)


def broken_ifft2(when: Callable[[torch.Tensor], bool]) -> Callable[..., torch.Tensor]:
    """``torch.fft.ifft2`` that adds 4 to its output whenever ``when(input)`` holds."""

    def ifft2(x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        out = REAL_IFFT2(x, *args, **kwargs)
        return out + 4.0 if when(x) else out

    return ifft2


def reference_sensor(x: np.ndarray, sensor: SensorConfig) -> np.ndarray:
    """The sensor function computed with numpy's FFT in complex128."""
    h, w = x.shape[-2:]
    wr = spectral_window(h, sensor.range_spacing_m, sensor.range_res_m, sensor.taylor_sll_db,
                         sensor.taylor_nbar).double().numpy()
    wc = spectral_window(w, sensor.xrange_spacing_m, sensor.xrange_res_m,
                         sensor.taylor_sll_db, sensor.taylor_nbar).double().numpy()
    spec = np.fft.fft2(x.astype(np.complex128)) * (wr[:, None] * wc[None, :])
    return np.fft.ifft2(spec)


def noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape, np.float32)
            + 1j * rng.standard_normal(shape, np.float32)).astype(np.complex64)


def test_sensor_function_correct_at_2048_with_two_threads() -> None:
    """At 2048 x 2048 (and batch 1) the guarded sensor function equals a numpy reference."""
    sensor = SensorConfig()
    x = noise((N, N))
    ref = reference_sensor(x, sensor)
    out = apply_sensor_function(x, sensor)
    assert np.abs(out - ref).max() < 1e-4
    out1 = apply_sensor_function(torch.from_numpy(x)[None], sensor)
    assert out1.shape == (1, N, N)
    assert (out1[0].numpy() - ref).__abs__().max() < 1e-4


def test_wrong_complex64_ifft_falls_back_with_warning(monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture
                                                      ) -> None:
    """A torch ifft2 wrong for complex64 2048 x 2048 (any thread count) is detected and the
    complex128 strategy gives the right image; the fallback is logged once."""
    monkeypatch.setattr(torch.fft, "ifft2", broken_ifft2(
        lambda x: x.dtype == torch.complex64 and tuple(x.shape[-2:]) == (N, N)))
    x = noise((N, N), seed=1)
    with caplog.at_level(logging.WARNING, logger="sar_atd.sar.fftcheck"):
        out = apply_sensor_function(x)
    assert np.abs(out - reference_sensor(x, SensorConfig())).max() < 1e-4
    assert plan_for((N, N), torch.complex64, "cpu") == "complex128"
    assert sum("round trip off by 4" in r.getMessage() for r in caplog.records) == 1
    # smaller shapes keep the fast native path
    assert plan_for((64, 64), torch.complex64, "cpu") == "native"


def test_plan_is_per_thread_count_and_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The failure depends on threads and batch size, so each is its own plan: a bug only
    at 2 threads and batch 1 leaves batch 2 and 1 thread on the native path."""
    monkeypatch.setattr(torch.fft, "ifft2", broken_ifft2(
        lambda x: torch.get_num_threads() == 2 and tuple(x.shape) == (1, 256, 256)))
    assert plan_for((1, 256, 256), torch.complex64, "cpu") == "single_thread"
    assert plan_for((2, 256, 256), torch.complex64, "cpu") == "native"
    torch.set_num_threads(1)
    assert plan_for((1, 256, 256), torch.complex64, "cpu") == "native"
    torch.set_num_threads(2)
    x = torch.from_numpy(noise((1, 256, 256), seed=2))
    out = apply_sensor_function(x)
    assert torch.get_num_threads() == 2  # the fallback restores the thread count
    ref = reference_sensor(x[0].numpy(), SensorConfig())
    assert np.abs(out[0].numpy() - ref).max() < 1e-4


def test_every_strategy_wrong_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """When no implementation passes, the transform raises instead of returning garbage."""
    monkeypatch.setattr(torch.fft, "ifft2", broken_ifft2(lambda x: True))
    monkeypatch.setattr(fftcheck.scipy.fft, "ifftn", lambda a, axes=None: a * 0)
    with pytest.raises(FFTCheckError, match=r"no FFT passes the known-answer check.*"
                                            r"complex64 \(32, 32\).*native: round trip"):
        fftcheck.ifft2(torch.zeros(32, 32, dtype=torch.complex64))


def test_forward_fft_error_caught_by_known_bins(monkeypatch: pytest.MonkeyPatch) -> None:
    """A forward transform that is wrong but consistently inverted (so the round trip passes)
    is still caught by Parseval and the directly summed bins."""
    real_fft2, real_ifft2 = torch.fft.fft2, torch.fft.ifft2
    monkeypatch.setattr(torch.fft, "fft2", lambda x, *a, **k: real_fft2(x, *a, **k) * 2)
    monkeypatch.setattr(torch.fft, "ifft2", lambda x, *a, **k: real_ifft2(x, *a, **k) / 2)
    assert plan_for((16, 24), torch.complex64, "cpu") == "numpy"


def test_generated_scene_refused_when_fft_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong inverse FFT inside the clutter generator is refused by the Parseval check; a
    scene that is wrong anyway (sensor function bypassed) by the statistics check, before it
    can be written; a correct scene passes."""
    cfg = ClutterConfig(height=128, width=128)
    good = generate_scene(cfg, 0)
    assert check_scene_statistics(good, cfg) > 0
    with monkeypatch.context() as m:
        m.setattr(fftcheck, "ifft2", lambda x: REAL_IFFT2(x) * 1e-6)
        with pytest.raises(FFTCheckError, match="sensor function inverse FFT"):
            generate_scene(cfg, 0)
    from sar_atd_training.clutter import generator

    real = generator.apply_sensor_function
    monkeypatch.setattr(generator, "apply_sensor_function", lambda *a, **k: real(*a, **k) * 1e-6)
    with pytest.raises(ClutterStatisticsError, match=r"median amplitude .* outside the "
                                                     r"calibrated range"):
        generate_scene(cfg, 0)
    bad = good.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ClutterStatisticsError, match="1 non-finite pixels"):
        check_scene_statistics(bad, cfg)


def test_runtime_fft_failure_caught_by_parseval_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """A transform that goes wrong after its plan was checked still cannot pass silently:
    the sensor function's Parseval check refuses the output."""
    x = noise((4, 64, 64), seed=3)
    apply_sensor_function(x)  # plan checked and cached as native
    monkeypatch.setattr(torch.fft, "ifft2", broken_ifft2(lambda x: True))
    with pytest.raises(FFTCheckError, match=r"sensor function inverse FFT .* gave wrong values"):
        apply_sensor_function(x)


def test_overlay_batch_refused_when_composition_is_wrong(
        monkeypatch: pytest.MonkeyPatch, plain_grass_config: Callable[[int, int], object]
        ) -> None:
    """An overlay batch with non-finite pixels or an off-level image is refused before
    training on it; a correct batch passes."""
    from sar_atd_training.clutter import BackgroundSet
    from sar_atd_training.overlay import pipeline

    grass = BackgroundSet.from_arrays([generate_scene(plain_grass_config(300, 300), 0)])
    cfg = OverlayConfig(image_size=192, targets_per_image=(1, 1))
    p = OverlayPipeline(cfg, make_toy_bank(), grass)
    assert len(p.generate(2, torch.Generator().manual_seed(0))) == 2
    real = pipeline.apply_sensor_function
    monkeypatch.setattr(pipeline, "apply_sensor_function",
                        lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(OverlayStatisticsError, match="non-finite pixels"):
        p.generate(2, torch.Generator().manual_seed(0))
    mag = torch.full((3, 64, 64), 0.03)
    mag[1] *= 40.0
    with pytest.raises(OverlayStatisticsError, match=r"image 1 has median amplitude 1\.2, "
                                                     r"40 x its background"):
        pipeline.check_batch_statistics(mag, torch.full((3,), 0.03))
    pipeline.check_batch_statistics(mag[[0, 2]], torch.full((2,), 0.03))
    pipeline.check_batch_statistics(mag, torch.zeros(3))  # all-zero backgrounds: level free


@pytest.mark.slow
def test_clutter_cli_at_2048_survives_a_wrong_ifft(
        tmp_path, monkeypatch: pytest.MonkeyPatch,
        plain_grass_config: Callable[[int, int], object]) -> None:
    """The reported failure end to end: ``sar-atd clutter --height 2048 --width 2048`` with
    torch's complex64 2048 x 2048 inverse FFT wrong writes the same scene as with a correct
    FFT (the guard falls back), and never a scene at the wrong level."""
    import yaml

    from sar_atd.config import to_dict
    from sar_atd_training.cli import main

    cfg = tmp_path / "plain.yaml"
    cfg.write_text(yaml.safe_dump({"clutter": to_dict(plain_grass_config(64, 64))}))
    argv = ["clutter", "--config", str(cfg), "--height", str(N), "--width", str(N)]
    assert main([*argv, "--out", str(tmp_path / "good.npy")]) == 0
    monkeypatch.setattr(torch.fft, "ifft2", broken_ifft2(
        lambda x: x.dtype == torch.complex64 and tuple(x.shape[-2:]) == (N, N)))
    fftcheck.clear_plans()
    assert main([*argv, "--out", str(tmp_path / "guarded.npy")]) == 0
    good, guarded = np.load(tmp_path / "good.npy"), np.load(tmp_path / "guarded.npy")
    assert guarded.shape == (N, N)
    assert np.abs(guarded - good).max() < 1e-5 * np.abs(good).max()
    assert 0.02 < np.median(np.abs(guarded)) < 0.06
