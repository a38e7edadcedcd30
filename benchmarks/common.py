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
