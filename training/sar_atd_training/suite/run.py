"""``sar-atd eval-suite``: detectors (and CFAR) over the paper's four test sets, one report.

Example::

    sar-atd eval-suite --detector models/default.pt --detector cfar \\
        --set synthetic-in-background=sets/synth_bg --set real-in-background=sets/real_bg \\
        --set patchwork=sets/pw --set ood=sets/ood --out suite_report

Sets are folders written by ``sar-atd testset build`` (any subset of the four kinds;
``--sets-root DIR`` takes every ``DIR/<kind>`` that exists). The report holds the equivalents
of the paper's Tables 2-5 (AP25 / AP50, plus AP70) with each set's full ``sar-atd eval``
report (PR curves, AP vs IoU, examples) in a subfolder, and the OOD scores:

* the paper's: AP with the OOD objects as positives (lower is better; goal AP25 <= 0.03);
* false alarms on OOD objects per image at the detector's operating threshold, beside the
  target recall at that threshold on the same images (goal >= 0.9, so a detector that
  detects nothing fails). The operating threshold is the model's stored one
  (``operating_threshold`` in its metadata), else the best-F1 threshold (IoU 0.5) on the
  patchwork set, else on the OOD set's own targets; the source is written beside it.

With ``--verifier V`` (``sar-atd train verifier``) every model detector gets a second row,
its detections re-checked by the second-stage verifier (:mod:`sar_atd.verifier`: rejected
detections dropped, kept scores unchanged, the same operating threshold).
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from sar_atd.errors import SarAtdError

log = logging.getLogger(__name__)

TABLES = {"synthetic-in-background": "Table 2 - synthetic targets in backgrounds",
          "real-in-background": "Table 3 - real targets in backgrounds",
          "patchwork": "Table 4 - patchworks of real chips",
          "ood": "Table 5 - OOD set: AP of its targets (OOD-object scores below)"}
OOD_AP25_GOAL = 0.03
OOD_RECALL_GOAL = 0.9


class SuiteError(SarAtdError, ValueError):
    """The suite cannot run as asked (missing sets, bad --set)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval-suite", help="detectors over the four test sets: one "
                              "report (paper Tables 2-5, OOD scores)", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--detector", action="append", required=True, metavar="DET",
                   help="'cfar', 'cfar-os', .pt, .onnx; repeat")
    p.add_argument("--set", action="append", default=[], metavar="KIND=DIR",
                   help=f"a test set folder; KIND in {list(TABLES)}")
    p.add_argument("--sets-root", type=Path, default=None,
                   help="folder holding <kind>/ subfolders")
    p.add_argument("--out", type=Path, required=True, help="report folder (must not exist)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--score-threshold", type=float, default=0.01)
    p.add_argument("--examples", type=int, default=4)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--verifier", type=Path, default=None, metavar="V",
                   help="second-stage verifier file: each model detector also runs with it "
                        "(one more row each)")
    p.set_defaults(func=run_suite)


def parse_sets(items: list[str], root: Path | None) -> dict[str, Path]:
    """``KIND=DIR`` items (+ ``root/<kind>``) -> {kind: folder}, in the paper's table order."""
    sets: dict[str, Path] = {}
    if root is not None:
        if not root.is_dir():
            raise SuiteError(f"--sets-root {root} is not a folder")
        for kind in TABLES:
            if (root / kind / "annotations.json").is_file():
                sets[kind] = root / kind
    for it in items:
        kind, sep, folder = it.partition("=")
        if not sep or kind not in TABLES:
            raise SuiteError(f"--set {it!r}: expected KIND=DIR with KIND in {list(TABLES)}")
        if not (Path(folder) / "annotations.json").is_file():
            raise SuiteError(f"--set {it!r}: no annotations.json in {folder}")
        sets[kind] = Path(folder)
    if not sets:
        raise SuiteError("no test set given: use --set KIND=DIR or --sets-root DIR")
    return {k: sets[k] for k in TABLES if k in sets}


def operating_threshold(det: Any, metrics_by_set: dict[str, dict]) -> tuple[float | None, str]:
    """(threshold, where it came from) for the OOD false-alarm count."""
    info = getattr(det, "model_info", None)
    thr = getattr(info, "operating_threshold", None) if info is not None else None
    if thr is not None and math.isfinite(thr):
        return float(thr), "model metadata"
    for kind in ("patchwork", "ood"):
        op = ((metrics_by_set.get(kind) or {}).get("operating_points") or {}).get("0.50")
        if op and op.get("score_threshold") is not None and math.isfinite(
                op["score_threshold"]):
            return float(op["score_threshold"]), f"best F1 at IoU 0.5 on the {kind} set"
    return None, "none available"


def run_suite(args: argparse.Namespace) -> int:
    from sar_atd.atomic import atomic_dir, atomic_write_json, atomic_write_text
    from sar_atd.evalset import load_eval_dataset
    from sar_atd.metrics import evaluate
    from sar_atd_training.evaluation.runner import (
        DetectorRun,
        resolve_detector,
        run_detector,
        to_jsonable,
        write_report,
    )
    from sar_atd_training.testsets.ood import ood_scores, read_ood_boxes

    verifier = None
    if getattr(args, "verifier", None) is not None:
        from sar_atd.verifier import load_verifier

        verifier = load_verifier(args.verifier)
    sets = parse_sets(args.set, args.sets_root)
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SuiteError(f"output folder {out} already exists: choose a new --out")
    dets = []
    names: set[str] = set()
    for spec in args.detector:
        det, cfg = resolve_detector(spec, device=args.device,
                                    score_threshold=args.score_threshold)
        name = det.name
        while name in names:
            name += "'"
        names.add(name)
        dets.append((name, spec, det, cfg))
        if verifier is not None and cfg.get("backend") != "cfar":
            from sar_atd.verifier import VerifiedDetector

            vname = f"{name} + verifier"
            names.add(vname)
            dets.append((vname, spec, VerifiedDetector(det, verifier),
                         cfg | {"verifier": verifier.path,
                                "verifier_threshold": verifier.threshold}))
    progress = not args.no_progress
    results: dict[str, dict[str, Any]] = {}
    with atomic_dir(out) as tmp:
        per_det_metrics: dict[str, dict[str, dict]] = {d[0]: {} for d in dets}
        preds_by: dict[tuple[str, str], list] = {}
        images_by: dict[str, list] = {}
        for kind, folder in sets.items():
            images, desc = load_eval_dataset(folder)
            images_by[kind] = images
            runs = []
            for name, spec, det, cfg in dets:
                if "verifier" in cfg:  # the base detector's detections, verified
                    base = preds_by[(kind, name.removesuffix(" + verifier"))]
                    t0 = time.perf_counter()
                    preds = [det.verifier.apply(it.image, d) for it, d in zip(images, base)]
                    ms = runs[-1].ms_per_image + (time.perf_counter() - t0) * 1e3 / max(
                        1, len(images))
                else:
                    preds, ms = run_detector(det, images, progress=progress)
                m = evaluate(preds, [it.boxes for it in images], iou_thresholds=(0.25, 0.5, 0.7))
                runs.append(DetectorRun(name=name, spec=spec, preds=preds, ms_per_image=ms,
                                        metrics=m, config=cfg))
                per_det_metrics[name][kind] = m
                preds_by[(kind, name)] = preds
            write_report(tmp / kind, runs, images, desc, n_examples=args.examples)
            results[kind] = {"folder": str(folder), "n_images": len(images),
                             "n_targets": int(sum(len(it.boxes) for it in images)),
                             "detectors": {r.name: {k: r.metrics[k] for k in
                                                    ("AP25", "AP50", "AP70", "ap_50_95")}
                                           | {"ms_per_image": r.ms_per_image} for r in runs}}
        if "ood" in sets:
            ood = read_ood_boxes(sets["ood"])
            images = images_by["ood"]
            missing = [it.name for it in images if it.name not in ood]
            if missing:
                raise SuiteError(f"ood.json of {sets['ood']} lacks images {missing[:3]}")
            ob = [ood[it.name] for it in images]
            for name, _spec, det, _cfg in dets:
                thr, src = operating_threshold(det, per_det_metrics[name])
                s: dict[str, Any]
                if thr is None:
                    s = {"note": "no operating threshold: false alarms not counted"}
                    s |= {k: v for k, v in ood_scores(preds_by[("ood", name)], ob,
                                                      [it.boxes for it in images],
                                                      np.inf).items()
                          if k in ("ood_AP25", "ood_AP50", "ood_objects")}
                else:
                    s = ood_scores(preds_by[("ood", name)], ob, [it.boxes for it in images],
                                   thr)
                    s["pass"] = bool(s["ood_AP25"] <= OOD_AP25_GOAL
                                     and s["target_recall"] >= OOD_RECALL_GOAL)
                s["threshold_source"] = src
                results["ood"].setdefault("ood_scores", {})[name] = s
        atomic_write_json(tmp / "metrics.json", to_jsonable({"sets": results}))
        atomic_write_text(tmp / "report.md", _report(results, [d[0] for d in dets]))
    print((out / "report.md").read_text())
    return 0


def _f(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else (
        f"{v:.3f}" if isinstance(v, float) else str(v))


def _report(results: dict[str, Any], names: list[str]) -> str:
    lines = ["# SAR-ATD evaluation suite (paper section III)", ""]
    for kind, r in results.items():
        lines += [f"## {TABLES[kind]}", "",
                  f"`{r['folder']}`: {r['n_images']} images, {r['n_targets']} targets. "
                  f"Full report: [{kind}/report.md]({kind}/report.md).", "",
                  "| detector | AP25 | AP50 | AP70 | AP50:95 | ms/image |",
                  "|---|---|---|---|---|---|"]
        for n in names:
            m = r["detectors"][n]
            lines.append(f"| {n} | {_f(m['AP25'])} | {_f(m['AP50'])} | {_f(m['AP70'])} | "
                         f"{_f(m['ap_50_95'])} | {m['ms_per_image']:.1f} |")
        lines.append("")
    if "ood" in results and "ood_scores" in results["ood"]:
        lines += ["## OOD objects (lower is better)", "",
                  f"Goal: OOD AP25 <= {OOD_AP25_GOAL} and target recall >= {OOD_RECALL_GOAL} at "
                  "the operating threshold.", "",
                  "| detector | OOD AP25 | OOD AP50 | false alarms on OOD / image | OOD objects "
                  "hit | target recall | threshold (source) | pass |",
                  "|---|---|---|---|---|---|---|---|"]
        for n, s in results["ood"]["ood_scores"].items():
            lines.append(
                f"| {n} | {_f(s.get('ood_AP25'))} | {_f(s.get('ood_AP50'))} | "
                f"{_f(s.get('ood_false_alarms_per_image'))} | {s.get('ood_objects_hit', 'n/a')}"
                f"/{s.get('ood_objects')} | {_f(s.get('target_recall'))} | "
                f"{_f(s.get('score_threshold'))} ({s['threshold_source']}) | "
                f"{s.get('pass', 'n/a')} |")
    return "\n".join(lines) + "\n"
