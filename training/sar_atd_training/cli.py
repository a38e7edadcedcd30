"""``sar-atd``: one entry point, one subcommand per job.

Each subcommand lives in its own module exposing ``register(subparsers)``; modules keep
their heavy imports inside the command function so ``sar-atd --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# subcommand name -> module providing register(subparsers)
COMMANDS: dict[str, str] = {
    "simulate": "sar_atd_training.simulator.cli",
    "mstar": "sar_atd_training.mstar_cli",
    "clutter": "sar_atd_training.clutter.cli",
    "dataset": "sar_atd_training.overlay.cli",
    "eval": "sar_atd_training.evaluation.cli",
    "detect": "sar_atd_training.detect_cli",
    "train": "sar_atd_training.trainer.cli",
    "export": "sar_atd_training.export",
    "demo": "sar_atd_training.demo",
    "bag": "sar_atd_training.bag_cli",
    "run": "sar_atd_training.run_cli",
    "stream-demo": "sar_atd_training.stream_demo",
    "segment": "sar_atd_training.segmentation.cli",
    "testset": "sar_atd_training.testsets.cli",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The CLI parser; with ``only``, import just that subcommand's module (fast, and a
    broken optional module cannot break unrelated commands)."""
    parser = argparse.ArgumentParser(prog="sar-atd", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        if only is not None and name != only:
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name and module.startswith(err.name):  # not built yet
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(first if first in COMMANDS else None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        logging.getLogger("sar-atd").warning("interrupted")
        return 130
    except Exception as err:  # clear one-line error for known failures
        from sar_atd.errors import SarAtdError

        if isinstance(err, (SarAtdError, FileNotFoundError)):
            print(f"sar-atd {args.command}: error: {err}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
