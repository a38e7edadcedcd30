"""Realism of the generated field clutter vs the REAL clutter around real MSTAR chips.

``python -m benchmarks.bench_clutter [--chips 300] [--scenes 2]``

Real clutter: pixels with SARBake value 0 in ``../shared/data/mstar_soc_17deg`` chips (skips
with a message when absent). The chips are an unknown monotonic 8-bit rendering (linear
magnitude with contrast enhancement), so only rendering-invariant statistics are compared:

* amplitude normalised by its median (real: 8-bit value / 255 read as linear magnitude,
  normalised per chip by the chip's clutter median; generated: |s| of grass-field pixels,
  normalised per 128 x 128 patch by the patch median) -> Kolmogorov-Smirnov distance; also
  after quantising the generated amplitude like the real chips (linear 8-bit at the real
  chips' median clutter level) to include the 8-bit quantisation;
* coefficient of variation (std / mean) of the normalised amplitude;
* correlation length: lag (pixels) where the autocorrelation of the amplitude falls to 1/e,
  along range (rows) and cross-range (columns), masked to clutter pixels (real chips).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
from scipy import stats

from sar_atd.sar.chips import list_chips, read_chip, read_sarbake_mask
from sar_atd_training.clutter import ClutterConfig, generate_scene
from sar_atd_training.paths import MISSING_DATA_MESSAGE, mstar_chips_dir


def masked_autocorr(a: np.ndarray, m: np.ndarray, max_lag: int = 12) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """Normalised autocorrelation of ``a`` over mask ``m`` at lags 0..max_lag (rows, cols)."""
    a = np.where(m, a - a[m].mean(), 0.0)
    mf = m.astype(float)
    h, w = a.shape
    fa = np.fft.rfft2(a, s=(2 * h, 2 * w))
    fm = np.fft.rfft2(mf, s=(2 * h, 2 * w))
    num = np.fft.irfft2(fa * np.conj(fa), s=(2 * h, 2 * w))
    den = np.fft.irfft2(fm * np.conj(fm), s=(2 * h, 2 * w))
    with np.errstate(invalid="ignore", divide="ignore"):
        ac = num / np.maximum(den, 1.0)
    ac = ac / ac[0, 0]
    return ac[: max_lag + 1, 0], ac[0, : max_lag + 1]


def corr_length(ac: np.ndarray) -> float:
    """Lag (pixels, linear interpolation) where the autocorrelation first drops to 1/e."""
    thr = 1.0 / math.e
    below = np.nonzero(ac < thr)[0]
    if below.size == 0:
        return float("nan")
    i = below[0]
    return float(i - 1 + (ac[i - 1] - thr) / (ac[i - 1] - ac[i]))


def real_stats(n_chips: int, seed: int) -> dict[str, object] | None:
    root = mstar_chips_dir()
    if root is None:
        return None
    recs = [r for r in list_chips(root) if r.mask_path is not None]
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(recs), min(n_chips, len(recs)), replace=False)
    vals, acr, acc, med_u8 = [], [], [], []
    for i in pick:
        img = read_chip(recs[i].image_path)
        mask = read_sarbake_mask(recs[i].mask_path, img.shape) == 0
        a = img.astype(np.float64) / 255.0  # linear magnitude up to an unknown gain
        med = np.median(a[mask])
        if med <= 0:
            continue
        med_u8.append(np.median(img[mask]))
        vals.append(a[mask] / med)
        r, c = masked_autocorr(a / med, mask)
        acr.append(r)
        acc.append(c)
    return {"values": np.concatenate(vals), "ac_r": np.mean(acr, 0), "ac_c": np.mean(acc, 0),
            "median_u8": float(np.median(med_u8)), "n": len(vals)}


def generated_stats(n_scenes: int, patch: int = 128) -> dict[str, object]:
    vals, acr, acc = [], [], []
    for seed in range(n_scenes):
        scene, layers = generate_scene(ClutterConfig(), seed, return_layers=True)
        amp = np.abs(scene).astype(np.float64)
        field = layers["field"] & ~layers["point"]
        for r in range(0, amp.shape[0] - patch + 1, patch):
            for c in range(0, amp.shape[1] - patch + 1, patch):
                m = field[r:r + patch, c:c + patch]
                if m.mean() < 0.98:  # whole patches of plain field only
                    continue
                a = amp[r:r + patch, c:c + patch]
                a = a / np.median(a[m])
                vals.append(a[m])
                rr, cc = masked_autocorr(a, m)
                acr.append(rr)
                acc.append(cc)
    return {"values": np.concatenate(vals), "ac_r": np.mean(acr, 0), "ac_c": np.mean(acc, 0),
            "n": len(vals)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=int, default=300, help="real chips sampled")
    ap.add_argument("--scenes", type=int, default=2, help="generated scenes")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    real = real_stats(args.chips, args.seed)
    if real is None:
        print(f"SKIP: {MISSING_DATA_MESSAGE}")
        return 0
    gen = generated_stats(args.scenes)
    rv, gv = real["values"], gen["values"]
    rng = np.random.default_rng(args.seed)
    gv_s = rng.choice(gv, min(gv.size, 400_000), replace=False)
    rv_s = rng.choice(rv, min(rv.size, 400_000), replace=False)
    ks = stats.ks_2samp(rv_s, gv_s).statistic
    q = np.clip(np.round(gv_s * real["median_u8"]), 0, 255)
    q = q / np.median(q)
    ks_q = stats.ks_2samp(rv_s, q).statistic
    rayleigh = np.sqrt(-np.log(rng.random(400_000)) / math.log(2))  # median-normalised
    ks_ray = stats.ks_2samp(rv_s, rayleigh).statistic
    print(f"real clutter: {real['n']} chips (SARBake value 0 pixels), "
          f"median 8-bit level {real['median_u8']:.0f}; generated: {gen['n']} field patches "
          f"of 128x128 from {args.scenes} scenes")
    print(f"{'statistic':42s} {'real':>8s} {'generated':>10s}")
    print(f"{'CV of amplitude (Rayleigh 0.523)':42s} {rv.std() / rv.mean():8.3f} "
          f"{gv.std() / gv.mean():10.3f}")
    for p in (10, 90, 99):
        print(f"{f'{p}th percentile of amplitude/median':42s} {np.percentile(rv, p):8.3f} "
              f"{np.percentile(gv, p):10.3f}")
    print(f"{'KS distance (amplitude/median)':42s} {'':8s} {ks:10.3f}")
    print(f"{'KS distance (8-bit quantised like real)':42s} {'':8s} {ks_q:10.3f}")
    print(f"{'KS distance real vs ideal Rayleigh':42s} {'':8s} {ks_ray:10.3f}")
    for name, key in (("range (rows)", "ac_r"), ("cross-range (cols)", "ac_c")):
        print(f"{f'correlation length 1/e, {name}, px':42s} {corr_length(real[key]):8.2f} "
              f"{corr_length(gen[key]):10.2f}")
    print("autocorrelation at lags 0..4 (range):  real "
          + " ".join(f"{v:.2f}" for v in real["ac_r"][:5]) + " | gen "
          + " ".join(f"{v:.2f}" for v in gen["ac_r"][:5]))
    print("autocorrelation at lags 0..4 (xrange): real "
          + " ".join(f"{v:.2f}" for v in real["ac_c"][:5]) + " | gen "
          + " ".join(f"{v:.2f}" for v in gen["ac_c"][:5]))
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
