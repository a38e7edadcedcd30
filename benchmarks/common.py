"""Pieces shared by the benchmark commands."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "default.pt"


def add_detector_args(parser: argparse.ArgumentParser,
                      what: str = "model (.pt/.onnx, repeatable; default models/default.pt)"
                      ) -> None:
    """``--detector`` (repeatable) and ``--no-cfar``, read back by :func:`detector_specs`."""
    parser.add_argument("--detector", action="append", default=None, metavar="DET", help=what)
    parser.add_argument("--no-cfar", action="store_true", help="skip the CA-CFAR baseline")


def detector_specs(parser: argparse.ArgumentParser, detectors: list[str] | None,
                   no_cfar: bool) -> list[str]:
    """CA-CFAR (unless ``no_cfar``) followed by ``detectors``, or by the committed default
    model when none is given; a usage error when that leaves nothing to run."""
    specs = [] if no_cfar else ["cfar"]
    if detectors is None:
        specs += [str(DEFAULT_MODEL)] if DEFAULT_MODEL.is_file() else []
    else:
        specs += detectors
    if not specs:
        parser.error("nothing to run: give --detector or drop --no-cfar")
    return specs


def real_chips_or_none() -> Path | None:
    """The real MSTAR chips folder, or None after printing why the benchmark is skipped."""
    from sar_atd_training.paths import MISSING_DATA_MESSAGE, mstar_chips_dir

    chips = mstar_chips_dir()
    if chips is None:
        print(f"SKIPPED: {MISSING_DATA_MESSAGE}")
    return chips


def add_patchwork_set_args(parser: argparse.ArgumentParser) -> None:
    """``--n``, ``--n-heldback``, ``--n-stretch`` and ``--seed`` of the three real-patchwork
    sets that :func:`patchwork_sets` builds."""
    parser.add_argument("--n", type=int, default=200, help="dev patchworks (default 200)")
    parser.add_argument("--n-heldback", type=int, default=100,
                        help="held-back patchworks (default 100)")
    parser.add_argument("--n-stretch", type=int, default=60,
                        help="hard-stretch patchworks (default 60)")
    parser.add_argument("--seed", type=int, default=0)


def check_patchwork_set_args(parser: argparse.ArgumentParser, args: argparse.Namespace
                             ) -> None:
    """A usage error for a set size below 1."""
    for name in ("n", "n_heldback", "n_stretch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")


def patchwork_sets(chips: Path, args: argparse.Namespace) -> dict[str, list]:
    """The real-patchwork sets of the box benchmarks: ``dev`` (first ``args.n`` of all the
    chips), ``held-back`` (the held-back split, never used for choices) and ``stretch`` (the
    first ``args.n_stretch`` dev patchworks under the 2-90 % hard contrast stretch); lists
    of ``EvalImage``, deterministic by ``args.seed``."""
    from sar_atd.evalset import EvalImage
    from sar_atd_training.quality.diagnosis import chip_records, sample_patchworks
    from sar_atd_training.quality.renderings import rendering

    dev = sample_patchworks(chip_records(chips, "all"), n=max(args.n, args.n_stretch),
                            seed=args.seed).images
    stretch = rendering("stretch_2_90")
    return {"dev": dev[:args.n],
            "held-back": sample_patchworks(chip_records(chips, "heldback"),
                                           n=args.n_heldback, seed=args.seed).images,
            "stretch": [EvalImage(it.name, stretch(it.image), it.boxes)
                        for it in dev[:args.n_stretch]]}
