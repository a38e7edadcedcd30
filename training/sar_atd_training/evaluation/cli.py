"""``sar-atd eval``: evaluate detectors on real data and write a report.

Examples::

    sar-atd eval --detector cfar --dataset ../shared/data/mstar_soc_17deg --out reports/cfar
    sar-atd eval --detector cfar --detector runs/retina.onnx --dataset patchworks/ --out rep
    sar-atd eval build-patchworks --chips ../shared/data/mstar_soc_17deg --out patchworks

``--dataset`` is a COCO-JSON dataset (a folder with ``annotations.json`` + images, or the
JSON file; bare image names beside it or in ``images/`` are found) or a folder of chips +
SARBake masks (``<CLASS>/<NAME>.jpeg`` + ``<NAME>.mask.png``), from which ``--n``
patchworks are built on the fly with ``--seed``.

``--tile T`` evaluates large scenes through the scene detector (the tiler, batched
inference, cross-seam merge), exactly as ``sar-atd detect`` and the detector node run.

What cannot be measured honestly is refused: truncated or undecodable images, image sizes
that disagree with the COCO file, zero-size/non-finite/outside boxes (each names the file
or annotation), negative score thresholds, thresholds above 1 for model files, ``--n`` < 1.
The report folder is written atomically; an existing folder is replaced only when it holds
an earlier report (or with ``--overwrite``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sar_atd_training.cliutil import add_box_options

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate detectors (CFAR, .pt, .onnx) on real data; write a report",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--detector", action="append", default=None, metavar="DET",
                   help="'cfar', 'cfar-os', a .pt checkpoint or a .onnx model; repeat to "
                        "compare several detectors in one report")
    p.add_argument("--compare", nargs="+", default=[], metavar="DET",
                   help="more detectors to put side by side with --detector")
    p.add_argument("--dataset", type=Path, metavar="DIR",
                   help="COCO dataset (DIR/annotations.json) or chips+masks folder")
    p.add_argument("--out", type=Path, default=None, metavar="REPORT_DIR",
                   help="report folder (default: ./eval_report)")
    p.add_argument("--n", type=int, default=200, help="patchworks to build (chips folder)")
    p.add_argument("--seed", type=int, default=0, help="patchwork seed (chips folder)")
    p.add_argument("--method", choices=("all-point", "coco101"), default="all-point",
                   help="AP interpolation (default all-point)")
    p.add_argument("--device", default="cpu", help="device for model backends")
    p.add_argument("--score-threshold", type=float, default=0.01,
                   help="minimum score kept by model backends (low: complete PR curve)")
    p.add_argument("--examples", type=int, default=4, help="annotated example images")
    p.add_argument("--tile", type=int, default=None, metavar="T",
                   help="evaluate through the scene detector with T x T tiles")
    p.add_argument("--overlap", type=int, default=128,
                   help="tile overlap in pixels with --tile (default 128)")
    p.add_argument("--batch", type=int, default=8, help="tiles per inference call (--tile)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty --out that is not an earlier report")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_box_options(p)
    p.add_argument("--attack", choices=("fgsm", "pgd"), default=None,
                   help="white-box attack of each torch model on its training loss with the "
                        "GT boxes; AP per --epsilon (sar_atd_training.attacks)")
    p.add_argument("--epsilon", default="0,2,8", metavar="E[,E...]",
                   help="attack budgets in 8-bit grey levels (default 0,2,8; 0 = clean)")
    p.add_argument("--attack-steps", type=int, default=10, help="PGD steps (>= 10)")
    p.set_defaults(func=run_eval)

    sub = p.add_subparsers(dest="eval_command", metavar="SUBCOMMAND")
    b = sub.add_parser("build-patchworks",
                       help="write patchworks of real chips as a COCO dataset (test set 3)")
    b.add_argument("--chips", type=Path, required=True,
                   help="folder of <CLASS>/<NAME>.jpeg chips with <NAME>.mask.png masks")
    b.add_argument("--out", type=Path, required=True, help="output folder")
    b.add_argument("--n", type=int, default=200)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--grid", type=int, default=4)
    b.add_argument("--overlap", type=int, default=16)
    b.add_argument("--cell-size", type=int, default=128)
    b.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    b.set_defaults(func=run_build_patchworks)

    from sar_atd_training.evaluation.operating_point import register_operating_point
    from sar_atd_training.evaluation.render_point import register_render_point

    register_operating_point(sub)
    register_render_point(sub)


def _usage(msg: str) -> int:
    print(f"sar-atd eval: error: {msg}", file=sys.stderr)
    return 2


def run_build_patchworks(args: argparse.Namespace) -> int:
    from sar_atd_training.evaluation.dataset import write_coco_dataset
    from sar_atd_training.evaluation.patchwork import build_patchworks

    if args.n < 1:
        return _usage(f"--n must be >= 1, got {args.n}")
    if args.out.exists() and not args.out.is_dir():
        return _usage(f"--out {args.out} is a file")
    if args.out.is_dir() and any(args.out.iterdir()) and not args.overwrite:
        return _usage(f"--out {args.out} exists and is not empty (use --overwrite)")
    pws = build_patchworks(args.chips, n=args.n, seed=args.seed, grid=args.grid,
                           overlap=args.overlap, cell_size=args.cell_size)
    path = write_coco_dataset(pws, args.out, overwrite=True, info={
        "source": str(args.chips), "seed": args.seed, "grid": args.grid,
        "overlap": args.overlap, "cell_size": args.cell_size,
        "kind": "patchworks of real chips (paper test set 3)"})
    print(f"wrote {len(pws)} patchworks, {sum(len(p.boxes) for p in pws)} boxes: {path}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from sar_atd_training.evaluation.dataset import load_eval_dataset
    from sar_atd_training.evaluation.runner import (
        DetectorRun,
        evaluate_runs,
        resolve_detector,
        run_detector,
        tiled_detector,
        write_report,
    )

    if getattr(args, "attack", None):
        from sar_atd_training.attacks import run_attack_eval

        if args.box_voting_iou or args.tta:
            return _usage("--box-voting-iou and --tta are not available with --attack (the "
                          "attack targets the model's own outputs)")

        return run_attack_eval(args)
    from sar_atd.runtime import is_neural_spec

    specs = list(args.detector or []) + list(args.compare or [])
    if not specs:
        return _usage("give --detector (cfar | model.pt | model.onnx)")
    if args.dataset is None:
        return _usage("give --dataset DIR")
    thr = args.score_threshold
    if thr < 0:
        return _usage(f"--score-threshold must be >= 0, got {thr}")
    if thr > 1 and any(is_neural_spec(s) for s in specs):
        return _usage(f"--score-threshold {thr} is above 1: model scores are probabilities "
                      f"in [0, 1]")
    if args.n < 1:
        return _usage(f"--n must be >= 1, got {args.n}")
    if args.tile is not None and (args.tile < 32 or not 0 <= args.overlap < args.tile
                                  or args.batch < 1):
        return _usage(f"need --tile >= 32, 0 <= --overlap < --tile and --batch >= 1, got "
                      f"{args.tile}, {args.overlap}, {args.batch}")
    out = args.out or Path("eval_report")
    if out.exists() and not out.is_dir():
        return _usage(f"--out {out} is a file")
    if (out.is_dir() and any(out.iterdir()) and not args.overwrite
            and not (out / "metrics.json").is_file()):
        return _usage(f"--out {out} is not empty and holds no earlier report (use "
                      f"--overwrite to replace it)")
    progress = not args.no_progress
    detectors = [resolve_detector(s, device=args.device, score_threshold=args.score_threshold,
                                  box_voting_iou=args.box_voting_iou, tta=args.tta)
                 + (s,) for s in specs]
    if args.tile is not None:
        detectors = [(tiled_detector(d, args.tile, args.overlap, args.batch, args.device),
                      {**cfg, "tile": args.tile, "overlap": args.overlap}, s)
                     for d, cfg, s in detectors]
    images, desc = load_eval_dataset(args.dataset, n=args.n, seed=args.seed,
                                     progress=progress)
    runs = []
    names: set[str] = set()
    for det, cfg, spec in detectors:
        name = det.name
        while name in names:
            name += "'"
        names.add(name)
        preds, ms = run_detector(det, images, progress=progress)
        runs.append(DetectorRun(name=name, spec=spec, preds=preds, ms_per_image=ms,
                                config=cfg))
    evaluate_runs(runs, images, method=args.method)
    extra: dict = {"method": args.method}
    if args.tile is not None:
        extra["tiling"] = {"tile": args.tile, "overlap": args.overlap, "batch": args.batch}
    report = write_report(out, runs, images, desc, n_examples=args.examples, extra=extra)
    print(desc)
    for r in runs:
        m = r.metrics
        print(f"{r.name:>16s}: AP25 {m['AP25']:.3f}  AP50 {m['AP50']:.3f}  "
              f"AP70 {m['AP70']:.3f}  ({r.ms_per_image:.1f} ms/image)")
    print(f"report: {report}")
    return 0
