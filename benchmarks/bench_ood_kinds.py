"""OOD scores split by object kind: detector alone, + verifier(s), CA-CFAR beside.

    python -m benchmarks.bench_ood_kinds --ood DIR [--ood DIR2 ...]
        [--detector models/default.pt] [--verifier V ...] [--no-cfar] [--n N]

Each ``--ood`` folder is an OOD set from ``sar-atd testset build ood`` (``--ood-kinds`` picks
the kinds: trees and houses, or the man-made clutter kinds container, wall, lamp_posts). The
detector runs once per set; each verifier re-checks the same detections
(:mod:`sar_atd.verifier`). Per row and set, ``eval-suite``'s OOD scores (OOD AP25 with the
OOD objects as the positives, lower is better, goal <= 0.03; false alarms on OOD objects per
image at the detector's operating threshold; target recall there, goal >= 0.9; the set's target
AP25/50/70) and per kind:

* AP25 with that kind's objects as the positives, detections on other kinds left out
  (``bench_verifier.kind_ap``);
* false alarms on that kind per image and per object of it (detections at or above the
  operating threshold that hit one: IoU >= 0.25 or centre inside), and the share of its
  objects hit.

The operating threshold is the model's stored one (CFAR: best F1 at IoU 0.5 on the set's own
targets, ``suite.run.operating_threshold``); the verifier rows keep the detector's. Exits 0
with a SKIPPED line without ``--ood``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_verifier import kind_ap, ood_kinds, verify_all
from benchmarks.common import DEFAULT_MODEL


def kind_scores(preds: Sequence[Any], ood_boxes: Sequence[np.ndarray],
                kinds: Sequence[Sequence[str]], kind: str, threshold: float | None,
                iou_threshold: float = 0.25) -> dict[str, float]:
    """Scores of one OOD kind: ``{"n", "ap25", "alarms_per_image", "alarms_per_object",
    "hit_share"}`` (alarms and hits NaN without a threshold)."""
    from sar_atd_training.testsets.ood import hits

    n_obj = alarms = hit = 0
    for d, ob, ks in zip(preds, ood_boxes, kinds):
        ob = np.asarray(ob, np.float32).reshape(-1, 4)
        sel = np.array([k == kind for k in ks], bool).reshape(-1)
        n_obj += int(sel.sum())
        if threshold is None or not sel.any():
            continue
        keep = np.asarray(d.scores) >= threshold
        boxes = np.asarray(d.boxes, np.float32).reshape(-1, 4)[keep]
        alarms += int(hits(boxes, ob[sel], iou_threshold).sum())
        hit += int(hits(ob[sel], boxes, iou_threshold).sum())
    nan = float("nan")
    ok = threshold is not None
    return {"n": n_obj, "ap25": kind_ap(preds, ood_boxes, kinds, kind, iou_threshold),
            "alarms_per_image": alarms / max(1, len(preds)) if ok else nan,
            "alarms_per_object": alarms / n_obj if ok and n_obj else nan,
            "hit_share": hit / n_obj if ok and n_obj else nan}


def score_set(folder: Path, images: list, detector: str, verifiers: Sequence[tuple[str, Any]],
              cfar: bool) -> list[dict[str, Any]]:
    """Rows (CFAR, detector, detector + each verifier) of one OOD set."""
    from sar_atd.metrics import evaluate
    from sar_atd.runtime import resolve_detector
    from sar_atd_training.evaluation.runner import run_detector
    from sar_atd_training.suite.run import operating_threshold
    from sar_atd_training.testsets.ood import ood_scores, read_ood_boxes

    by = read_ood_boxes(folder)
    kd = ood_kinds(folder)
    boxes = [by[it.name] for it in images]
    kinds = [kd[it.name] for it in images]
    names = sorted({k for ks in kinds for k in ks})
    rows = []
    for spec in (["cfar"] if cfar else []) + [detector]:
        det, _ = resolve_detector(spec)
        preds, _ = run_detector(det, images, progress=False)
        m = evaluate(preds, [it.boxes for it in images], iou_thresholds=(0.25, 0.5))
        thr, src = operating_threshold(det, {"ood": m})
        variants = [(det.name, preds)]
        if spec == detector:
            for vname, ver in verifiers:
                variants.append((f"{det.name} + {vname}", verify_all(ver, images, preds)[0]))
        for label, vp in variants:
            t = evaluate(vp, [it.boxes for it in images], iou_thresholds=(0.25, 0.5, 0.7))
            s = ood_scores(vp, boxes, [it.boxes for it in images],
                           np.inf if thr is None else thr)
            rows.append({"set": folder.name, "label": label, "threshold": thr, "source": src,
                         "ood": s, "target_ap": (t["AP25"], t["AP50"], t["AP70"]),
                         "kinds": {k: kind_scores(vp, boxes, kinds, k, thr) for k in names}})
            print(f"{folder.name} | {label}: OOD AP25 {s['ood_AP25']:.3f}, "
                  f"{s['ood_false_alarms_per_image']:.2f} alarms/img, recall "
                  f"{s['target_recall']:.3f}", flush=True)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    """Markdown: one line per (set, row) and one per (set, row, kind)."""
    print("\n| set | detector | kind | n objects | OOD AP25 | false alarms / img | alarms / "
          "object | objects hit | target recall | target AP25/50/70 | threshold |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s = r["ood"]
        thr = "-" if r["threshold"] is None else f"{r['threshold']:.3f}"
        print(f"| {r['set']} | {r['label']} | all | {s['ood_objects']} | {s['ood_AP25']:.3f} "
              f"| {s['ood_false_alarms_per_image']:.2f} | "
              f"{s['ood_false_alarms'] / max(1, s['ood_objects']):.2f} | "
              f"{s['ood_objects_hit'] / max(1, s['ood_objects']):.2f} | "
              f"{s['target_recall']:.3f} | {'/'.join(f'{v:.3f}' for v in r['target_ap'])} | "
              f"{thr} |")
        for k, ks in r["kinds"].items():
            print(f"| {r['set']} | {r['label']} | {k} | {ks['n']} | {ks['ap25']:.3f} | "
                  f"{ks['alarms_per_image']:.2f} | {ks['alarms_per_object']:.2f} | "
                  f"{ks['hit_share']:.2f} | | | |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_ood_kinds",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--ood", type=Path, action="append", default=[], metavar="DIR",
                        help="OOD test-set folder (sar-atd testset build ood); repeat")
    parser.add_argument("--detector", default=str(DEFAULT_MODEL), help="model file")
    parser.add_argument("--verifier", action="append", default=[], metavar="V",
                        help="verifier file (sar-atd train verifier); repeat")
    parser.add_argument("--no-cfar", action="store_true", help="skip the CA-CFAR baseline")
    parser.add_argument("--n", type=int, default=0, help="first N images of each set (0: all)")
    args = parser.parse_args(argv)
    if not args.ood:
        print("SKIPPED: give --ood DIR (sar-atd testset build ood --ood-kinds ...)")
        return 0
    for v in args.ood:
        if not (v / "ood.json").is_file():
            parser.error(f"--ood {v}: no ood.json there (sar-atd testset build ood)")
    if args.n < 0:
        parser.error("--n must be >= 0")
    import torch

    from sar_atd.errors import SarAtdError
    from sar_atd.evalset import load_eval_dataset
    from sar_atd.verifier import load_verifier

    torch.set_num_threads(1)
    try:
        verifiers = [(Path(v).parent.name + "/" + Path(v).name, load_verifier(v))
                     for v in args.verifier]
    except SarAtdError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    rows = []
    for folder in args.ood:
        images, _ = load_eval_dataset(folder)
        rows += score_set(folder, images[:args.n] if args.n else images, args.detector,
                          verifiers, not args.no_cfar)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
