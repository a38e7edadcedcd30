"""Test-time box refinement on real patchworks: box voting, mirror and rescale TTA, ensembles.

    python -m benchmarks.bench_box_tta [--detector models/default.pt] [--no-cfar]
        [--views identity,mirror] [--voting-iou 0.5] [--ensemble M ...] [--onnx]
        [--n 200] [--n-heldback 100] [--n-stretch 60] [--n-tune 100] [--seed 0]

The detector runs on every view of each image (``sar_atd.tta``: ``mirror`` is the
cross-range mirror, radar kept at the bottom; ``scale:S`` resamples by ``S``), boxes are
mapped back and fused by weighted box fusion; each row is one combination of views (or of
models, with ``--ensemble``: every model on ``--ensemble-views``, fused the same way). Sets
as in ``bench_box_default``: ``dev`` (the standard dev patchworks, where choices are made),
``held-back`` (patchworks of the held-back 20 % of the chips, never used for choices) and
``stretch`` (dev patchworks re-rendered with the hard contrast stretch ``stretch_2_90``).
The ``box voting`` rows run the model with box voting in place of its NMS
(``sar_atd.tta.box_voting``: the kept boxes take the score-weighted mean of the candidates
overlapping them with IoU >= ``--voting-iou``; no extra inference).
Model rows run without box voting (``.pt``: ``box_voting_iou`` 0; other files as they hold).
``--onnx`` exports the first model (``.pt``) twice into a temporary folder, without and with
box voting in the graph (``sar-atd export --box-voting-iou``), runs both by ONNX Runtime
(identity view) and prints their rows, the time ratio of the voting graph over the plain one
(median over dev images), and the parity of torch box voting against the graph's on every
set: the largest box-coordinate difference over images with the same detections, the images
whose detections differ in number, and the AP differences.
The ``+ side bias`` rows add the per-side median correction of ``bench_box_refine``, fitted
on patchworks of the *tune* chips (``--n-tune``) with the same views and measured on the
others. The time column is the median over dev images of the summed inference time of the
views, over that of the identity view alone (resampling and fusion excluded; measured in
the same run, image by image, model by model). CA-CFAR stands beside on the same images.
Exits 0 with a clear message when the real data is absent.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    add_detector_args,
    add_patchwork_set_args,
    check_patchwork_set_args,
    patchwork_sets,
)

VOTE = -1
"""Model key of the first model run with box voting."""
ONNX, ONNX_VOTE = -2, -3
"""Model keys of the first model exported without / with box voting (``--onnx``)."""
PLAIN = ("identity", "mirror")
"""Views run on the tune split (the side-bias rows) and by the box-voting detector."""


def _ap(m: dict[str, Any]) -> str:
    return f"{m['AP25']:.3f}/{m['AP50']:.3f}/{m['AP70']:.3f}"


def _combos(views: Sequence[str]) -> list[tuple[str, list[tuple[int, str]]]]:
    """(label, [(model index, view name), ...]) of every row."""
    rows: list[tuple[str, list[tuple[int, str]]]] = [("identity", [(0, "identity")])]
    others = [v for v in views if v != "identity"]
    rows += [(f"{v} alone", [(0, v)]) for v in others]
    rows += [(f"identity+{v}", [(0, "identity"), (0, v)]) for v in others]
    scales = [v for v in others if v.startswith("scale:")]
    if len(scales) > 1:
        rows.append(("identity+" + "+".join(scales), [(0, "identity")] + [(0, v)
                                                                         for v in scales]))
    if len(others) > 1 and len(others) > len(scales):
        rows.append(("all views", [(0, v) for v in views]))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_box_tta",
                                     description=__doc__.splitlines()[0])
    add_detector_args(parser, "model (.pt/.onnx; default models/default.pt); only the first "
                              "is augmented")
    parser.add_argument("--views", default="identity,mirror",
                        help="views of the model (sar_atd.tta.parse_views; identity first), "
                             "e.g. identity,mirror,scale:1.25,scale:1.5")
    parser.add_argument("--voting-iou", type=float, default=0.5,
                        help="box-voting IoU of the box-voting rows (0: no such rows)")
    parser.add_argument("--ensemble", action="append", default=[], metavar="MODEL",
                        help="further model fused with the first (repeatable)")
    parser.add_argument("--ensemble-views", default="identity",
                        help="views every ensemble member runs on (default identity)")
    parser.add_argument("--iou", type=float, default=0.55, help="WBF cluster IoU (0.55)")
    parser.add_argument("--onnx", action="store_true",
                        help="also export the first model without and with box voting and "
                             "run both by ONNX Runtime (rows, time ratio, parity with torch)")
    add_patchwork_set_args(parser)
    parser.add_argument("--n-tune", type=int, default=100,
                        help="tune-split patchworks for the side-bias fit (0: no such rows)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    check_patchwork_set_args(parser, args)
    if args.n_tune < 0:
        parser.error("--n-tune must be >= 0")
    if not 0 < args.iou <= 1:
        parser.error("--iou must be in (0, 1]")
    if not 0 <= args.voting_iou <= 1:
        parser.error("--voting-iou must be in [0, 1] (0: no box-voting rows)")

    from sar_atd.tta import parse_views
    try:
        views = [v.name for v in parse_views(args.views)]
        ens_views = [v.name for v in parse_views(args.ensemble_views)]
    except ValueError as err:
        parser.error(str(err))
    if not views or views[0] != "identity":
        parser.error("--views must start with identity (the reference of the time ratio)")
    if args.ensemble and (not ens_views or not set(ens_views) <= set(views)):
        parser.error("--ensemble-views must name one or more of the --views")

    from benchmarks.common import detector_specs, real_chips_or_none
    chips = real_chips_or_none()
    if chips is None:
        return 0

    from sar_atd.detectors.base import Detections
    from sar_atd.metrics import evaluate
    from sar_atd.tta import detect_views, weighted_box_fusion
    from sar_atd_training.evaluation.runner import resolve_detector, run_detector
    from sar_atd_training.quality.boxes import apply_side_offsets, fit_side_offsets
    from sar_atd_training.quality.diagnosis import chip_records, diagnose, sample_patchworks

    specs = detector_specs(parser, args.detector, args.no_cfar)
    cfar = [s for s in specs if s == "cfar"]
    models = [s for s in specs if s != "cfar"][:1] + list(args.ensemble)
    if not models:
        parser.error("no model to augment: give --detector")
    for m in models:
        if not Path(m).is_file():
            parser.error(f"model file not found: {m}")
    if args.onnx and (Path(models[0]).suffix.lower() not in (".pt", ".pth")
                      or args.voting_iou <= 0):
        parser.error("--onnx exports the first model: it must be a .pt file, with "
                     "--voting-iou > 0")
    sets = patchwork_sets(chips, args)
    tune = (sample_patchworks(chip_records(chips, "tune"), args.n_tune, args.seed)
            if args.n_tune else None)
    print(f"Real patchworks (4x4 MSTAR 17 deg chips, seed {args.seed}): dev {args.n}, "
          f"held-back {args.n_heldback}, hard stretch {args.n_stretch}"
          + (f", tune {args.n_tune} (side-bias fit)" if tune else "")
          + f"; WBF IoU {args.iou}; models: {', '.join(Path(m).name for m in models)}",
          flush=True)

    # raw detections per (set, model, view), boxes in image pixels; ms per image and view.
    # Model keys: 0 the model, 1.. the ensemble, VOTE the model with box voting.
    raw: dict[tuple[str, int, str], list[Detections]] = {}
    ms: dict[tuple[int, str], list[float]] = {}
    all_sets = dict(sets, **({"tune": tune.images} if tune else {}))
    dets = {k: resolve_detector(spec, box_voting_iou=_no_voting(spec))[0]
            for k, spec in enumerate(models)}
    model_views = {k: parse_views(views if k == 0 else ens_views) for k in dets}
    if args.voting_iou > 0:
        dets[VOTE] = resolve_detector(models[0], box_voting_iou=args.voting_iou)[0]
        model_views[VOTE] = tuple(v for v in model_views[0] if v.name in PLAIN)
    tmp = tempfile.TemporaryDirectory(prefix="bench_box_tta_")
    if args.onnx:
        import torch

        from sar_atd_training.export import export_checkpoint

        for key, iou in ((ONNX, 0.0), (ONNX_VOTE, args.voting_iou)):
            out = Path(tmp.name) / f"{Path(models[0]).stem}_vote{iou:g}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings of torchvision's code
                export_checkpoint(models[0], out, box_voting_iou=iou)
            # ONNX Runtime with as many intra-op threads as torch uses here
            dets[key] = resolve_detector(str(out), threads=torch.get_num_threads())[0]
            model_views[key] = parse_views("identity")
    for sname, images in all_sets.items():
        for it in images:  # image by image, every model and view: comparable timings
            for k, det in dets.items():
                if sname == "tune" and k not in (0, VOTE):
                    continue  # the side-bias fit is of the first model only
                sv = model_views[k] if sname != "tune" else tuple(
                    v for v in model_views[k] if v.name in PLAIN)
                out, t = detect_views(det, it.image, sv)
                for v, d, tv in zip(sv, out, t, strict=True):
                    raw.setdefault((sname, k, v.name), []).append(d)
                    if sname == "dev":
                        ms.setdefault((k, v.name), []).append(tv)
    tmp.cleanup()
    for k in dets:
        name = Path(models[max(k, 0)]).name + {
            VOTE: " (box voting)", ONNX: " (ONNX Runtime, no voting)",
            ONNX_VOTE: " (ONNX Runtime, box voting in the graph)"}.get(k, "")
        print(f"{name}: " + ", ".join(
            f"{v.name} {np.median(ms[(k, v.name)]):.0f} ms" for v in model_views[k])
            + " per dev patchwork (median)", flush=True)

    def fused(sname: str, keys: Sequence[tuple[int, str]]) -> list[Detections]:
        runs = [raw[(sname, k, v)] for k, v in keys]
        if len(runs) == 1:
            return runs[0]
        return [weighted_box_fusion([r[i].boxes for r in runs], [r[i].scores for r in runs],
                                    args.iou) for i in range(len(runs[0]))]

    def score(sname: str, preds: list[Detections]) -> str:
        m = evaluate(preds, [it.boxes for it in all_sets[sname]],
                     iou_thresholds=(0.25, 0.5, 0.7), ap_iou_thresholds=(0.5,))
        return _ap(m)

    base_ms = np.asarray(ms[(0, "identity")])
    rows = []
    for spec in cfar:
        det, _ = resolve_detector(spec)
        cells = [score(s, run_detector(det, imgs, progress=False)[0])
                 for s, imgs in sets.items()]
        rows.append(f"| {det.name} | - | {' | '.join(cells)} | - |")
    combos = _combos(views)
    if VOTE in dets:
        combos += [(f"box voting (IoU {args.voting_iou:g})" + ("" if v.name == "identity" else
                    f", identity+{v.name}"), [(VOTE, "identity")] + (
                        [] if v.name == "identity" else [(VOTE, v.name)]))
                   for v in model_views[VOTE]]
    if ONNX in dets:
        combos += [("ONNX Runtime, graph without voting", [(ONNX, "identity")]),
                   (f"ONNX Runtime, box voting in the graph (IoU {args.voting_iou:g})",
                    [(ONNX_VOTE, "identity")])]
    if len(models) > 1:
        combos.append((f"ensemble of {len(models)} models ({','.join(ens_views)})",
                       [(k, v) for k in range(len(models)) for v in ens_views]))
    for label, keys in combos:
        ratio = np.median(sum(np.asarray(ms[key]) for key in keys) / base_ms)
        cells = [score(s, fused(s, keys)) for s in sets]
        rows.append(f"| {label} | {len(keys)} | {' | '.join(cells)} | {ratio:.2f} |")
        if tune and all(v in PLAIN and k in (0, VOTE) for k, v in keys):
            off = fit_side_offsets(diagnose(tune, fused("tune", keys), label).err)
            cells = [score(s, [Detections(apply_side_offsets(p.boxes, off), p.scores)
                               for p in fused(s, keys)]) for s in sets]
            rows.append(f"| {label} + side bias (tune: far {off[0]:+.1f}, near {off[1]:+.1f}"
                        f", left {off[2]:+.1f}, right {off[3]:+.1f} px) | {len(keys)} | "
                        f"{' | '.join(cells)} | {ratio:.2f} |")
    print()
    print("| lever | inferences | dev AP25/50/70 | held-back AP25/50/70 | stretch AP25/50/70 "
          "| time vs identity |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    if ONNX in dets:
        ratio = np.median(np.asarray(ms[(ONNX_VOTE, "identity")])
                          / np.asarray(ms[(ONNX, "identity")]))
        print(f"\nONNX Runtime time, graph with voting / without: {ratio:.2f} (median over "
              f"{len(base_ms)} dev images)")
        print("Parity, torch box voting vs the graph's (ONNX Runtime), IoU "
              f"{args.voting_iou:g}:")
        for sname in sets:
            a, b = raw[(sname, VOTE, "identity")], raw[(sname, ONNX_VOTE, "identity")]
            same = [(x, y) for x, y in zip(a, b, strict=True) if len(x) == len(y)]
            diff = max((float(np.abs(x.boxes - y.boxes).max()) for x, y in same if len(x)),
                       default=0.0)
            sdiff = max((float(np.abs(x.scores - y.scores).max()) for x, y in same if len(x)),
                        default=0.0)
            ma, mb = (evaluate(p, [it.boxes for it in sets[sname]],
                               iou_thresholds=(0.25, 0.5, 0.7), ap_iou_thresholds=(0.5,))
                      for p in (a, b))
            dap = max(abs(ma[k] - mb[k]) for k in ("AP25", "AP50", "AP70"))
            print(f"  {sname}: max box difference {diff:.2e} px, max score difference "
                  f"{sdiff:.1e} over {sum(len(x) for x, _ in same)} detections; "
                  f"{len(a) - len(same)} of {len(a)} images with another number of "
                  f"detections; torch {_ap(ma)}, ONNX {_ap(mb)}, max AP difference {dap:.1e}")
    return 0


def _no_voting(spec: str) -> float | None:
    """Box voting off for a .pt model; other files as they hold (an exported graph refuses
    a setting it does not hold)."""
    return 0.0 if Path(spec).suffix.lower() in (".pt", ".pth") else None


if __name__ == "__main__":
    sys.exit(main())
