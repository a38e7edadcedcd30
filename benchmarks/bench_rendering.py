"""Rendering robustness on real patchworks: AP per 8-bit rendering of the same images.

    python -m benchmarks.bench_rendering [--detector models/default.pt] [--no-cfar]
        [--n 200] [--seed 0] [--subset all|tune|heldback] [--only NAME ...] [--normalise
        [--normalise-reference REF.json]]

Builds the dev patchworks once, re-renders them with every rendering of
``sar_atd_training.quality.renderings.RENDERINGS`` (linear amplitude, quarter-power LUT,
gamma 0.75-2.0, histogram equalisation, contrast stretches with clipping, a 16-bit round
trip by a fixed rule), and per detector the 16-bit linear magnitude rendered as the runtime
renders it for that detector (``uint16``: the tiler with the model's recorded rendering,
``sar_atd_training.quality.renderings.MODEL_RENDERINGS``), optionally each also
histogram-matched back to the delivered look (``--normalise``: a test-time rendering
normalisation), runs the CFAR baseline and the model on each, and
prints AP25/AP50/AP70 per rendering and the AP50 drop from the detector's best rendering
(goal: <= 0.02). The 8-bit chips are taken as linear magnitude (the MSTAR JPEG rendering),
so renderings are of that amplitude, saturated pixels included. Exits 0 with a clear
message when the real data is absent.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import add_detector_args


def main(argv: list[str] | None = None) -> int:
    from sar_atd_training.quality.renderings import MODEL_RENDERINGS, RENDERINGS

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_rendering",
                                     description=__doc__.splitlines()[0])
    add_detector_args(parser)
    parser.add_argument("--n", type=int, default=200, help="patchworks (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--subset", choices=("all", "tune", "heldback"), default="all")
    parser.add_argument("--only", nargs="+", choices=sorted(RENDERINGS | MODEL_RENDERINGS),
                        default=None,
                        help="renderings to run (default: all)")
    parser.add_argument("--normalise", action="store_true",
                        help="also run every rendering through histogram matching to the "
                             "delivered look (reference: 50 tune-split patchworks)")
    parser.add_argument("--normalise-reference", type=Path, default=None, metavar="REF",
                        help="with --normalise: match to this reference-quantiles file "
                             "instead (a TilerConfig.uint8_match file, e.g. from sar-atd "
                             "eval render-point --match-reference)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    ref_file = None
    if args.normalise_reference is not None:
        from sar_atd.sar.lut import read_match_reference

        if not args.normalise:
            parser.error("--normalise-reference needs --normalise")
        try:
            ref_file = read_match_reference(args.normalise_reference)
        except ValueError as err:
            parser.error(str(err))

    from benchmarks.common import detector_specs, real_chips_or_none
    chips = real_chips_or_none()
    if chips is None:
        return 0


    import numpy as np

    from sar_atd.metrics import evaluate
    from sar_atd_training.evaluation.runner import resolve_detector, run_detector
    from sar_atd_training.quality.diagnosis import chip_records, sample_patchworks

    specs = detector_specs(parser, args.detector, args.no_cfar)
    names = args.only or list(RENDERINGS) + list(MODEL_RENDERINGS)
    base = sample_patchworks(chip_records(chips, args.subset), n=args.n, seed=args.seed)
    gts = [it.boxes for it in base.images]
    print(f"Real patchworks ({args.subset} chips): {base.description}; "
          f"{sum(len(g) for g in gts)} targets")
    match = None
    if args.normalise:
        from sar_atd_training.quality.renderings import match_histogram, reference_quantiles

        ref = ref_file if ref_file is not None else reference_quantiles(
            [it.image for it in sample_patchworks(chip_records(chips, "tune"), n=50,
                                                  seed=args.seed + 1).images])
        print(f"histogram matching to {args.normalise_reference or '50 tune-split patchworks'}")
        match = lambda im: match_histogram(im, ref)  # noqa: E731

    def render_all(fns: list[tuple[str, Callable[[np.ndarray], np.ndarray]]]
                   ) -> dict[str, tuple[list, str]]:
        """name -> (rendered images, content hash), with the +match variants; prints stats."""
        variants = list(fns)
        if match is not None:
            variants += [(f"{n}+match", lambda im, f=f: match(f(im))) for n, f in fns]
        out = {}
        for name, fn in variants:
            imgs = base.with_images(fn).images
            key = hashlib.sha256(b"".join(it.image.tobytes() for it in imgs)).hexdigest()
            out[name] = (imgs, key)
            stack = np.concatenate([it.image.ravel() for it in imgs])
            print(f"  {name:>20s}: 8-bit median {np.median(stack):5.0f}, p99 "
                  f"{np.quantile(stack, 0.99):5.0f}, at 255 "
                  f"{100 * np.mean(stack == 255):5.2f} %, at 0 "
                  f"{100 * np.mean(stack == 0):5.2f} %")
        return out

    shared = render_all([(n, RENDERINGS[n]) for n in names if n in RENDERINGS])
    print()
    for spec in specs:
        det, _ = resolve_detector(spec)
        record = getattr(getattr(det, "model_info", None), "render", None)
        per_model = [(n, lambda im, f=MODEL_RENDERINGS[n], r=record: f(im, r))
                     for n in names if n in MODEL_RENDERINGS]
        if per_model:
            print(f"{det.name}: runtime rendering record {record or 'none (tiler defaults)'}")
        rendered = shared | render_all(per_model)
        cache: dict[str, dict] = {}  # identical images (e.g. linear == as delivered) run once
        rows = {}
        for name in rendered:
            imgs, key = rendered[name]
            if key not in cache:
                preds, _ = run_detector(det, imgs, progress=False)
                cache[key] = evaluate(preds, gts, iou_thresholds=(0.25, 0.5, 0.7),
                                      ap_iou_thresholds=(0.5,))
            rows[name] = cache[key]
        best = max(rows, key=lambda k: rows[k]["AP50"])
        print(f"{det.name}  (best AP50: {best})")
        print(f"{'rendering':>20s} {'AP25':>6s} {'AP50':>6s} {'AP70':>6s} {'dAP50':>7s}  goal")
        for name, m in rows.items():
            drop = rows[best]["AP50"] - m["AP50"]
            print(f"{name:>20s} {m['AP25']:6.3f} {m['AP50']:6.3f} {m['AP70']:6.3f} "
                  f"{-drop:+7.3f}  {'ok' if drop <= 0.02 else 'MISSED'}")
        worst = max(rows, key=lambda k: rows[best]["AP50"] - rows[k]["AP50"])
        print(f"largest AP50 drop: {rows[best]['AP50'] - rows[worst]['AP50']:.3f} ({worst})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
