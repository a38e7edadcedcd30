"""``sar-atd train <what>``: training commands (registry :data:`TRAINERS`)."""

from __future__ import annotations

import argparse
from typing import Any

from sar_atd_training.cliutil import add_recipe_args


def _detector(args: argparse.Namespace) -> int:
    from sar_atd_training.trainer.train import main

    return main(args)


# what -> (help, add-arguments function, run function). Explicit registry.
def _detector_args(p: argparse.ArgumentParser) -> None:
    from sar_atd_training.trainer.train import get_args_parser

    get_args_parser(p)


def _record_args(p: argparse.ArgumentParser) -> None:
    from sar_atd_training.trainer.record import add_args

    add_args(p)


def _record(args: argparse.Namespace) -> int:
    from sar_atd_training.trainer.record import main

    return main(args)


def _segmenter(args: argparse.Namespace) -> int:
    from sar_atd_training.segmentation.train import main

    return main(args)


def _verifier(args: argparse.Namespace) -> int:
    from sar_atd_training.verifier.train import main

    return main(args)


def _verifier_args(parser: argparse.ArgumentParser) -> None:
    from sar_atd_training.verifier.train import add_args

    add_args(parser)


def _box_calibrator(args: argparse.Namespace) -> int:
    from sar_atd_training.boxcal.train import main

    return main(args)


TRAINERS: dict[str, tuple[str, Any, Any]] = {
    "detector": ("train a detector (Faster R-CNN VGG16, RetinaNet R50/R18) with FGSM",
                 _detector_args, _detector),
    "record": ("write a run's training record (JSON + loss/validation plot) for release",
               _record_args, _record),
    "segmenter": ("train the target/shadow U-Net segmenter on synthetic vignettes",
                  add_recipe_args, _segmenter),
    "verifier": ("train the second-stage target verifier (vehicle vs trees, houses, "
                 "clutter) on synthetic crops", _verifier_args, _verifier),
    "box-calibrator": ("train the class-aware box calibrator (vehicle-class CNN on synthetic "
                       "windows, per-class side offsets fitted on tune-split patchworks)",
                       add_recipe_args, _box_calibrator),
}


def register(subparsers: Any) -> None:
    """Add ``sar-atd train`` and its subcommands."""
    p = subparsers.add_parser("train", help="train models")
    sub = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    for name, (help_, add_args, run) in TRAINERS.items():
        q = sub.add_parser(name, help=help_, description=help_)
        add_args(q)
        q.set_defaults(func=run)
