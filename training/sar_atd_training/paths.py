"""Where the real data lives: ``../shared/data`` beside the checkout, or $SAR_ATD_DATA."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path | None:
    """The real-data folder, or None when absent (a user's fresh machine)."""
    env = os.environ.get("SAR_ATD_DATA")
    if env:  # an explicit setting wins; a wrong one means "absent", never a fallback
        candidates = [Path(env)]
    else:
        candidates = [REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if (c / "mstar_soc_17deg").is_dir() or (c / "fixtures").is_dir():
            return c
    return None


def mstar_chips_dir() -> Path | None:
    """Real MSTAR 17-degree chips with SARBake masks, or None."""
    d = shared_data_dir()
    return d / "mstar_soc_17deg" if d and (d / "mstar_soc_17deg").is_dir() else None


MISSING_DATA_MESSAGE = (
    "real MSTAR data not found: expected ../shared/data/mstar_soc_17deg beside the checkout "
    "(or set SAR_ATD_DATA=/path/to/data)"
)
