"""Per-class target geometry of the simulator against REAL MSTAR chips and SARBake masks.

Run: ``python -m benchmarks.bench_sim_geometry --bank BANK [--bank OTHER ...]
[--subset heldback|tune|all] [--step 10] [--json OUT.json]``.

Real side: the 17 deg dev chips with their SARBake masks, one split of them (``heldback``
by default: the 20 % held back by SHA-256 of the chip name, never used for choices;
``tune`` is where choices are made). Synthetic side: every 17 deg target of each bank (the
chips carry no azimuth, so all azimuths are used; ``--step`` thins them), rendered as a chip
in grass clutter (:func:`~sar_atd_training.simulator.measure.synthetic_chip`), with the
support as target mask. Without ``--bank`` the current models are simulated on the fly
every ``--step`` degrees (``--edge-model``). Both sides are measured by
:func:`~sar_atd_training.simulator.measure.measure_geometry`; per class the table prints
10 % trimmed means of: target-mask range extent (``len``) and cross-range extent (``wid``)
in pixels; where the bright returns end relative to the mask on each side (far = shadow
side, near, left, right; px, > 0 beyond the mask); the shadow's start behind the target
(``gap``, px); the share of the bright returns inside the mask (``in``) and of the mask
that is bright (``fill``); the level of the shadow's first 3 px behind the target over the
clutter median (``shd``). The last block compares each bank's side offsets with the real
ones (|mean sim - mean real|, px). Exits 0 with a message without ../shared/data.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

FIELDS_SHOWN = ("len", "wid", "far", "near", "left", "right", "gap", "in", "fill", "shd")


def real_rows(chips: Path, subset: str) -> tuple[dict[str, np.ndarray], float]:
    """Per-class (N, 10) geometry rows of the real chips of ``subset`` and the median
    shadow/clutter magnitude ratio over them."""
    from sar_atd.sar.chips import read_chip, read_sarbake_mask
    from sar_atd_training.quality.diagnosis import chip_records
    from sar_atd_training.simulator.measure import measure_geometry

    rows: dict[str, list[np.ndarray]] = defaultdict(list)
    ratios = []
    for rec in chip_records(chips, subset):  # type: ignore[arg-type]
        img = read_chip(rec.image_path).astype(np.float64)
        mask = read_sarbake_mask(rec.mask_path, img.shape)
        g = measure_geometry(img, mask)
        if g is None:
            continue
        rows[rec.class_name].append(g.as_row())
        clutter, shadow = img[mask == 0], img[mask == 2]
        if shadow.size >= 20 and np.median(clutter) > 0:
            ratios.append(float(np.median(shadow) / np.median(clutter)))
    return ({k: np.array(v) for k, v in rows.items()},
            float(np.median(ratios)) if ratios else float("nan"))


def synthetic_rows(bank_path: str | None, classes: list[str], step: float,
                   depression: float = 17.0, edge_model: str = "isotropic"
                   ) -> dict[str, np.ndarray]:
    """Per-class (N, 10) geometry rows of simulated 17 deg targets (bank or on the fly, with
    ``edge_model``)."""
    from sar_atd_training.simulator import simulate_signature
    from sar_atd_training.simulator.measure import measure_geometry, synthetic_chip

    rows: dict[str, list[np.ndarray]] = defaultdict(list)
    if bank_path is None:
        for c in classes:
            for i, az in enumerate(np.arange(0.0, 360.0, step)):
                sig, sh, sup = simulate_signature(c, float(az), depression, seed=i,
                                                  edge_model=edge_model)
                img, m = synthetic_chip(sig, sup, sh, np.random.default_rng(i))
                g = measure_geometry(img, m)
                if g is not None:
                    rows[c].append(g.as_row())
        return {k: np.array(v) for k, v in rows.items()}
    from sar_atd_training.simulator.bank import SignatureBank

    bank = SignatureBank.open(bank_path, verify="size")
    last: dict[str, float] = {}
    for i, r in enumerate(bank.records):
        if r.kind != "target" or r.class_name not in classes:
            continue
        if abs(r.depression_deg - depression) > 1e-6:
            continue
        if r.class_name in last and r.azimuth_deg - last[r.class_name] < step - 1e-6:
            continue
        last[r.class_name] = r.azimuth_deg
        img, m = synthetic_chip(bank.signature(i), bank.support(i), bank.shadow(i),
                                np.random.default_rng(i))
        g = measure_geometry(img, m)
        if g is not None:
            rows[r.class_name].append(g.as_row())
    return {k: np.array(v) for k, v in rows.items()}


TRIM = 0.1
"""Share cut from each end before averaging (a 10 % trimmed mean: robust to the odd failed
measurement, and finer than a median of whole-pixel offsets)."""


def trimmed_means(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-class 10 % trimmed means of every column (NaNs ignored)."""
    from scipy.stats import trim_mean

    out = {}
    for k, v in rows.items():
        cols = [v[np.isfinite(v[:, j]), j] for j in range(v.shape[1])]
        out[k] = np.array([trim_mean(c, TRIM) if c.size else np.nan for c in cols])
    return out


def _fmt(v: np.ndarray) -> str:
    return " ".join(f"{x:5.1f}" if k < 7 else f"{x:4.2f}" for k, x in enumerate(v))


def print_table(real: dict[str, np.ndarray], n_real: dict[str, int],
                sims: dict[str, dict[str, np.ndarray]], n_sim: dict[str, dict[str, int]]
                ) -> None:
    hdr = (f"{'class':9s} {'source':10s} {'n':>4s} "
           + " ".join(f"{f:>5s}" if k < 7 else f"{f:>4s}" for k, f in enumerate(FIELDS_SHOWN)))
    print(hdr)
    print("-" * len(hdr))
    for c in sorted(real):
        print(f"{c:9s} {'real':10s} {n_real[c]:4d} {_fmt(real[c])}")
        for label, s in sims.items():
            if c in s:
                print(f"{'':9s} {label[:10]:10s} {n_sim[label][c]:4d} {_fmt(s[c])}")
    print()
    print("|sim - real| of the mean side offsets (px), per class and bank:")
    head = f"{'class':9s} " + " ".join(f"{lab[:10] + ' far/near/left/right':>32s}"
                                       for lab in sims)
    print(head)
    for c in sorted(real):
        cells = []
        for s in sims.values():
            if c not in s:
                cells.append(f"{'-':>32s}")
                continue
            d = np.abs(s[c][2:6] - real[c][2:6])
            cells.append(f"{' / '.join(f'{x:4.1f}' for x in d):>32s}")
        print(f"{c:9s} " + " ".join(cells))
    for label, s in sims.items():
        common = [c for c in real if c in s]
        if common:
            d = np.array([np.abs(s[c][2:6] - real[c][2:6]) for c in common])
            dl = np.array([np.abs(s[c][0:2] - real[c][0:2]) for c in common])
            print(f"{label}: mean over classes |sim - real| far {d[:, 0].mean():.2f}, near "
                  f"{d[:, 1].mean():.2f}, left {d[:, 2].mean():.2f}, right "
                  f"{d[:, 3].mean():.2f} px; mask length {dl[:, 0].mean():.2f}, width "
                  f"{dl[:, 1].mean():.2f} px")


def main(argv: list[str] | None = None) -> int:
    from benchmarks.common import real_chips_or_none

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bank", action="append", default=None,
                   help="signature bank folder (repeat to compare banks; label=DIR names "
                        "a column); none: simulate the current models on the fly")
    p.add_argument("--subset", default="heldback", choices=("heldback", "tune", "all"),
                   help="split of the real chips (default heldback)")
    p.add_argument("--step", type=float, default=10.0,
                   help="synthetic azimuth step in degrees (default 10)")
    p.add_argument("--classes", nargs="+", default=None, help="restrict to these classes")
    p.add_argument("--edge-model", default="isotropic", choices=("isotropic", "wedge"),
                   help="edge diffraction model of the on-the-fly simulation (no --bank)")
    p.add_argument("--json", default=None, help="also write the per-class means to this JSON file")
    args = p.parse_args(argv)
    if args.step <= 0:
        p.error("--step must be > 0")
    banks: list[tuple[str, str | None]] = []
    for spec in args.bank or [None]:
        if spec is None:
            banks.append((f"sim {args.edge_model}", None))
            continue
        label, _, path = spec.rpartition("=")
        if not Path(path).is_dir():
            p.error(f"--bank {path}: not a folder")
        banks.append((label or Path(path).name, path))
    chips = real_chips_or_none()
    if chips is None:
        return 0
    real_r, shadow_ratio = real_rows(chips, args.subset)
    if args.classes:
        real_r = {k: v for k, v in real_r.items() if k in args.classes}
    classes = sorted(real_r)
    sims, n_sim = {}, {}
    for label, path in banks:
        rows = synthetic_rows(path, classes, args.step, edge_model=args.edge_model)
        sims[label] = trimmed_means(rows)
        n_sim[label] = {k: len(v) for k, v in rows.items()}
    real = trimmed_means(real_r)
    print(f"Target geometry at 17 deg: real {args.subset} chips (SARBake) vs simulated "
          f"(every {args.step:g} deg); 10 % trimmed means; px; real shadow/clutter ratio "
          f"{shadow_ratio:.2f}")
    print_table(real, {k: len(v) for k, v in real_r.items()}, sims, n_sim)
    if args.json:
        from sar_atd.atomic import atomic_write_json

        atomic_write_json(args.json, {
            "subset": args.subset, "step_deg": args.step, "fields": list(FIELDS_SHOWN),
            "statistic": f"{TRIM:.0%} trimmed mean",
            "shadow_clutter_ratio": shadow_ratio,
            "real": {k: v.tolist() for k, v in real.items()},
            "synthetic": {lab: {k: v.tolist() for k, v in s.items()}
                          for lab, s in sims.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
