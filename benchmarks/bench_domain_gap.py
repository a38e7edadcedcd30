"""Domain gap between real MSTAR chips and the synthetic overlay training images.

``python -m benchmarks.bench_domain_gap [--chips 1000] [--images 48] [--config PATH]``

Measures the same 8-bit statistics on

* **real** 17 deg MSTAR chips (``../shared/data/mstar_soc_17deg``) with their SARBake masks:
  per chip, clutter (mask 0) median and percentiles, target (mask 1) median / p90 / p99, shadow
  (mask 2) median, target-to-clutter ratios, the share of saturated target pixels, and the
  tight target box (w, h pixels);
* **synthetic** training images from :class:`~sar_atd_training.overlay.OverlayPipeline`
  (physics-simulator signatures of all ten classes on a generated clutter scene), per target in
  a 128 x 128 window centred on its box (the context of a real chip): target = the sample's
  per-target visible mask, shadow = the placed shadow masks, clutter = the rest; once with the
  paper's quarter-power LUT (default :class:`OverlayConfig`) and once with the rendering
  randomisation of ``--config`` (default ``training/configs/overlay_hybrid.yaml``, section
  ``overlay``), each also split by the drawn ``gamma`` (quarter-power-like vs linear-like).

Printed: a real-vs-synthetic table (median [p10, p90] over chips / targets), the amplitude
target-to-clutter ratio of the simulator (from the complex images, before rendering), and per
class box sizes real vs simulated. Skips with a message when the real data is absent.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sar_atd.boxes import mask_box
from sar_atd.config import load_config
from sar_atd.sar.chips import MSTAR_CLASSES, list_chips, read_chip, read_sarbake_mask
from sar_atd_training.paths import MISSING_DATA_MESSAGE, mstar_chips_dir

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "training" / "configs" / "overlay_hybrid.yaml"
WINDOW = 128
"""Side (pixels) of the window measured around each synthetic target (a real chip's size)."""

STATS = (
    ("clut_p10", "clutter p10 (mask 0)"),
    ("clut_med", "clutter median"),
    ("clut_p90", "clutter p90"),
    ("clut_p99", "clutter p99"),
    ("clut_zero", "clutter share at 0 (%)"),
    ("tgt_med", "target median (mask 1)"),
    ("tgt_p90", "target p90"),
    ("tgt_p99", "target p99"),
    ("tgt_sat", "target share at 255 (%)"),
    ("shad_med", "shadow median (mask 2)"),
    ("tcr_med", "TCR tgt med / clut med"),
    ("tcr_p90", "TCR tgt p90 / clut med"),
    ("csr_med", "clut med / shadow med"),
    ("box_w", "target box w (px)"),
    ("box_h", "target box h (px)"),
    ("tgt_px", "target pixels"),
)


def region_stats(img: np.ndarray, target: np.ndarray, shadow: np.ndarray,
                 clutter: np.ndarray) -> dict[str, float]:
    """8-bit statistics of one chip / window.

    Args:
        img: uint8 (H, W).
        target, shadow, clutter: bool (H, W) region masks (target non-empty).

    Returns:
        The ``STATS`` keys (box excluded) as floats; NaN where a region is empty.
    """
    v = img.astype(np.float64)
    t, c = v[target], v[clutter]
    s = v[shadow]
    out = {
        "clut_p10": np.percentile(c, 10), "clut_med": np.median(c),
        "clut_p90": np.percentile(c, 90), "clut_p99": np.percentile(c, 99),
        "clut_zero": 100.0 * float(np.mean(c == 0)),
        "tgt_med": np.median(t), "tgt_p90": np.percentile(t, 90),
        "tgt_p99": np.percentile(t, 99), "tgt_sat": 100.0 * float(np.mean(t >= 255)),
        "shad_med": np.median(s) if s.size else np.nan, "tgt_px": float(t.size),
    }
    cm = max(out["clut_med"], 0.5)  # an 8-bit median of 0 would divide by zero
    out["tcr_med"] = out["tgt_med"] / cm
    out["tcr_p90"] = out["tgt_p90"] / cm
    out["csr_med"] = out["clut_med"] / max(out["shad_med"], 0.5) if s.size else np.nan
    return {k: float(x) for k, x in out.items()}


def real_stats(chips_dir: Path, n: int, seed: int) -> list[dict[str, float | str]]:
    """Statistics of ``n`` random real chips with SARBake masks (one dict per chip)."""
    recs = [r for r in list_chips(chips_dir) if r.mask_path is not None]
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(recs), size=min(n, len(recs)), replace=False)
    rows: list[dict[str, float | str]] = []
    for i in tqdm(sorted(pick), desc="real chips", leave=False):
        rec = recs[i]
        img = read_chip(rec.image_path)
        mask = read_sarbake_mask(rec.mask_path, img.shape)
        box = mask_box(mask)
        if box is None:
            continue
        st: dict[str, float | str] = dict(region_stats(img, mask == 1, mask == 2, mask == 0))
        st["box_w"], st["box_h"] = float(box[2] - box[0]), float(box[3] - box[1])
        st["class"] = rec.class_name
        rows.append(st)
    return rows


def simulated_bank(classes: Sequence[str], n_azimuths: int, seed: int):  # noqa: ANN201
    """An in-memory bank of simulator signatures: ``n_azimuths`` per class, 17 deg."""
    from sar_atd_training.overlay import toybank

    az = tuple(float(a) for a in np.linspace(0.0, 360.0, n_azimuths, endpoint=False) + 7.0)
    return toybank.simulated_bank(classes=tuple(classes), azimuths_deg=az, seed=seed)


def synthetic_stats(pipe, n_images: int, seed: int, batch: int = 4,  # noqa: ANN001
                    desc: str = "synthetic") -> list[dict[str, float | str]]:
    """Per-target statistics of ``n_images`` generated images (one dict per target)."""
    g = torch.Generator().manual_seed(seed)
    rows: list[dict[str, float | str]] = []
    h = WINDOW // 2
    with tqdm(total=n_images, desc=desc, leave=False) as bar:
        while bar.n < n_images:
            samples = pipe.generate(min(batch, n_images - bar.n), g, keep_complex=True)
            for s in samples:
                img = s.image.cpu().numpy()
                amp = s.complex_image.abs().cpu().numpy()
                masks = s.masks.cpu().numpy()
                any_t = masks.any(0)
                shadow = s.shadow.cpu().numpy() & ~any_t
                n = img.shape[0]
                objs = [o for o in s.meta["objects"] if o["is_target"]]
                for k, (box, o) in enumerate(zip(s.boxes.cpu().numpy(), objs)):
                    cy, cx = int((box[1] + box[3]) / 2), int((box[0] + box[2]) / 2)
                    ys = slice(max(0, cy - h), min(n, cy + h))
                    xs = slice(max(0, cx - h), min(n, cx + h))
                    tgt = masks[k][ys, xs]
                    clut = ~any_t[ys, xs] & ~shadow[ys, xs]
                    st: dict[str, float | str] = dict(region_stats(
                        img[ys, xs], tgt, shadow[ys, xs], clut))
                    st["box_w"], st["box_h"] = float(box[2] - box[0]), float(box[3] - box[1])
                    st["class"] = o["class_name"]
                    st["gamma"] = float(s.meta["render"]["gamma"])
                    a = amp[ys, xs]
                    st["amp_tcr"] = float(np.median(a[tgt]) / np.median(a[clut]))
                    st["amp_tcr90"] = float(np.percentile(a[tgt], 90) / np.median(a[clut]))
                    st["amp_clut"] = float(np.median(a[clut]))
                    sh = shadow[ys, xs]
                    st["amp_csr"] = (float(np.median(a[clut]) / np.median(a[sh])) if sh.any()
                                     else float("nan"))
                    rows.append(st)
            bar.update(len(samples))
    return rows


def wh(rows: Sequence[dict]) -> str:
    """``median w x median h [count]`` of the boxes of ``rows``."""
    if not rows:
        return "n/a"
    return (f"{np.median([r['box_w'] for r in rows]):.0f} x "
            f"{np.median([r['box_h'] for r in rows]):.0f} [{len(rows)}]")


def px(rows: Sequence[dict]) -> str:
    """Median target pixel count of ``rows``."""
    return f"{np.median([r['tgt_px'] for r in rows]):.0f}" if rows else "n/a"


def support_stats(bank) -> list[dict[str, float | str]]:  # noqa: ANN001
    """Tight box (w, h) and pixel count of each bank record's support mask."""
    rows: list[dict[str, float | str]] = []
    for i, rec in enumerate(bank.records):
        if rec.kind != "target":
            continue
        sup = np.asarray(bank.support(i), bool)
        ys, xs = np.nonzero(sup)
        if ys.size == 0:
            continue
        rows.append({"class": rec.class_name, "box_w": float(xs.max() - xs.min() + 1),
                     "box_h": float(ys.max() - ys.min() + 1), "tgt_px": float(ys.size)})
    return rows


def summary(rows: Sequence[dict], key: str) -> str:
    """``median [p10, p90]`` of ``key`` over rows (NaNs ignored)."""
    v = np.array([r[key] for r in rows if key in r], np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "n/a"
    p10, med, p90 = np.percentile(v, [10, 50, 90])
    fmt = "{:.2f}" if abs(med) < 10 else "{:.0f}"
    return f"{fmt.format(med)} [{fmt.format(p10)}, {fmt.format(p90)}]"


def print_table(columns: Sequence[tuple[str, Sequence[dict]]]) -> None:
    """One row per statistic, one column per data set."""
    width = 24
    head = f"{'statistic (8-bit)':<28}" + "".join(f"{name:>{width}}" for name, _ in columns)
    print(head)
    print("-" * len(head))
    print(f"{'count (chips / targets)':<28}" + "".join(f"{len(rows):>{width}}"
                                                      for _, rows in columns))
    for key, label in STATS:
        print(f"{label:<28}" + "".join(f"{summary(rows, key):>{width}}" for _, rows in columns))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=int, default=1000, help="real chips sampled (default 1000)")
    ap.add_argument("--images", type=int, default=48, help="synthetic images per setting")
    ap.add_argument("--image-size", type=int, default=640)
    ap.add_argument("--azimuths", type=int, default=8, help="simulated azimuths per class")
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                    help="YAML with the randomised OverlayConfig (section 'overlay')")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    chips_dir = mstar_chips_dir()
    if chips_dir is None or not Path(chips_dir).is_dir():
        print(f"SKIP: {MISSING_DATA_MESSAGE}; nothing to compare against")
        return 0

    from sar_atd_training.clutter import BackgroundSet, ClutterConfig
    from sar_atd_training.overlay import OverlayConfig, OverlayPipeline

    t0 = time.perf_counter()
    real = real_stats(Path(chips_dir), args.chips, args.seed)
    t_real = time.perf_counter() - t0
    try:
        bank = simulated_bank(MSTAR_CLASSES, args.azimuths, args.seed)
    except ImportError as err:
        print(f"SKIP synthetic side: the simulator is not importable ({err})")
        return 0
    bgs = BackgroundSet.generated(1, ClutterConfig(), seed=args.seed)
    base = OverlayConfig(image_size=args.image_size)
    if args.config.is_file():
        rand = load_config(OverlayConfig, args.config, section="overlay")
        rand_name = "YAML"
    else:
        print(f"note: {args.config} not found; randomised column uses built-in ranges")
        rand = OverlayConfig(render_gamma_range=(0.5, 1.1), render_ref="quantile",
                             render_ref_level_range=(10.0, 66.0),
                             render_black_quantile_range=(0.0, 0.02))
        rand_name = "built-in"
    rand = dataclasses.replace(rand, image_size=args.image_size, ood_per_image=(0, 0))
    t0 = time.perf_counter()
    syn = synthetic_stats(OverlayPipeline(base, bank, bgs), args.images, args.seed + 1,
                          desc="synthetic (paper LUT)")
    syn_r = synthetic_stats(OverlayPipeline(rand, bank, bgs), args.images, args.seed + 2,
                            desc="synthetic (randomised)")
    t_syn = time.perf_counter() - t0
    g_mid = 0.5 * (rand.render_gamma_range[0] + rand.render_gamma_range[1])
    lo = [r for r in syn_r if r["gamma"] < g_mid]
    hi = [r for r in syn_r if r["gamma"] >= g_mid]

    print(f"Domain gap: {len(real)} real 17 deg chips ({chips_dir}) vs simulator signatures "
          f"({len(bank)}: {len(MSTAR_CLASSES)} classes x {args.azimuths} azimuths) on generated "
          f"clutter, {args.image_size} px images, per-target {WINDOW} px windows")
    print("cells: median [p10, p90] over chips / targets; 8-bit values unless stated\n")
    print_table([("real MSTAR", real), ("synth paper LUT", syn),
                 (f"synth rand ({rand_name})", syn_r),
                 (f"rand gamma<{g_mid:.2f}", lo), (f"rand gamma>={g_mid:.2f}", hi)])
    print("\nrandomised rendering: gamma", rand.render_gamma_range, "ref", rand.render_ref,
          "quantile", rand.render_ref_quantile_range, "level", rand.render_ref_level_range,
          "black quantile", rand.render_black_quantile_range)

    print(f"\nrandomised column: {args.config if args.config.is_file() else 'built-in ranges'}")
    print("\nAmplitude (linear, before rendering) of the synthetic targets (paper-LUT run, default "
          "noise_db); real chips are a linear rendering, so their 8-bit ratios estimate the same "
          "quantity:")
    print(f"  synthetic amplitude TCR median/clutter median : {summary(syn, 'amp_tcr')}")
    print(f"  synthetic amplitude TCR p90/clutter median    : {summary(syn, 'amp_tcr90')}")
    print(f"  synthetic clutter median amplitude            : "
          f"{summary([{'a': r['amp_clut'] * 1000} for r in syn], 'a')} (x1e-3)")
    print(f"  synthetic amplitude clutter/shadow medians    : {summary(syn, 'amp_csr')}")
    print(f"  real 8-bit TCR median (linear, ~amplitude)    : {summary(real, 'tcr_med')}")
    print(f"  real 8-bit TCR p90 (saturated at 255)         : {summary(real, 'tcr_p90')}")
    print(f"  real 8-bit clutter/shadow medians (~amplitude): {summary(real, 'csr_med')}")

    sup = support_stats(bank)
    print(f"\nTarget size per class, median w x h (px) [n] and median pixel count: real SARBake "
          f"target masks vs the bank's support masks ({args.azimuths} azimuths/class) vs the "
          f"pipeline's visible boxes/masks (both synthetic runs)")
    print(f"{'class':<10}{'real w x h':>16}{'support w x h':>18}{'visible w x h':>18}"
          f"{'real px':>9}{'sup px':>8}{'vis px':>8}")
    for cls in MSTAR_CLASSES:
        rr = [r for r in real if r["class"] == cls]
        ss = [r for r in syn + syn_r if r["class"] == cls]
        bb = [r for r in sup if r["class"] == cls]
        print(f"{cls:<10}{wh(rr):>16}{wh(bb):>18}{wh(ss):>18}{px(rr):>9}{px(bb):>8}"
              f"{px(ss):>8}")
    print(f"{'all':<10}{wh(real):>16}{wh(sup):>18}{wh(syn + syn_r):>18}{px(real):>9}"
          f"{px(sup):>8}{px(syn + syn_r):>8}")
    print(f"\n(real chips {t_real:.1f} s, synthetic {t_syn:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
