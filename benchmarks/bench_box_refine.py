"""Test-time box corrections on real patchworks, chosen on one chip split, measured on another.

    python -m benchmarks.bench_box_refine [--detector models/default.pt] [--no-cfar]
        [--n-tune 200] [--n-heldback 100] [--seed 0] [--rendering NAME]

Two corrections of a detector's boxes, both fitted/chosen on patchworks of the *tune* chips
only and then measured on patchworks of the *held-back* chips (a fixed 20 % of the dev chips
by name hash, ``sar_atd_training.quality.diagnosis.is_held_back``) and on the tune set:

* **side bias**: every box side moved inwards by the median signed error of that side on the
  tune set (``fit_side_offsets`` / ``apply_side_offsets``);
* **returns snap**: near/left/right sides snapped to where the bright returns end in the
  image (``refine_boxes`` with the default ``RefineConfig``).

Prints AP25/AP50/AP70 raw and corrected for CFAR and the model. Exits 0 with a clear message
when the real data is absent.
"""

from __future__ import annotations

import argparse
import logging
import sys

from benchmarks.common import add_detector_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_box_refine",
                                     description=__doc__.splitlines()[0])
    add_detector_args(parser)
    parser.add_argument("--n-tune", type=int, default=200, help="tune-split patchworks")
    parser.add_argument("--n-heldback", type=int, default=100,
                        help="held-back-split patchworks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rendering", default=None,
                        help="re-render both sets first (quality.renderings.RENDERINGS)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from benchmarks.common import detector_specs, real_chips_or_none
    chips = real_chips_or_none()
    if chips is None:
        return 0


    from sar_atd.detectors.base import Detections
    from sar_atd.metrics import evaluate
    from sar_atd_training.evaluation.runner import resolve_detector, run_detector
    from sar_atd_training.quality.boxes import (
        SIDES,
        apply_side_offsets,
        fit_side_offsets,
        refine_boxes,
    )
    from sar_atd_training.quality.diagnosis import chip_records, diagnose, sample_patchworks
    from sar_atd_training.quality.renderings import rendering

    specs = detector_specs(parser, args.detector, args.no_cfar)
    try:
        render = rendering(args.rendering) if args.rendering else None
    except ValueError as err:
        parser.error(str(err))
    sets = {"tune": sample_patchworks(chip_records(chips, "tune"), args.n_tune, args.seed),
            "heldback": sample_patchworks(chip_records(chips, "heldback"), args.n_heldback,
                                          args.seed)}
    if render is not None:
        sets = {k: v.with_images(render, f", rendering {args.rendering}")
                for k, v in sets.items()}
    for k, v in sets.items():
        print(f"{k}: {v.description}, {len(v.targets)} targets")

    def ap(preds: list[Detections], name: str) -> str:
        m = evaluate(preds, [it.boxes for it in sets[name].images],
                     iou_thresholds=(0.25, 0.5, 0.7), ap_iou_thresholds=(0.5,))
        return f"{m['AP25']:.3f} {m['AP50']:.3f} {m['AP70']:.3f}"

    for spec in specs:
        det, _ = resolve_detector(spec)
        preds = {k: run_detector(det, v.images, progress=False)[0] for k, v in sets.items()}
        off = fit_side_offsets(diagnose(sets["tune"], preds["tune"], det.name).err)
        print(f"\n{det.name}: side bias fitted on tune (px, + = box too large): "
              + ", ".join(f"{s} {o:+.2f}" for s, o in zip(SIDES, off, strict=True)))
        print(f"{'set':>9s} {'raw AP25/50/70':>18s} {'side bias':>18s} {'returns snap':>18s}")
        for name, v in sets.items():
            raw = preds[name]
            biased = [Detections(apply_side_offsets(p.boxes, off), p.scores) for p in raw]
            snapped = [Detections(refine_boxes(it.image, p.boxes), p.scores)
                       for it, p in zip(v.images, raw, strict=True)]
            print(f"{name:>9s} {ap(raw, name):>18s} {ap(biased, name):>18s} "
                  f"{ap(snapped, name):>18s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
