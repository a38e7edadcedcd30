"""Sensor-model figures: PSF quality against the MSTAR header, and imaging speed.

    python -m benchmarks.bench_sensor [--repeats 5] [--device cpu|cuda]

Prints the measured -3 dB widths (range, cross-range, m), peak sidelobe ratio and
integrated sidelobe ratio (dB) of an isolated point imaged through the MSTAR sensor model;
the bandwidth (GHz) and synthetic aperture (deg) the model derives from the resolution,
beside the real MSTAR header values (``../shared/data/fixtures/HB14931.015`` when present);
the speed of ``form_image`` (scatterers/s, ms per 128x128 chip for 1k and 10k
scatterers) and ``apply_sensor_function`` (640x640 images/s); and the cost of the FFT guard
(:mod:`sar_atd.sar.fftcheck`): the one-off known-answer check per new shape, and the per-call
overhead of the guarded sensor function (plan lookup + two Parseval checks) against the bare
torch transforms, at 640x640 and 2048x2048.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from sar_atd.sar.psf import psf_metrics
from sar_atd.sar.sensor import SensorConfig, apply_sensor_function, form_image


def spectral_occupancy(img: np.ndarray, threshold_db: float) -> tuple[float, float]:
    """Fraction of (range, cross-range) frequency bins whose power, summed over the other
    axis, is within ``threshold_db`` of the strongest bin: the occupied band / grid band."""
    power = np.abs(np.fft.fft2(img)) ** 2
    fr = []
    for axis in (1, 0):
        p = power.sum(axis=axis)
        fr.append(float((p > p.max() * 10 ** (-threshold_db / 10)).mean()))
    return fr[0], fr[1]


def _time(fn: Callable[[], object], repeats: int, sync: bool) -> float:
    """Median wall time (s) of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _header_sensor() -> tuple[SensorConfig, dict[str, float | None], np.ndarray | None]:
    """The sensor from the real MSTAR header (and the real image) when the data is present,
    else the default sensor, the DESIGN.md header values and no image."""
    from sar_atd.sar.mstar import mstar_to_sensor_config, read_mstar
    from sar_atd_training.paths import shared_data_dir

    d = shared_data_dir()
    path = d / "fixtures" / "HB14931.015" if d else None
    if path is None or not path.is_file():
        print("(real MSTAR file not found: using the default SensorConfig; the header column "
              "shows the DESIGN.md values)")
        return SensorConfig(), {"bandwidth_hz": 0.591e9, "range_3db_m": 0.3078,
                                "xrange_3db_m": 0.3153, "res_m": 0.3047}, None
    m = read_mstar(path)
    h = m.header
    print(f"header: {path}")
    return mstar_to_sensor_config(h), {"bandwidth_hz": h.bandwidth_hz,
                                       "range_3db_m": h.range_3db_width_m,
                                       "xrange_3db_m": h.xrange_3db_width_m,
                                       "res_m": h.range_res_m}, m.image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_sensor",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median)")
    parser.add_argument("--device", default="cpu", help="torch device for the speed figures")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    sync = device.type == "cuda"

    sensor, hdr, real = _header_sensor()
    n = 128
    img = form_image(np.zeros((1, 3)), np.ones(1), (n, n), 15.0, sensor)
    psf = psf_metrics(img, sensor, up=16)
    print("\nPSF of an isolated point (128x128, 16x FFT upsampling)")
    print(f"  {'':28s}{'model':>10s}{'MSTAR header':>14s}{'goal':>14s}")
    print(f"  {'-3 dB width range (m)':28s}{psf.range_width_m:10.4f}"
          f"{hdr['range_3db_m'] or float('nan'):14.4f}{'0.30 +- 0.02':>14s}")
    print(f"  {'-3 dB width cross-range (m)':28s}{psf.xrange_width_m:10.4f}"
          f"{hdr['xrange_3db_m'] or float('nan'):14.4f}{'0.30 +- 0.02':>14s}")
    print(f"  {'PSL 2-D (dB)':28s}{psf.psl_db:10.2f}{'-':>14s}{'<= -30':>14s}")
    print(f"  {'PSL 1-D range (dB)':28s}{psf.range_psl_db:10.2f}{'-':>14s}")
    print(f"  {'PSL 1-D cross-range (dB)':28s}{psf.xrange_psl_db:10.2f}{'-':>14s}")
    print(f"  {'ISLR 2-D (dB)':28s}{psf.islr_db:10.2f}{'-':>14s}")
    aperture_deg = math.degrees(sensor.aperture_rad)
    print("\nDerived from the resolution (-35 dB Taylor, broadening "
          f"{sensor.broadening:.4f})")
    print(f"  bandwidth (GHz)      model {sensor.bandwidth_hz / 1e9:.4f}   header "
          f"{(hdr['bandwidth_hz'] or float('nan')) / 1e9:.4f}")
    print(f"  aperture (deg)       model {aperture_deg:.3f}   header: not recorded "
          f"(lambda/(2 rho) unweighted: "
          f"{math.degrees(sensor.wavelength_m / (2 * sensor.xrange_res_m)):.3f})")

    if real is not None:
        model = form_image(np.zeros((1, 3)), np.ones(1), real.shape, 15.0, sensor)
        print(f"\nOccupied spectrum, fraction of the grid band (range, cross-range), real "
              f"{real.shape[0]}x{real.shape[1]} MSTAR image vs model point")
        for thr in (10.0, 15.0, 20.0):
            fr, fm = spectral_occupancy(real, thr), spectral_occupancy(model, thr)
            print(f"  within {thr:4.0f} dB of peak   real {fr[0]:.3f}, {fr[1]:.3f}   "
                  f"model {fm[0]:.3f}, {fm[1]:.3f}")

    print(f"\nSpeed on {device} (torch threads {torch.get_num_threads()}, median of "
          f"{args.repeats})")
    rng = np.random.default_rng(0)
    for count in (1_000, 10_000):
        xyz = torch.as_tensor(rng.uniform(-6, 6, (count, 3)), device=device)
        amp = torch.as_tensor(rng.standard_normal(count), device=device)
        t = _time(lambda xyz=xyz, amp=amp: form_image(xyz, amp, (n, n), 15.0, sensor,
                                                       ideal=True),
                  args.repeats, sync)
        print(f"  form_image {count:>6d} scatterers  {t * 1e3:8.2f} ms / 128x128 chip   "
              f"{count / t:12.3e} scatterers/s")
    for batch in (1, 8):
        x = torch.randn((batch, 640, 640), dtype=torch.complex64, device=device)
        rr = torch.full((batch,), 0.35, device=device)
        t = _time(lambda x=x, rr=rr: apply_sensor_function(x, sensor, rr, rr),
                  args.repeats, sync)
        print(f"  apply_sensor_function 640x640, batch {batch}:  {t * 1e3:8.2f} ms   "
              f"{batch / t:8.1f} images/s")
    fft_guard_figures(sensor, device, args.repeats, sync)
    return 0


def fft_guard_figures(sensor: SensorConfig, device: torch.device, repeats: int,
                      sync: bool) -> None:
    """Known-answer check time per new shape and the guard's per-call overhead."""
    from sar_atd.sar import fftcheck
    from sar_atd.sar.sensor import spectral_window

    print(f"\nFFT guard on {device} (torch threads {torch.get_num_threads()}, median of "
          f"{repeats})")
    for shape in ((640, 640), (2048, 2048)):
        x = torch.randn(shape, dtype=torch.complex64, device=device)
        torch.fft.ifft2(torch.fft.fft2(x))  # library plan warm-up, outside the timings
        fftcheck.clear_plans()
        t0 = time.perf_counter()
        strategy = fftcheck.plan_for(shape, x.dtype, x.device)
        check = time.perf_counter() - t0
        h, w = shape
        wr = spectral_window(h, sensor.range_spacing_m, sensor.range_res_m,
                             sensor.taylor_sll_db, sensor.taylor_nbar, device)
        wc = spectral_window(w, sensor.xrange_spacing_m, sensor.xrange_res_m,
                             sensor.taylor_sll_db, sensor.taylor_nbar, device)
        weights = wr[:, None] * wc[None, :]
        bare = _time(lambda x=x, wt=weights: torch.fft.ifft2(torch.fft.fft2(x) * wt),
                     repeats, sync)
        guarded = _time(lambda x=x: apply_sensor_function(x, sensor), repeats, sync)
        print(f"  {h}x{w}: strategy {strategy}, one-off check {check * 1e3:7.1f} ms; "
              f"sensor function {guarded * 1e3:7.1f} ms guarded vs {bare * 1e3:7.1f} ms bare "
              f"torch FFTs ({guarded / bare:.2f}x, includes the window computation)")


if __name__ == "__main__":
    raise SystemExit(main())
