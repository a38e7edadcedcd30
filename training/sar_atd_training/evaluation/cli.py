"""``sar-atd eval``: evaluate detectors on real data and write a report.

Examples::

    sar-atd eval --detector cfar --dataset ../shared/data/mstar_soc_17deg --out reports/cfar
    sar-atd eval --detector cfar --detector runs/retina.onnx --dataset patchworks/ --out rep
    sar-atd eval build-patchworks --chips ../shared/data/mstar_soc_17deg --out patchworks

``--dataset`` is a COCO-JSON dataset (a folder with ``annotations.json`` + images, or the
JSON file) or a folder of chips + SARBake masks (``<CLASS>/<NAME>.jpeg`` +
``<NAME>.mask.png``), from which ``--n`` patchworks are built on the fly with ``--seed``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

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
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
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
    b.set_defaults(func=run_build_patchworks)


def run_build_patchworks(args: argparse.Namespace) -> int:
    from sar_atd_training.evaluation.dataset import write_coco_dataset
    from sar_atd_training.evaluation.patchwork import build_patchworks

    pws = build_patchworks(args.chips, n=args.n, seed=args.seed, grid=args.grid,
                           overlap=args.overlap, cell_size=args.cell_size)
    path = write_coco_dataset(pws, args.out, info={
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
        write_report,
    )

    if getattr(args, "attack", None):
        from sar_atd_training.attacks import run_attack_eval

        return run_attack_eval(args)
    specs = list(args.detector or []) + list(args.compare or [])
    if not specs:
        raise SystemExit("sar-atd eval: error: give --detector (cfar | model.pt | model.onnx)")
    if args.dataset is None:
        raise SystemExit("sar-atd eval: error: give --dataset DIR")
    progress = not args.no_progress
    detectors = [resolve_detector(s, device=args.device, score_threshold=args.score_threshold)
                 + (s,) for s in specs]
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
    out = args.out or Path("eval_report")
    report = write_report(out, runs, images, desc, n_examples=args.examples,
                          extra={"method": args.method})
    print(desc)
    for r in runs:
        m = r.metrics
        print(f"{r.name:>16s}: AP25 {m['AP25']:.3f}  AP50 {m['AP50']:.3f}  "
              f"AP70 {m['AP70']:.3f}  ({r.ms_per_image:.1f} ms/image)")
    print(f"report: {report}")
    return 0
