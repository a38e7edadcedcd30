"""Adversarial robustness table: AP50/AP70 of detectors clean and under white-box FGSM / PGD.

    python -m benchmarks.bench_attack [--detector [LABEL=]model.pt ...] [--set NAME=DIR ...]
        [--n 4] [--attack fgsm,pgd] [--epsilon 2,8] [--pgd-steps 10] [--json OUT.json]

Each torch detector is attacked on its own training loss with the ground-truth boxes
(:mod:`sar_atd_training.attacks`: perturbations in whole grey levels, valid uint8 images,
PGD with a random start); CA-CFAR is scored on the images attacked against the first
detector (a transfer attack), so the classical baseline stands beside the models. Sets: the
real patchworks (``--n`` 4x4 patchworks of ``../shared/data`` chips, seed 0) and any
``sar-atd testset build`` folder given with ``--set`` (its first ``--n`` images). Cost on
the shared 2-core CPU: a PGD-10 attack is 11 forward/backward passes, ~1 min per 464 px
patchwork with one thread under load, so the default ``--n`` is small. With ``--json`` the
results are written (atomically) after every cell, so a long run keeps what it finished.
Prints SKIPPED for the real patchworks where ``../shared/data`` is absent.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any


def _labelled(spec: str) -> tuple[str, str]:
    """``LABEL=PATH`` -> (label, path); a bare path is labelled by its file (and folder)."""
    if "=" in spec:
        label, path = spec.split("=", 1)
        return label, path
    p = Path(spec)
    return (f"{p.parent.name}/{p.name}" if p.parent.name else p.name), spec


def _cell(r: dict[str, Any] | None) -> str:
    return "-" if r is None else f"{r['AP50']:.3f}/{r['AP70']:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_attack",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--detector", action="append", default=None, metavar="[LABEL=]PT",
                        help="torch model to attack (repeatable; default models/default.pt)")
    parser.add_argument("--no-cfar", action="store_true", help="no CA-CFAR transfer rows")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=DIR",
                        help="extra test set (sar-atd testset build folder); repeatable")
    parser.add_argument("--no-patchworks", action="store_true",
                        help="skip the real patchworks (only the --set folders)")
    parser.add_argument("--n", type=int, default=4, help="images per set (default 4)")
    parser.add_argument("--attack", default="fgsm,pgd", help="comma list of fgsm, pgd")
    parser.add_argument("--epsilon", default="2,8", help="grey levels, comma list")
    parser.add_argument("--pgd-steps", type=int, default=10, help="PGD steps (>= 10)")
    parser.add_argument("--seed", type=int, default=0, help="patchwork and PGD-start seed")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--progress", action="store_true", help="progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from benchmarks.common import DEFAULT_MODEL, real_chips_or_none
    from sar_atd_training.attacks import ATTACKS, AttackError, attacked_scores, parse_epsilons

    attacks = [a.strip() for a in args.attack.split(",") if a.strip()]
    if not attacks or any(a not in ATTACKS for a in attacks):
        parser.error(f"--attack must be a comma list of {list(ATTACKS)}, got {args.attack!r}")
    try:
        eps = [e for e in parse_epsilons(args.epsilon) if e > 0]
    except AttackError as err:
        parser.error(str(err))
    if args.n < 1 or ("pgd" in attacks and args.pgd_steps < 10):
        parser.error("--n must be >= 1 and --pgd-steps >= 10")
    specs = args.detector if args.detector is not None else (
        [str(DEFAULT_MODEL)] if DEFAULT_MODEL.is_file() else [])
    if not specs:
        parser.error("no detector: give --detector model.pt")
    sets: list[tuple[str, Path | None]] = []
    if not args.no_patchworks:
        chips = real_chips_or_none()  # prints SKIPPED where the real data is absent
        if chips is not None:
            sets.append(("real patchworks", chips))
    for s in args.set:
        name, _, path = s.partition("=")
        if not path:
            parser.error(f"--set takes NAME=DIR, got {s!r}")
        sets.append((name, Path(path)))
    if not sets:
        return 0

    from sar_atd.atomic import atomic_write_json
    from sar_atd_training.evaluation.dataset import load_eval_dataset
    from sar_atd_training.evaluation.runner import resolve_detector, to_jsonable

    dets = [(*_labelled(s),) for s in specs]
    models = [(label, path, resolve_detector(path)[0]) for label, path in dets]
    cfar = None if args.no_cfar else resolve_detector("cfar")[0]
    columns = [("clean", 0.0)] + [(a, e) for a in attacks for e in eps]
    doc: dict[str, Any] = {"attacks": attacks, "epsilons_grey_levels": eps,
                           "pgd_steps": args.pgd_steps, "seed": args.seed, "sets": {}}
    rows: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for set_name, path in sets:
        images, desc = load_eval_dataset(path, n=args.n, seed=args.seed,
                                         progress=args.progress)
        images = images[:args.n]
        n_gt = sum(len(it.boxes) for it in images)
        sd = doc["sets"][set_name] = {"description": desc, "n_images": len(images),
                                      "n_targets": n_gt, "results": {}}
        print(f"{set_name}: {len(images)} images, {n_gt} targets ({desc})", flush=True)
        for k, (label, spec, det) in enumerate(models):
            pairs = [(spec, det)] + ([("cfar", cfar)] if cfar is not None and k == 0 else [])
            for attack, e in columns:
                method = "fgsm" if attack == "clean" else attack
                t0 = time.perf_counter()
                for r in attacked_scores(pairs, images, method, [e], steps=args.pgd_steps,
                                         seed=args.seed, progress=args.progress):
                    who = label if r["white_box"] else f"CA-CFAR (transfer from {label})"
                    col = "clean" if attack == "clean" else f"{attack} {e:g}"
                    r["seconds_per_image"] = (time.perf_counter() - t0) / len(images)
                    rows.setdefault((set_name, who), {})[col] = r
                    sd["results"].setdefault(who, {})[col] = r
                    print(f"  {who:40s} {col:8s} AP50 {r['AP50']:.3f} AP70 {r['AP70']:.3f} "
                          f"(max |change| {r['max_abs_perturbation']}, "
                          f"{r['attack_seconds'] / len(images):.1f} s/img attack)", flush=True)
                if args.json:
                    atomic_write_json(args.json, to_jsonable(doc), indent=1)
    cols = ["clean"] + [f"{a} {e:g}" for a in attacks for e in eps]
    pgd_name = f"PGD-{args.pgd_steps}"
    heads = ["clean"] + [f"{pgd_name if a == 'pgd' else 'FGSM'} {e:g}"
                         for a in attacks for e in eps]
    print("\nAP50/AP70, white-box on each model's training loss with the GT boxes "
          "(epsilon in grey levels; CFAR under transfer from the first model)")
    print("| set (images / targets) | detector | " + " | ".join(heads) + " |")
    print("|---|---|" + "---|" * len(heads))
    for (set_name, who), r in rows.items():
        sd = doc["sets"][set_name]
        print(f"| {set_name} ({sd['n_images']} / {sd['n_targets']}) | {who} | "
              + " | ".join(_cell(r.get(c)) for c in cols) + " |")
    if args.json:
        print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
