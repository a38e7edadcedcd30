"""Errors raised by the core library. Each names the offending file or value."""


class SarAtdError(Exception):
    """Base class of every error raised by ``sar_atd``."""


class ConfigError(SarAtdError, ValueError):
    """A configuration file or value is invalid (unknown key, wrong type, out of range)."""


class MstarFormatError(SarAtdError, ValueError):
    """An MSTAR file is truncated, corrupt or mislabelled."""


class ChipReadError(SarAtdError, ValueError):
    """An 8-bit chip image or SARBake mask cannot be read or has the wrong content."""


class CheckpointError(SarAtdError, ValueError):
    """A model checkpoint is missing, corrupt or does not match the requested model."""


class BackendError(SarAtdError, RuntimeError):
    """An inference backend is unavailable or failed to load its model."""
