"""Second-stage target verifier: detector alone vs detector + verifier, CA-CFAR beside.

    python -m benchmarks.bench_verifier --verifier V [--verifier V2 ...]
        [--detector models/default.pt] [--ood DIR] [--patchwork DIR]
        [--real-in-background DIR] [--real-patchworks [--n-dev 200] [--n-heldback 100]]
        [--no-cfar] [--n N] [--cache FILE]

Sets are folders written by ``sar-atd testset build`` (any subset) and, with
``--real-patchworks``, the real-patchwork sets of ``bench_box_default`` built in memory:
``dev patchworks`` (all chips) and ``held-back patchworks`` (the held-back 20 % of the
chips, never used for choices), seed 0. The detector runs once
per set; each verifier then re-checks the same detections (``sar_atd.verifier``: detections
with p(vehicle) below the verifier's threshold are dropped, kept scores unchanged), so rows
differ only by the verifier. Printed per row:

* target AP25/AP50/AP70 on every set (greedy matching, all-point interpolation);
* on the OOD set, ``eval-suite``'s scores: OOD AP25 (the OOD objects as the positives, every
  detection down to the backend's 0.01 floor ranked, detections on targets counting as
  false positives; lower is better, goal <= 0.03), false alarms on OOD objects per image at
  the detector's operating threshold and the target recall there (goal >= 0.9);
* the OOD AP25 split by the operating threshold: the part earned by OOD hits scored at or
  above it and the part earned below it (the two add up to the OOD AP25; all-point
  interpolation credits each OOD hit with the envelope precision at its recall);
* the OOD AP25 per OOD kind (``tree``, ``house``): that kind's objects as the positives,
  detections on the other kind left out of the ranking (they are neither kind's hit nor a
  target's miss), so that a verifier trained without one kind shows how it does on it.

``--dev-rule KEEP --write-dir DIR`` (with ``--real-patchworks``): the real-data threshold
rule: for each verifier, the largest threshold that keeps ``KEEP`` of the dev-patchwork
targets the detector finds at its operating threshold (per target its best-scoring
detection with IoU >= 0.5), written as ``DIR/<verifier folder>_dev/verifier.pt`` (same
network, new threshold, the rule in its record); only the dev patchworks are used, the
held-back ones stay a check. Those files are then scored like any other verifier.

``--cache FILE`` keeps the detector's detections between runs (a pickle keyed by detector,
set, folder and image count), so that verifiers trained later are compared on the same
detections without running the detector again.

Also the verifier's CPU time per crop (median over the OOD set's images, crops of one image
per call, 1 thread). Exits 0 with a SKIPPED line when no verifier or no set is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import DEFAULT_MODEL


def ood_kinds(folder: str | Path) -> dict[str, list[str]]:
    """Per image name, the kind ('tree', 'house', ...) of each OOD box in ``ood.json``
    order (from the test set's ``manifest.json``)."""
    doc = json.loads((Path(folder) / "manifest.json").read_text())
    return {im["name"]: [o.get("kind", "ood") for o in im.get("objects", [])
                         if "is_target" in o and not o["is_target"]]
            for im in doc["images"]}


def ap_split(preds: Sequence[Any], gts: Sequence[np.ndarray], threshold: float,
             iou_threshold: float = 0.25) -> dict[str, float]:
    """All-point AP of ``preds`` against ``gts`` and its split by ``threshold``.

    Returns:
        ``{"ap", "ap_at_or_above", "ap_below", "hits_at_or_above", "hits_below",
        "n_gt"}``: ``ap_at_or_above + ap_below == ap``; each hit adds
        (its recall step) x (envelope precision at its recall) to its side.
    """
    from sar_atd.metrics import _curve, _prepare

    prep = _prepare(list(preds), [np.asarray(g, np.float32).reshape(-1, 4) for g in gts])
    precision, recall, scores, tps = _curve(prep, iou_threshold)
    out = {"ap": 0.0, "ap_at_or_above": 0.0, "ap_below": 0.0, "hits_at_or_above": 0,
           "hits_below": 0, "n_gt": prep.n_gt}
    if not prep.n_gt or not len(precision):
        return out
    env = np.maximum.accumulate(precision[::-1])[::-1]
    step = np.diff(np.concatenate([[0.0], recall]))
    hit = step > 0
    above = scores >= threshold
    out["ap_at_or_above"] = float((step * env)[hit & above].sum())
    out["ap_below"] = float((step * env)[hit & ~above].sum())
    out["ap"] = out["ap_at_or_above"] + out["ap_below"]
    out["hits_at_or_above"] = int((hit & above).sum())
    out["hits_below"] = int((hit & ~above).sum())
    return out


def kind_ap(preds: Sequence[Any], ood_boxes: Sequence[np.ndarray],
            kinds: Sequence[Sequence[str]], kind: str, iou_threshold: float = 0.25) -> float:
    """OOD AP25 with the ``kind`` objects as the positives; detections that hit an OOD object
    of another kind (IoU >= ``iou_threshold`` or centre inside) are left out."""
    from sar_atd.detectors.base import Detections
    from sar_atd.metrics import average_precision
    from sar_atd_training.testsets.ood import hits

    ps, gs = [], []
    for d, ob, ks in zip(preds, ood_boxes, kinds):
        ob = np.asarray(ob, np.float32).reshape(-1, 4)
        sel = np.array([k == kind for k in ks], bool)
        other = hits(d.boxes, ob[~sel], iou_threshold) if (~sel).any() else np.zeros(len(d),
                                                                                      bool)
        ps.append(Detections(d.boxes[~other], d.scores[~other]))
        gs.append(ob[sel])
    if not sum(len(g) for g in gs):
        return float("nan")
    return average_precision(ps, gs, iou_threshold)


def verify_all(verifier: Any, images: Sequence[Any], preds: Sequence[Any]
               ) -> tuple[list[Any], float]:
    """Each image's detections through ``verifier``; (verified detections, median ms per
    crop over the images that had detections)."""
    out, ms = [], []
    for it, d in zip(images, preds):
        out.append(verifier.apply(it.image, d))
        if len(d):
            ms.append(verifier.last_ms_per_crop)
    return out, float(np.median(ms)) if ms else float("nan")


def score_ood(preds: Sequence[Any], images: Sequence[Any], ood_boxes: Sequence[np.ndarray],
              kinds: Sequence[Sequence[str]], threshold: float | None) -> dict[str, Any]:
    """eval-suite's OOD scores plus the AP split and the per-kind AP (see the module doc)."""
    from sar_atd_training.testsets.ood import ood_scores

    tb = [it.boxes for it in images]
    s = ood_scores(preds, ood_boxes, tb, np.inf if threshold is None else threshold)
    if threshold is not None:
        s["split"] = ap_split(preds, ood_boxes, threshold)
    for k in sorted({k for ks in kinds for k in ks}):
        s[f"ood_AP25_{k}"] = kind_ap(preds, ood_boxes, kinds, k)
    return s


def _ap3(m: dict[str, Any]) -> str:
    return f"{m['AP25']:.3f}/{m['AP50']:.3f}/{m['AP70']:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_verifier",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--verifier", action="append", default=[], metavar="V",
                        help="verifier file (sar-atd train verifier); repeat")
    parser.add_argument("--detector", default=str(DEFAULT_MODEL), help="model file")
    parser.add_argument("--ood", type=Path, default=None, help="OOD test-set folder")
    parser.add_argument("--patchwork", type=Path, default=None,
                        help="real-patchwork test-set folder")
    parser.add_argument("--real-in-background", type=Path, default=None,
                        help="real-in-background test-set folder")
    parser.add_argument("--n", type=int, default=0, help="first N images of each set (0: all)")
    parser.add_argument("--no-cfar", action="store_true", help="skip the CA-CFAR baseline")
    parser.add_argument("--real-patchworks", action="store_true",
                        help="also the real dev and held-back patchworks (built in memory)")
    parser.add_argument("--n-dev", type=int, default=200, help="dev patchworks (default 200)")
    parser.add_argument("--n-heldback", type=int, default=100,
                        help="held-back patchworks (default 100)")
    parser.add_argument("--cache", type=Path, default=None, metavar="FILE",
                        help="detections kept between runs (pickle; created if missing)")
    parser.add_argument("--dev-rule", type=float, default=None, metavar="KEEP",
                        help="write each verifier with the dev-patchwork threshold keeping "
                             "this share of real targets (needs --real-patchworks, "
                             "--write-dir)")
    parser.add_argument("--write-dir", type=Path, default=None, metavar="DIR",
                        help="where --dev-rule writes the verifiers")
    args = parser.parse_args(argv)
    if args.dev_rule is not None and not (0 < args.dev_rule <= 1 and args.real_patchworks
                                          and args.write_dir is not None):
        parser.error("--dev-rule KEEP needs 0 < KEEP <= 1, --real-patchworks and --write-dir")
    sets = {k: v for k, v in (("ood", args.ood), ("patchwork", args.patchwork),
                              ("real-in-background", args.real_in_background)) if v}
    if not args.verifier or not (sets or args.real_patchworks):
        print("SKIPPED: give --verifier V (sar-atd train verifier) and at least one test set "
              "(--ood / --patchwork / --real-in-background; sar-atd testset build)")
        return 0
    for k, v in sets.items():
        if not (v / "annotations.json").is_file():
            parser.error(f"--{k} {v}: no annotations.json there (sar-atd testset build)")
    if args.ood is not None and not (args.ood / "ood.json").is_file():
        parser.error(f"--ood {args.ood}: no ood.json there (sar-atd testset build ood)")
    if args.n < 0 or args.n_dev < 1 or args.n_heldback < 1:
        parser.error("--n must be >= 0, --n-dev and --n-heldback >= 1")
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
    data = {}
    where: dict[str, str] = {}
    for k, v in sets.items():
        images, _ = load_eval_dataset(v)
        data[k] = images[:args.n] if args.n else images
        where[k] = str(Path(v).resolve())
    if args.real_patchworks:
        from benchmarks.common import patchwork_sets, real_chips_or_none

        chips = real_chips_or_none()
        if chips is not None:
            pw = patchwork_sets(chips, argparse.Namespace(n=args.n_dev, n_heldback=args.n_heldback,
                                                          n_stretch=1, seed=0))
            data["dev patchworks"], data["held-back patchworks"] = pw["dev"], pw["held-back"]
            where["dev patchworks"] = where["held-back patchworks"] = f"{chips} seed 0"
    if not data:
        return 0
    cache = load_cache(args.cache)
    keys = {k: (k, where[k], len(images)) for k, images in data.items()}
    cached = {(spec, k): cache[(spec, *keys[k])] for spec in ("cfar", args.detector)
              for k in data if (spec, *keys[k]) in cache}
    if args.dev_rule is not None and "dev patchworks" in data:
        verifiers = dev_rule_verifiers(args.detector, verifiers, data["dev patchworks"],
                                       cached, args.dev_rule, args.write_dir)
    rows = run_rows(args.detector, verifiers, data, args.ood, not args.no_cfar, cached)
    if args.cache is not None:
        for (spec, k), preds in cached.items():
            cache[(spec, *keys[k])] = preds
        save_cache(args.cache, cache)
    print_table(rows, list(data))
    return 0


def dev_threshold(p_best: np.ndarray, keep: float) -> float:
    """The largest threshold keeping ``keep`` of the targets whose best detection has
    p(vehicle) ``p_best`` (float (T,)); the linear-interpolated quantile."""
    if not len(p_best):
        raise ValueError("no dev targets found at the operating threshold")
    return float(np.quantile(np.asarray(p_best, np.float64), 1 - keep))


def best_target_probabilities(verifier: Any, images: Sequence[Any], preds: Sequence[Any],
                              op: float, iou: float = 0.5) -> np.ndarray:
    """float32 (T,): for every target with a detection scored >= ``op`` at IoU >= ``iou``
    (or centre inside), p(vehicle) of the best-scoring such detection."""
    from sar_atd_training.testsets.ood import hits

    out = []
    for it, d in zip(images, preds):
        if not len(d):
            continue
        p = verifier.probabilities(it.image, d.boxes)
        for t in np.asarray(it.boxes, np.float32).reshape(-1, 4):
            h = hits(d.boxes, t[None], iou) & (d.scores >= op)
            if h.any():
                out.append(p[np.nonzero(h)[0][np.argmax(d.scores[h])]])
    return np.asarray(out, np.float32)


def dev_rule_verifiers(detector: str, verifiers: Sequence[tuple[str, Any]], dev: list,
                       cached: dict, keep: float, write_dir: Path) -> list[tuple[str, Any]]:
    """``verifiers`` followed by each one with the dev-patchwork threshold (written to
    ``write_dir``); the detector runs on the dev patchworks here unless cached."""
    from sar_atd.runtime import resolve_detector
    from sar_atd.verifier import load_verifier, save_verifier
    from sar_atd_training.evaluation.runner import run_detector

    det, _ = resolve_detector(detector)
    op = getattr(getattr(det, "model_info", None), "operating_threshold", None)
    if op is None:
        raise SystemExit(f"error: {detector} stores no operating threshold for --dev-rule")
    if (detector, "dev patchworks") not in cached:
        cached[(detector, "dev patchworks")], _ = run_detector(det, dev, progress=False)
    out = list(verifiers)
    for name, ver in verifiers:
        p = best_target_probabilities(ver, dev, cached[(detector, "dev patchworks")], op)
        thr = dev_threshold(p, keep)
        folder = write_dir / (Path(ver.path).parent.name + "_dev")
        rec = {**ver.record, "threshold_synthetic_rule": ver.threshold,
               "threshold_rule": f"dev patchworks ({len(dev)}, seed 0): keep {keep} of "
                                 f"{len(p)} real targets found at {op:.3f}"}
        save_verifier(folder / "verifier.pt", ver.net, ver.crop_size, thr, ver.rescore, rec)
        print(f"{name}: dev rule keeps {keep} of {len(p)} targets: threshold {thr:.4f} "
              f"(synthetic rule {ver.threshold:.4f}) -> {folder / 'verifier.pt'}")
        out.append((folder.name + "/verifier.pt", load_verifier(folder / "verifier.pt")))
    return out


def load_cache(path: Path | None) -> dict:
    """Detections kept by an earlier run (empty without a file)."""
    import pickle

    if path is None or not path.is_file():
        return {}
    with open(path, "rb") as f:
        return dict(pickle.load(f))


def save_cache(path: Path, cache: dict) -> None:
    """Write the detections (atomically)."""
    import pickle

    from sar_atd.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pickle.dump(cache, f)


def run_rows(detector: str, verifiers: Sequence[tuple[str, Any]], data: dict[str, list],
             ood_folder: Path | None, cfar: bool,
             cached: dict[tuple[str, str], list] | None = None) -> list[dict[str, Any]]:
    """Rows of the table: CA-CFAR (optional), the detector, the detector + each verifier.

    ``cached``: detections already computed with ``resolve_detector(spec)`` and the same
    images, keyed (spec, set kind); missing ones are computed here and added to it.
    """
    from sar_atd.metrics import evaluate
    from sar_atd.runtime import resolve_detector
    from sar_atd_training.evaluation.runner import run_detector
    from sar_atd_training.suite.run import operating_threshold
    from sar_atd_training.testsets.ood import read_ood_boxes

    ood_boxes = kinds = None
    if ood_folder is not None and "ood" in data:
        by = read_ood_boxes(ood_folder)
        kd = ood_kinds(ood_folder)
        ood_boxes = [by[it.name] for it in data["ood"]]
        kinds = [kd[it.name] for it in data["ood"]]
    cached = cached if cached is not None else {}
    rows: list[dict[str, Any]] = []
    for spec in (["cfar"] if cfar else []) + [detector]:
        det, _ = resolve_detector(spec)
        preds = {}
        for k, images in data.items():
            if (spec, k) not in cached:
                cached[(spec, k)], _ = run_detector(det, images, progress=False)
            preds[k] = cached[(spec, k)]
        variants: list[tuple[str, dict[str, list], float]] = [(det.name, preds, float("nan"))]
        if spec == detector:
            for vname, ver in verifiers:
                vp, ms = {}, []
                for k, images in data.items():
                    vp[k], m = verify_all(ver, images, preds[k])
                    ms.append(m)
                variants.append((f"{det.name} + {vname} (p >= {ver.threshold:.3f})", vp,
                                 float(np.nanmedian(ms)) if np.isfinite(ms).any()
                                 else float("nan")))
        for label, vp, ms in variants:
            row: dict[str, Any] = {"label": label, "ms_per_crop": ms}
            metrics = {}
            for k, images in data.items():
                metrics[k] = evaluate(vp[k], [it.boxes for it in images],
                                      iou_thresholds=(0.25, 0.5, 0.7))
                row[k] = metrics[k]
            if ood_boxes is not None:
                thr, src = operating_threshold(det, {k: metrics[k] for k in ("patchwork", "ood")
                                                     if k in metrics})
                row["threshold"] = (thr, src)
                row["ood_scores"] = score_ood(vp["ood"], data["ood"], ood_boxes, kinds, thr)
            rows.append(row)
            print(f"{label}: " + ", ".join(f"{k} {_ap3(metrics[k])}" for k in data)
                  + (f"; OOD AP25 {row['ood_scores']['ood_AP25']:.3f}" if "ood_scores" in row
                     else ""), flush=True)
    return rows


def print_table(rows: list[dict[str, Any]], kinds: list[str]) -> None:
    """The markdown table of :func:`run_rows`'s rows."""
    head = "| detector |" + "".join(f" {k} AP25/50/70 |" for k in kinds)
    sep = "|---|" + "---|" * len(kinds)
    if any("ood_scores" in r for r in rows):
        head += (" OOD AP25 (>= thr + < thr) | OOD AP25 tree / house | OOD false alarms / img"
                 " | target recall | threshold (source) |")
        sep += "---|---|---|---|---|"
    head += " ms / crop |"
    sep += "---|"
    lines = ["", head, sep]
    for r in rows:
        line = f"| {r['label']} |" + "".join(f" {_ap3(r[k])} |" for k in kinds)
        s = r.get("ood_scores")
        if s is not None:
            sp = s.get("split")
            thr, src = r["threshold"]
            line += (f" {s['ood_AP25']:.3f}"
                     + (f" ({sp['ap_at_or_above']:.3f} + {sp['ap_below']:.3f})" if sp else "")
                     + f" | {s.get('ood_AP25_tree', float('nan')):.3f} / "
                     f"{s.get('ood_AP25_house', float('nan')):.3f} | "
                     + (f"{s['ood_false_alarms_per_image']:.2f} | {s['target_recall']:.3f} | "
                        f"{thr:.3f} ({src}) |" if thr is not None else "- | - | - |"))
        ms = r["ms_per_crop"]
        line += f" {ms:.2f} |" if np.isfinite(ms) else " - |"
        lines.append(line)
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
