"""Shared fixtures: the real-data folder (skips clearly where absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sar_atd_training.paths import MISSING_DATA_MESSAGE, mstar_chips_dir, shared_data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip(MISSING_DATA_MESSAGE)
    return d


@pytest.fixture(scope="session")
def mstar_chips() -> Path:
    d = mstar_chips_dir()
    if d is None:
        pytest.skip(MISSING_DATA_MESSAGE)
    return d


@pytest.fixture(scope="session")
def mstar_raw_file(shared_data: Path) -> Path:
    p = shared_data / "fixtures" / "HB14931.015"
    if not p.is_file():
        pytest.skip(f"real MSTAR file not found: {p}")
    return p
