"""``sar-atd testset build KIND``: build one of the paper's four test sets (section II.C).

Examples::

    sar-atd testset build real-in-background --chips ../shared/data/mstar_soc_17deg \\
        --segmenter runs/seg/segmenter.pt --out sets/real_bg --n 50
    sar-atd testset build synthetic-in-background --bank bank --out sets/synth_bg
    sar-atd testset build patchwork --chips ../shared/data/mstar_soc_17deg --out sets/pw
    sar-atd testset build ood --bank bank --out sets/ood [--no-targets]

Each set is a COCO folder (``annotations.json`` + ``images/``, scored by ``sar-atd eval
--dataset DIR``) with ``manifest.json``; see :mod:`sar_atd_training.testsets.builders`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from sar_atd_training.testsets.builders import KINDS

    p = subparsers.add_parser("testset", help="build the paper's test sets (COCO + manifest)",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="testset_command", metavar="SUBCOMMAND", required=True)
    b = sub.add_parser("build", help="build one test set")
    b.add_argument("kind", choices=KINDS)
    b.add_argument("--out", type=Path, required=True, help="output folder (must not exist)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--n", type=int, default=50, help="images")
    b.add_argument("--image-size", type=int, default=640)
    b.add_argument("--chips", default=None, help="real chips (+ SARBake masks)")
    b.add_argument("--segmenter", default=None, help="segmenter.pt (real targets)")
    b.add_argument("--cut-with", choices=("segmenter", "sarbake"), default="segmenter",
                   help="real-in-background: cut targets with the segmenter (default) or "
                        "with the chips' SARBake masks (oracle, for comparison)")
    b.add_argument("--bank", default=None, help="signature bank (synthetic targets, OOD)")
    b.add_argument("--backgrounds", default=None,
                   help="background folder (default: generated clutter, held-out seeds)")
    b.add_argument("--generated-backgrounds", type=int, default=4)
    b.add_argument("--background-seed", type=int, default=1000)
    b.add_argument("--targets", type=int, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="targets per image (default 1 3)")
    b.add_argument("--ood", type=int, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="OOD objects per image (ood set; default 1 3)")
    b.add_argument("--ood-kinds", default=None, metavar="K1,K2",
                   help="ood set: comma-separated OOD object kinds to place (tree, house, "
                        "container, wall, lamp_posts) or 'all' (every kind the bank holds); "
                        "default: tree,house")
    b.add_argument("--no-targets", action="store_true", help="ood set without targets")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    from sar_atd_training.testsets.builders import (
        TestSetConfig,
        TestSetError,
        build_testset,
        write_testset,
    )

    if args.no_targets and args.kind != "ood":
        raise TestSetError("--no-targets applies to the ood set only")
    if args.no_targets and args.targets:
        raise TestSetError("give either --no-targets or --targets, not both")
    if args.ood_kinds is not None and args.kind != "ood":
        raise TestSetError("--ood-kinds applies to the ood set only")
    kinds = tuple(k.strip() for k in (args.ood_kinds or "").split(",") if k.strip())
    if args.ood_kinds is not None and not kinds:
        raise TestSetError("--ood-kinds names no kind")
    targets = (0, 0) if args.no_targets else tuple(args.targets or (1, 3))
    cfg = TestSetConfig(kind=args.kind, n=args.n, seed=args.seed, image_size=args.image_size,
                        targets_per_image=targets,  # type: ignore[arg-type]
                        ood_per_image=tuple(args.ood or (1, 3)),  # type: ignore[arg-type]
                        ood_kinds=kinds,
                        chips=args.chips, segmenter=args.segmenter, cut_with=args.cut_with,
                        bank=args.bank,
                        backgrounds=args.backgrounds,
                        generated_backgrounds=args.generated_backgrounds,
                        background_seed=args.background_seed)
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TestSetError(f"output folder {out} already exists: choose a new --out")
    images = build_testset(cfg, progress=not args.no_progress)
    path = write_testset(images, cfg, out)
    n_t = sum(len(it.boxes) for it in images)
    n_o = sum(len(it.ood_boxes) for it in images)
    print(f"{args.kind}: {len(images)} images, {n_t} target boxes, {n_o} OOD objects -> "
          f"{path.parent}")
    return 0
