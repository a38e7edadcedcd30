"""Class-aware box calibration on real patchworks: raw / global bias / class oracle / predicted.

    python -m benchmarks.bench_box_calibration --calibrator runs/boxcal/box_calibrator.pt
        [--detector models/default.pt] [--no-cfar] [--n 200] [--n-heldback 100]
        [--n-stretch 60] [--n-tune 100] [--seed 0] [--no-chips]

Every correction is fitted on matched detections of ``--n-tune`` patchworks of the **tune**
chip split (never on a set it is measured on), then measured on the three sets of
``benchmarks.common.patchwork_sets``: ``held-back`` (chips never used for a choice), ``dev``
(all chips: it contains the tune chips, so it is partly in-sample for the offsets) and
``stretch`` (the first dev patchworks under a 2-90 % hard contrast stretch). Columns
(AP25/AP50/AP70):

* ``raw``: the detector's boxes (its stored box voting);
* ``global``: one median side bias for every box;
* ``oracle``: per-class offsets applied with the TRUE class to matched boxes (upper bound);
* ``hard``/``soft``/``hard_by_pred``/``linear``: offsets selected by the classifier's
  PREDICTED class (:mod:`sar_atd_training.boxcal.calibrate`);
* ``stored``: the calibrator file as it is (its own stored mode and offsets).

The candidate to use is chosen on the tune rows only. CA-CFAR's raw row is printed beside.
Also printed: the classifier's confusion matrix on the matched detector boxes of each set
and, unless ``--no-chips``, on the real chips with SARBake boxes (all dev chips, and the
held-back split only). Exits 0 with a clear message when the real data is absent.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from benchmarks.common import (
    add_detector_args,
    add_patchwork_set_args,
    check_patchwork_set_args,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_box_calibration",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--calibrator", type=Path, default=None,
                        help="box-calibrator file (sar-atd train box-calibrator)")
    add_detector_args(parser, "model whose boxes are calibrated (default models/default.pt; "
                              "one)")
    add_patchwork_set_args(parser)
    parser.add_argument("--n-tune", type=int, default=100, help="tune-split patchworks")
    parser.add_argument("--no-chips", action="store_true",
                        help="skip the confusion matrices on the real chips")
    args = parser.parse_args(argv)
    if args.calibrator is None:
        print("SKIPPED: give --calibrator F (sar-atd train box-calibrator --config "
              "training/configs/box_calibrator.yaml)")
        return 0
    check_patchwork_set_args(parser, args)
    if args.n_tune < 1:
        parser.error("--n-tune must be >= 1")
    logging.basicConfig(level=logging.WARNING)

    from benchmarks.common import detector_specs, patchwork_sets, real_chips_or_none
    from sar_atd.box_calibration import (
        BoxCalibrationError,
        apply_side_offsets,
        load_box_calibrator,
    )

    try:
        cal = load_box_calibrator(args.calibrator)
    except BoxCalibrationError as err:
        parser.error(str(err))
    chips = real_chips_or_none()
    if chips is None:
        return 0

    import numpy as np

    from sar_atd.detectors.base import Detections
    from sar_atd_training.boxcal.calibrate import (
        ap_triplet,
        chip_probabilities,
        confusion,
        corrected,
        fit_candidates,
        fit_class_offsets,
        format_confusion,
        match,
        oracle,
    )
    from sar_atd_training.evaluation.runner import resolve_detector, run_detector
    from sar_atd_training.quality.diagnosis import chip_records, sample_patchworks

    specs = detector_specs(parser, args.detector, args.no_cfar)
    models = [s for s in specs if s != "cfar"]
    if len(models) != 1:
        parser.error("give exactly one --detector (the model being calibrated)")
    tune = sample_patchworks(chip_records(chips, "tune"), args.n_tune, args.seed)
    sets = {"tune": tune.images, **patchwork_sets(chips, args)}
    dev_all = sample_patchworks(chip_records(chips, "all"), max(args.n, args.n_stretch),
                                args.seed)
    held = sample_patchworks(chip_records(chips, "heldback"), args.n_heldback, args.seed)
    names = {"tune": [t.class_name for t in tune.targets],
             "held-back": [t.class_name for t in held.targets]}
    n_dev_t = sum(len(it.boxes) for it in dev_all.images[:args.n])
    n_st_t = sum(len(it.boxes) for it in dev_all.images[:args.n_stretch])
    names["dev"] = [t.class_name for t in dev_all.targets[:n_dev_t]]
    names["stretch"] = [t.class_name for t in dev_all.targets[:n_st_t]]
    print(f"calibrator {args.calibrator}: classes {list(cal.classes)}, window {cal.window} "
          f"px, stored mode {cal.mode}")
    for k, v in sets.items():
        print(f"{k}: {len(v)} patchworks, {sum(len(it.boxes) for it in v)} targets")

    det, _ = resolve_detector(models[0])
    t0 = time.perf_counter()
    preds = {k: run_detector(det, v, progress=False)[0] for k, v in sets.items()}
    t_det = time.perf_counter() - t0
    t0 = time.perf_counter()
    matched = {k: match(sets[k], names[k], preds[k], cal) for k in sets}
    n_boxes = sum(len(p) for v in preds.values() for p in v)
    t_cls = time.perf_counter() - t0
    c = len(cal.classes)
    mt = matched["tune"]
    cands = fit_candidates(mt, c)
    true_tab = fit_class_offsets(mt.err, mt.labels, c)
    glob = np.median(mt.err, 0) if len(mt.err) else np.zeros(4)
    print(f"\n{det.name}: detection {t_det:.0f} s, classification {t_cls:.0f} s "
          f"({1e3 * t_cls / max(1, n_boxes):.1f} ms per box incl. window cut, {n_boxes} boxes)")
    print("side offsets fitted on tune (px, + = box too large; far near left right):")
    print(f"{'global':>10s} " + " ".join(f"{v:+6.2f}" for v in glob))
    for i, name in enumerate(cal.classes):
        print(f"{name:>10s} " + " ".join(f"{v:+6.2f}" for v in true_tab[i])
              + f"   (n {int((mt.labels == i).sum())})")
    cols = ["raw", "global", "oracle", *cands, "stored"]
    print(f"\nAP25/AP50/AP70 ({det.name}; offsets fitted on the tune rows' set; dev contains "
          "the tune chips: partly in-sample)")
    print(f"{'set':>9s} " + " ".join(f"{k:>17s}" for k in cols))
    for k, v in sets.items():
        m = matched[k]
        row = {"raw": preds[k],
               "global": [Detections(apply_side_offsets(p.boxes, glob), p.scores)
                          for p in preds[k]],
               "oracle": oracle(v, names[k], preds[k], m, true_tab, cal.classes),
               "stored": corrected(preds[k], m.all_probs, cal.mode, cal.offsets, cal.linear)}
        for name, (mode, off, lin) in cands.items():
            row[name] = corrected(preds[k], m.all_probs, mode, off, lin)
        print(f"{k:>9s} " + " ".join(
            "{:>17s}".format("/".join(f"{x:.3f}" for x in ap_triplet(row[c_], v)))
            for c_ in cols), flush=True)
    if "cfar" in specs:
        cf, _ = resolve_detector("cfar")
        print(f"{'':>9s} CA-CFAR raw: " + "; ".join(
            f"{k} " + "/".join(f"{x:.3f}" for x in ap_triplet(
                run_detector(cf, v, progress=False)[0], v)) for k, v in sets.items()))
    for k in ("held-back", "dev", "stretch"):
        m = matched[k]
        print(f"\nClassifier on matched detector boxes, {k} (rows true, columns predicted):")
        print(format_confusion(confusion(m.labels, m.probs, c), cal.classes))
    if not args.no_chips:
        for sub in ("all", "heldback"):
            lab, pr = chip_probabilities(cal, chip_records(chips, sub))
            print(f"\nClassifier on real chips with SARBake boxes, split {sub}:")
            print(format_confusion(confusion(lab, pr, c), cal.classes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
