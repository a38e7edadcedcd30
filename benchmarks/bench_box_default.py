"""Default-model candidates side by side: real patchworks (dev, held-back, hard stretch) and OOD.

    python -m benchmarks.bench_box_default [--detector models/default.pt ...] [--no-cfar]
        [--n 200] [--n-heldback 100] [--n-stretch 60] [--ood DIR] [--seed 0]
        [--box-voting-iou 0.5] [--verifier V]

One table per run, the CA-CFAR baseline beside the models on the same images:

* ``dev``: the standard dev patchworks (all chips; the set where recipe choices are made);
* ``held-back``: patchworks of the held-back 20 % of the chips (SHA-256 of the chip name,
  never used for choices);
* ``stretch``: dev patchworks re-rendered with the hard contrast stretch ``stretch_2_90``
  (2 % quantile -> 0, 90 % -> 255: bright speckle, saturated targets);
* ``OOD`` (with ``--ood DIR``, a folder from ``sar-atd testset build ood``): the paper's OOD
  AP25 (trees and houses as positives; lower is better, goal <= 0.03) and, at each
  detector's operating threshold (``eval-suite``'s rule: the model's stored threshold, else
  best F1 at IoU 0.5 on the dev patchworks), false alarms on OOD objects per image beside
  the target recall on the same images (goal >= 0.9).

With ``--box-voting-iou X`` every torch model (``.pt``) gets a second row, the same model
with box voting at IoU X in place of its NMS (``sar_atd.tta.box_voting``; the runtime's
``DetectorRuntimeConfig.box_voting_iou``): same kept boxes and scores, so the same operating
threshold, only the coordinates move.

With ``--verifier V`` (``sar-atd train verifier``) every model row is followed by the same
model with the second-stage verifier (``sar_atd.verifier``: detections it rejects are
dropped, kept scores unchanged, so the same operating threshold).

AP25/AP50/AP70 use the paper's greedy matching and all-point interpolation. Exits 0 with a
clear message when the real data is absent.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import (
    add_detector_args,
    add_patchwork_set_args,
    check_patchwork_set_args,
    patchwork_sets,
)


def _ap(m: dict[str, Any]) -> str:
    return f"{m['AP25']:.3f}/{m['AP50']:.3f}/{m['AP70']:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_box_default",
                                     description=__doc__.splitlines()[0])
    add_detector_args(parser)
    add_patchwork_set_args(parser)
    parser.add_argument("--ood", type=Path, default=None,
                        help="OOD test-set folder (sar-atd testset build ood)")
    parser.add_argument("--box-voting-iou", type=float, default=0.0, metavar="X",
                        help="also run each .pt model with box voting at this IoU in (0, 1] "
                             "(one more row per model); 0: off (default)")
    parser.add_argument("--verifier", type=Path, default=None, metavar="V",
                        help="also run each model with this second-stage verifier (one more "
                             "row per model row)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    check_patchwork_set_args(parser, args)
    if not 0.0 <= args.box_voting_iou <= 1.0:
        parser.error(f"--box-voting-iou {args.box_voting_iou}: must be in (0, 1], or 0 for off")
    if args.ood is not None and not (args.ood / "ood.json").is_file():
        parser.error(f"--ood {args.ood}: no ood.json there (build it with sar-atd testset "
                     "build ood)")

    from benchmarks.common import detector_specs, real_chips_or_none
    chips = real_chips_or_none()
    if chips is None:
        return 0

    from sar_atd.evalset import load_eval_dataset
    from sar_atd.metrics import evaluate
    from sar_atd_training.evaluation.runner import resolve_detector, run_detector
    from sar_atd_training.suite.run import OOD_AP25_GOAL, OOD_RECALL_GOAL, operating_threshold
    from sar_atd_training.testsets.ood import ood_scores, read_ood_boxes

    specs = detector_specs(parser, args.detector, args.no_cfar)
    sets = patchwork_sets(chips, args)
    ood_images, ood_boxes = None, None
    if args.ood is not None:
        ood_images, _ = load_eval_dataset(args.ood)
        by_name = read_ood_boxes(args.ood)
        ood_boxes = [by_name.get(it.name) for it in ood_images]
        if any(b is None for b in ood_boxes):
            print(f"error: ood.json of {args.ood} lacks some of its images", file=sys.stderr)
            return 1
    print(f"Real patchworks (4x4 MSTAR 17 deg chips, seed {args.seed}): dev {len(sets['dev'])}"
          f", held-back {len(sets['held-back'])}, hard stretch {len(sets['stretch'])}"
          + (f"; OOD set {args.ood} ({len(ood_images)} images)" if ood_images else ""))
    header = "| detector | dev AP25/50/70 | held-back AP25/50/70 | stretch AP25/50/70 |"
    sep = "|---|---|---|---|"
    if ood_images:
        header += (" OOD AP25 | OOD false alarms / img | target recall | threshold (source) |"
                   " OOD goal |")
        sep += "---|---|---|---|---|"
    runs = [(spec, 0.0) for spec in specs]
    if args.box_voting_iou > 0:  # each .pt model once more, with box voting, right after it
        runs = [r for spec in specs for r in [(spec, 0.0)] + (
            [(spec, args.box_voting_iou)] if Path(spec).suffix.lower() in (".pt", ".pth")
            else [])]
    verifier = None
    if args.verifier is not None:
        from sar_atd.errors import SarAtdError
        from sar_atd.verifier import VerifiedDetector, load_verifier

        try:
            verifier = load_verifier(args.verifier)
        except SarAtdError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        runs = [(spec, voting, ver) for spec, voting in runs
                for ver in ([None] if spec == "cfar" else [None, verifier])]
    else:
        runs = [(spec, voting, None) for spec, voting in runs]
    rows = []
    for spec, voting, ver in runs:
        det, _ = resolve_detector(spec, box_voting_iou=voting)
        label = det.name if spec == "cfar" else f"{Path(spec).name} ({det.name})"
        if voting:
            label += f" + box voting {voting:g}"
        if ver is not None:
            det = VerifiedDetector(det, ver)
            label += f" + verifier {args.verifier.name} (p >= {ver.threshold:.3f})"
        metrics, ms = {}, {}
        for name, images in sets.items():
            preds, ms[name] = run_detector(det, images, progress=False)
            metrics[name] = evaluate(preds, [it.boxes for it in images],
                                     iou_thresholds=(0.25, 0.5, 0.7))
        row = (f"| {label} | {_ap(metrics['dev'])} | {_ap(metrics['held-back'])} | "
               f"{_ap(metrics['stretch'])} |")
        if ood_images:
            thr, src = operating_threshold(det, {"patchwork": metrics["dev"]})
            if thr is None:
                row += " - | not counted (no operating threshold) | - | - | - |"
            else:
                preds, _ = run_detector(det, ood_images, progress=False)
                s = ood_scores(preds, ood_boxes, [it.boxes for it in ood_images], thr)
                ok = s["ood_AP25"] <= OOD_AP25_GOAL and s["target_recall"] >= OOD_RECALL_GOAL
                row += (f" {s['ood_AP25']:.3f} | {s['ood_false_alarms_per_image']:.2f} "
                        f"({s['ood_false_alarms']} on {s['ood_objects']} objects) | "
                        f"{s['target_recall']:.3f} | {thr:.3f} ({src}) | "
                        f"{'met' if ok else 'missed'} |")
        rows.append(row)
        # the row as soon as it is measured (a long run shows its first rows early)
        print(f"{label}: {ms['dev']:.0f} ms per dev patchwork; {row}", flush=True)
    print()
    print("\n".join([header, sep, *rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
