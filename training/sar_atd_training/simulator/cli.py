"""``sar-atd simulate``: write (or resume) the signature bank, optionally a preview sheet.

A new bank holds every OOD object kind (tree, house and the man-made clutter kinds) unless
``--objects`` names some; rerunning on a bank that lacks some of the asked objects adds just
those. ``--add-objects KIND ...`` adds OOD objects to an existing bank, its other settings read
from its manifest (no need to repeat them)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import time
from typing import Any

LOG = logging.getLogger("sar-atd.simulate")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "simulate", help="simulate the signature bank (targets x azimuths x depressions)",
        description=__doc__)
    p.add_argument("--out", required=True, help="bank folder (created; resumed if present)")
    p.add_argument("--classes", nargs="+", default=None,
                   help="target classes (MSTAR folder names); default: all ten")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes (default: all cores)")
    p.add_argument("--azimuth-step", type=float, default=0.5,
                   help="azimuth step (deg, 0.1-180)")
    p.add_argument("--depressions", type=float, nargs="+", default=[15.0, 16.0, 17.0],
                   help="target depressions (deg, 5-75, each once)")
    p.add_argument("--objects", nargs="+", default=None, metavar="KIND",
                   help="OOD objects to simulate (default: all of tree, house, container, "
                        "wall, lamp_posts)")
    p.add_argument("--no-objects", action="store_true",
                   help="leave out every OOD object")
    p.add_argument("--add-objects", nargs="+", default=None, metavar="KIND",
                   help="add these OOD objects to the existing bank in --out (its other "
                        "settings come from its manifest; other options are ignored)")
    p.add_argument("--seed", type=int, default=0, help="base seed")
    p.add_argument("--edge-model", default="isotropic", choices=("isotropic", "wedge"),
                   help="edge diffraction: isotropic (default; every facet edge alike) or "
                        "wedge (lit faces only, weak trailing edges, none between the facets "
                        "of a curved surface)")
    p.add_argument("--preview", default=None, metavar="PNG",
                   help="also write a preview sheet (signature | shadow) to this PNG")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sar_atd.sar.chips import MSTAR_CLASSES
    from sar_atd_training.cliutil import check_output_dir, check_output_file
    from sar_atd_training.errors import UsageError
    from sar_atd_training.simulator.bank import (
        BankConfig,
        SignatureBank,
        read_bank_config,
        write_bank,
        write_preview,
    )
    from sar_atd_training.simulator.models import OBJECT_NAMES, check_object_kinds

    # every check before any work (nothing is written for a bad argument)
    check_output_dir(args.out, "--out")
    if args.preview is not None:
        check_output_file(args.preview, (".png",), "--preview")
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    if args.no_objects and (args.objects or args.add_objects):
        raise UsageError("--no-objects contradicts --objects / --add-objects")
    try:
        if args.add_objects:
            add = check_object_kinds(args.add_objects, "--add-objects")
            old = read_bank_config(args.out)  # BankError (one line) without a bank there
            cfg = dataclasses.replace(
                old, objects=old.objects + tuple(o for o in add if o not in old.objects))
        else:
            objects = (() if args.no_objects else
                       check_object_kinds(args.objects, "--objects") if args.objects
                       else OBJECT_NAMES)
            cfg = BankConfig(classes=tuple(args.classes or MSTAR_CLASSES),
                             azimuth_step_deg=args.azimuth_step,
                             depressions_deg=tuple(args.depressions), objects=objects,
                             seed=args.seed, edge_model=args.edge_model)
    except ValueError as err:
        raise UsageError(str(err)) from None
    t0 = time.perf_counter()
    write_bank(args.out, cfg, workers=args.workers)
    dt = time.perf_counter() - t0
    bank = SignatureBank.open(args.out, verify="size")
    size = sum(f.stat().st_size for f in bank.path.iterdir() if f.is_file())
    print(f"bank {args.out}: {len(bank)} pairs, {size / 2**20:.0f} MiB, {dt:.0f} s this run")
    if args.preview:
        names = list(cfg.classes[:4]) + list(cfg.objects)
        write_preview(bank, args.preview, names)
        print(f"preview: {args.preview}")
    return 0
