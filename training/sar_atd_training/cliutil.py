"""Checks every ``sar-atd`` command runs on its paths and values before any work starts.

Each raises an error that the CLI prints as one line: :class:`UsageError` (exit 2) for an
argument that cannot work as given (wrong suffix, a file where a folder is needed, a value
out of range), ``FileNotFoundError``/``PermissionError`` (exit 1) for what the machine lacks.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sar_atd_training.errors import UsageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
"""Suffixes OpenCV writes (an unknown suffix makes ``cv2.imwrite`` raise)."""


def _writable_parent(path: Path, what: str) -> None:
    """The nearest existing ancestor of ``path`` must be a writable folder."""
    anc = next((p for p in path.parents if p.exists()), Path("."))
    if not anc.is_dir():
        raise UsageError(f"{what} {path}: {anc} is a file, not a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {path}: folder {anc} is not writable")


def check_output_file(path: str | Path, suffixes: Sequence[str], what: str = "output"
                      ) -> Path:
    """Check an output file path: suffix among ``suffixes``, not a folder, writable.

    Returns:
        The path, unchanged (the file is written exactly there).
    """
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"{what} {path}: expected a {'/'.join(suffixes)} file name")
    if path.is_dir():
        raise UsageError(f"{what} {path} is a folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(f"{what} {path} is not writable")
    _writable_parent(path, what)
    return path


def check_output_dir(path: str | Path, what: str = "output folder") -> Path:
    """Check an output folder path: not a file, creatable or writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {path} is a file")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"{what} {path} is not writable")
    else:
        _writable_parent(path, what)
    return path


def check_input_file(path: str | Path, what: str = "input",
                     suffixes: Sequence[str] | None = None) -> Path:
    """Check an input file: exists, is a file, readable, optionally with a known suffix."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.is_dir():
        raise UsageError(f"{what} {path} is a folder, expected a file")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise UsageError(f"{what} {path}: expected a {'/'.join(suffixes)} file")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"{what} {path} is not readable")
    return path


def check_number(value: float | int, name: str, lo: float | None = None,
                 hi: float | None = None, *, lo_open: bool = False) -> None:
    """Refuse a non-finite value or one outside ``[lo, hi]`` (``(lo, hi]`` if ``lo_open``)."""
    v = float(value)
    ok = math.isfinite(v) and (lo is None or (v > lo if lo_open else v >= lo)) \
        and (hi is None or v <= hi)
    if not ok:
        low = "-inf" if lo is None else f"{lo:g}"
        high = "inf" if hi is None else f"{hi:g}"
        rng = f"{'(' if lo_open else '['}{low}, {high}]"
        raise UsageError(f"{name} must be in {rng}, got {value}")


def check_device(name: str, what: str = "--device") -> str:
    """Refuse a malformed torch device name, or a CUDA device on a machine without one.

    ``auto`` passes (it means CUDA when present, else the CPU).
    """
    if name == "auto":
        return name
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"{what} {name!r} is not a device (cpu, cuda, cuda:N or auto)") \
            from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"{what} {name}: CUDA is not available on this machine "
                               "(use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"{what} {name}: only {torch.cuda.device_count()} CUDA "
                               "device(s) present")
    elif dev.type != "cpu":
        raise UsageError(f"{what} {name!r}: only cpu and cuda devices are supported")
    return name


def add_box_options(parser) -> None:
    """Test-time box options of the commands that run a detector (``eval``, ``detect``).

    ``--box-voting-iou`` sets box voting (:mod:`sar_atd.backends.voting`; default: as the
    model holds); ``--tta`` fuses several views (:func:`sar_atd.tta.parse_views`). Both are
    passed to :func:`sar_atd.runtime.resolve_detector`, which refuses them where they
    cannot run.
    """
    from sar_atd.backends.voting import parse_box_voting_iou

    def voting_iou(text: str) -> float | None:
        try:
            return parse_box_voting_iou(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parser.add_argument("--box-voting-iou", type=voting_iou, default=None, metavar="IOU",
                        help="box voting IoU: 'model' (default: as the model holds; .pt "
                             "files 0.5, exported graphs what they were exported with), "
                             "an IoU in (0, 1], or 0/none = off; an exported graph refuses "
                             "a value it does not hold")
    parser.add_argument("--tta", default="", metavar="VIEWS",
                        help="test-time views fused by weighted box fusion, e.g. "
                             "identity,mirror (one inference per view; default off)")


def add_recipe_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``sar-atd train <model>`` commands that run a recipe YAML.

    ``--bank``, ``--steps`` and ``--device`` override the recipe (see
    :func:`apply_recipe_overrides`).
    """
    parser.add_argument("--config", type=Path, required=True, help="recipe YAML")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--bank", default=None,
                        help="signature bank folder (overrides data.bank)")
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's steps")
    parser.add_argument("--device", default=None, help="override the recipe's device")
    parser.add_argument("--no-progress", action="store_true")


def apply_recipe_overrides(cfg: Any, args: argparse.Namespace) -> Any:
    """``cfg`` (a recipe dataclass with ``data.bank``, ``steps``, ``device``) with the
    command line's ``--bank``/``--steps``/``--device`` in place of the recipe's."""
    if args.bank:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, bank=str(args.bank)))
    if args.steps is not None:
        cfg = dataclasses.replace(cfg, steps=args.steps)
    if args.device:
        cfg = dataclasses.replace(cfg, device=args.device)
    return cfg
