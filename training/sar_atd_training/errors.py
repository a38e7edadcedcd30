"""Errors raised by the offline tools (``sar_atd_training``). Each names the offending file or
value; the ``sar-atd`` CLI prints it as one line (exit 2 for :class:`UsageError`, else 1)."""

from __future__ import annotations

from sar_atd.errors import SarAtdError


class UsageError(SarAtdError, ValueError):
    """A command-line argument is invalid in a way argparse cannot see (exit code 2)."""


class BankError(SarAtdError, ValueError):
    """A signature bank is missing, corrupt, or does not match the requested configuration."""


class RunFolderError(SarAtdError, ValueError):
    """A training run folder would be overwritten, or a resume does not match its recipe."""
