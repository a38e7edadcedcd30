"""Real-data benchmark: detectors on 200 patchworks of real MSTAR chips (paper test set 3).

    python -m benchmarks.bench_real_patchworks [--detector model.onnx ...] [--n 200]
        [--seed 0] [--report DIR]

Builds ``--n`` 4x4 patchworks (16 px overlaps, linear amplitude fade, SARBake boxes) from
``../shared/data/mstar_soc_17deg`` (the 17-degree dev split), runs the CFAR baseline and any
extra detectors (.pt checkpoints / .onnx models via ``sar_atd.backends``), and prints AP25,
AP50, AP70, the AP-vs-IoU curve and the speed (ms per patchwork) side by side. Exits 0
with a clear message when the real data is absent.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_real_patchworks",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--detector", action="append", default=[], metavar="DET",
                        help="extra detector ('cfar-os', model.pt, model.onnx); repeatable")
    parser.add_argument("--no-cfar", action="store_true", help="skip the CA-CFAR baseline")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=Path, default=None,
                        help="also write a report folder (markdown, PNG, JSON)")
    parser.add_argument("--progress", action="store_true", help="progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from benchmarks.common import real_chips_or_none

    chips = real_chips_or_none()
    if chips is None:
        return 0

    from sar_atd_training.evaluation.dataset import load_eval_dataset
    from sar_atd_training.evaluation.runner import (
        DetectorRun,
        evaluate_runs,
        resolve_detector,
        run_detector,
        write_report,
    )

    specs = ([] if args.no_cfar else ["cfar"]) + args.detector
    if not specs:
        parser.error("nothing to run: give --detector or drop --no-cfar")
    dets = [resolve_detector(s) + (s,) for s in specs]
    images, desc = load_eval_dataset(chips, n=args.n, seed=args.seed,
                                     progress=args.progress)
    runs = []
    for det, cfg, spec in dets:
        preds, ms = run_detector(det, images, progress=args.progress)
        runs.append(DetectorRun(det.name, spec, preds, ms, config=cfg))
    evaluate_runs(runs, images)

    n_gt = sum(len(it.boxes) for it in images)
    print(f"Real patchworks: {desc}")
    print(f"{len(images)} images of {images[0].image.shape[1]}x{images[0].image.shape[0]} px, "
          f"{n_gt} targets; AP = all-point, greedy matching, IoU >= threshold")
    print()
    print(f"{'detector':>18s} {'AP25':>6s} {'AP50':>6s} {'AP70':>6s} {'AP50:95':>8s} "
          f"{'det/img':>8s} {'ms/img':>8s}")
    for r in runs:
        m = r.metrics
        print(f"{r.name:>18s} {m['AP25']:6.3f} {m['AP50']:6.3f} {m['AP70']:6.3f} "
              f"{m['ap_50_95']:8.3f} {m['n_pred'] / len(images):8.1f} {r.ms_per_image:8.1f}")
    print()
    ious = runs[0].metrics["ap_vs_iou"]["iou"]
    print("AP vs IoU threshold")
    print(f"{'IoU':>18s} " + " ".join(f"{t:5.2f}" for t in ious))
    for r in runs:
        print(f"{r.name:>18s} " + " ".join(f"{a:5.3f}" for a in r.metrics["ap_vs_iou"]["ap"]))
    if args.report:
        path = write_report(args.report, runs, images, desc)
        print(f"\nreport: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
