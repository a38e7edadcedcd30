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


SYNTHETIC_MSTAR_HEADER_LEN = 1977
"""Phoenix header length of :func:`synthetic_mstar_bytes` (as in the real HB14931.015)."""


def synthetic_mstar_bytes(rows: int = 54, cols: int = 54, seed: int = 0) -> bytes:
    """A magnitude + phase MSTAR file (Phoenix header padded to 1977 bytes), as written by
    :func:`sar_atd.sar.mstar.write_mstar` after reading it back (no real data needed)."""
    import tempfile

    import numpy as np

    from sar_atd.sar.mstar import read_mstar, write_mstar

    rng = np.random.default_rng(seed)
    mag = rng.rayleigh(0.05, (rows, cols)).astype(">f4")
    phase = rng.uniform(0, 2 * np.pi, (rows, cols)).astype(">f4")
    fields = ("\n[PhoenixHeaderVer01.04]\nPhoenixHeaderLength= {hlen:05d}\n"
              "native_header_length= 0\nNumberOfColumns= {cols}\nNumberOfRows= {rows}\n"
              "TargetType= slicey\nTargetAz= 30.5\nDesiredDepression= 17\n"
              "RadarPosition= bottom\n{pad}[EndofPhoenixHeader]\n")
    base = len(fields.format(hlen=0, cols=cols, rows=rows, pad=""))
    pad = f"Comment= {'x' * (SYNTHETIC_MSTAR_HEADER_LEN - base - 10)}\n"
    head = fields.format(hlen=SYNTHETIC_MSTAR_HEADER_LEN, cols=cols, rows=rows, pad=pad)
    assert len(head) == SYNTHETIC_MSTAR_HEADER_LEN
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.015", Path(tmp) / "out.015"
        src.write_bytes(head.encode("latin-1") + mag.tobytes() + phase.tobytes())
        write_mstar(out, read_mstar(src))
        return out.read_bytes()


@pytest.fixture()
def synthetic_mstar_file(tmp_path: Path) -> Path:
    """A synthetic 54 x 54 magnitude + phase MSTAR file in ``tmp_path``."""
    p = tmp_path / "synthetic.015"
    p.write_bytes(synthetic_mstar_bytes())
    return p
