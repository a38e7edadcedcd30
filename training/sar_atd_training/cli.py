"""``sar-atd``: one entry point, one subcommand per job.

Each subcommand lives in its own module exposing ``register(subparsers)``; modules keep
their heavy imports inside the command function so ``sar-atd --help`` stays fast.

Errors: every failure ends in one line on stderr, ``sar-atd COMMAND: error: MESSAGE``, and
exit code 2 for usage mistakes (argparse errors, :class:`~sar_atd_training.errors.UsageError`)
or 1 for anything that fails at run time (bad files, values, devices, and unexpected
exceptions, which are named as internal errors). ``-v`` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from typing import NoReturn

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
    "eval-suite": "sar_atd_training.suite.run",
}


class Parser(argparse.ArgumentParser):
    """``ArgumentParser`` whose usage errors are one line and exit code 2 (subcommand
    parsers inherit the class)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The CLI parser; with ``only``, import just that subcommand's module (fast, and a
    broken optional module cannot break unrelated commands)."""
    parser = Parser(prog="sar-atd", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        if only is not None and name != only:
            continue
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name and module.startswith(err.name):  # an optional module not installed
                continue
            raise
        mod.register(sub)
    return parser


_RUNTIME_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, MemoryError,
                                                   RuntimeError)
"""Exception types whose message is meant for a user (anything else is a bug, reported as
an internal error)."""


def error_line(err: BaseException) -> tuple[str, int]:
    """The one-line message and exit code for an exception raised by a command."""
    from sar_atd.errors import SarAtdError
    from sar_atd_training.errors import UsageError

    msg = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, MemoryError):
        msg = f"out of memory ({msg})"
    elif isinstance(err, KeyError):
        msg = f"internal error: missing key {msg}; run with -v for the traceback"
    elif not isinstance(err, (SarAtdError, *_RUNTIME_ERRORS)):
        msg = f"internal error ({type(err).__name__}): {msg}; run with -v for the traceback"
    if len(msg) > 600:
        msg = msg[:597] + "..."
    return msg, 2 if isinstance(err, UsageError) else 1


def main(argv: list[str] | None = None) -> int:
    """Run ``sar-atd ARGV``; returns the exit code (0 ok, 1 runtime error, 2 usage error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in ("-v", "--verbose") for a in argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = build_parser(first if first in COMMANDS else None)
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error, already printed
        return exc.code if isinstance(exc.code, int) else 2
    except Exception as err:  # a command module that fails to import
        if verbose:
            traceback.print_exc()
        msg, _ = error_line(err)
        print(f"sar-atd: error: {msg}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    prog = f"sar-atd {args.command}"
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # a command that exits by itself
        if isinstance(exc.code, int) or exc.code is None:
            return exc.code or 0
        print(f"{prog}: error: {exc.code}", file=sys.stderr)
        return 1
    except Exception as err:
        if args.verbose:
            traceback.print_exc()
        msg, code = error_line(err)
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
