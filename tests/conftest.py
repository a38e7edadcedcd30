"""Shared fixtures: the real-data folder (skips clearly where absent) and small synthetic
clutter configurations used by several test files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="session")
def plain_grass_config() -> Callable[[int, int], Any]:
    """Factory ``(height, width) -> ClutterConfig`` of a plain grass field: one untextured
    field with no edges, and no trees, buildings, roads, fences, poles or discretes (pure
    Rayleigh speckle at the MSTAR grass level)."""
    from sar_atd_training.clutter import (
        BuildingsConfig,
        ClutterConfig,
        FieldsConfig,
        PointsConfig,
        RoadsConfig,
        TreesConfig,
    )

    def make(height: int, width: int) -> ClutterConfig:
        return ClutterConfig(
            height=height, width=width,
            fields=FieldsConfig(count=1, edge_prob=0, texture_shape=(0.0, 0.0)),
            trees=TreesConfig(treelines=0, forests=0), buildings=BuildingsConfig(count=0),
            roads=RoadsConfig(roads=0, tracks=0),
            points=PointsConfig(fences=0, poles=0, discretes=0))

    return make
