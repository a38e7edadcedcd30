"""Train/test splits per the paper's Table 1: backgrounds and signature pairs.

Signature pairs are split by **azimuth sectors**, per class: the circle is cut into sectors of
``sector_deg``; for every class (including the OOD object classes) a random
``test_fraction`` of its occupied sectors goes to test, with every depression. The targets,
trees and houses draw from one random stream (as before other OOD kinds existed) and every
other OOD kind from its own, so a bank that gains OOD kinds keeps the split of the others.
So an azimuth of a class used in test is never seen in training (at any depression), and
every class is in both sets. With the paper's bank (10 classes x 720 azimuths (0.5 deg) x 3
depressions = 21,600 pairs), ``sector_deg=6`` and ``test_fraction=0.1`` give 6 of 60
sectors per class: 2,160 test and 19,440 training pairs, as in Table 1. Backgrounds are
split at random (default 1/9 test: the paper's 160/20). A JSON manifest
(:meth:`Split.save`) makes the split reproducible.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sar_atd.errors import ConfigError

MANIFEST_VERSION = 1
_SHARED_STREAM_KINDS = ("target", "tree", "house")
"""Record kinds whose sectors are drawn from the split's main random stream."""


@dataclass
class Split:
    """A reproducible train/test split of bank records and backgrounds.

    Attributes:
        train_records, test_records: int64 bank record indices.
        test_sectors: class name -> held-out sector indices (sector k covers azimuths
            [k * sector_deg, (k + 1) * sector_deg)).
        train_backgrounds, test_backgrounds: background names.
        record_keys: (kind, class, azimuth, depression) of every bank record (verification).
    """

    seed: int
    sector_deg: float
    test_fraction: float
    train_records: np.ndarray
    test_records: np.ndarray
    test_sectors: dict[str, list[int]]
    train_backgrounds: list[str] = field(default_factory=list)
    test_backgrounds: list[str] = field(default_factory=list)
    record_keys: list[tuple[str, str, float, float]] = field(default_factory=list)

    def save(self, path: str | Path) -> None:
        """Write the JSON manifest."""
        data = {"version": MANIFEST_VERSION, "seed": self.seed, "sector_deg": self.sector_deg,
                "test_fraction": self.test_fraction,
                "train_records": self.train_records.tolist(),
                "test_records": self.test_records.tolist(), "test_sectors": self.test_sectors,
                "train_backgrounds": self.train_backgrounds,
                "test_backgrounds": self.test_backgrounds,
                "record_keys": [list(k) for k in self.record_keys]}
        Path(path).write_text(json.dumps(data, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Split:
        """Read a manifest written by :meth:`save`.

        Raises:
            ConfigError: missing, unreadable or malformed manifest.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as err:
            raise ConfigError(f"cannot read split manifest {path}: {err.strerror}") from None
        except json.JSONDecodeError as err:
            raise ConfigError(f"split manifest {path} is not valid JSON: {err}") from None
        if data.get("version") != MANIFEST_VERSION:
            raise ConfigError(f"{path}: unsupported split manifest version "
                              f"{data.get('version')!r}")
        try:
            return cls(seed=int(data["seed"]), sector_deg=float(data["sector_deg"]),
                       test_fraction=float(data["test_fraction"]),
                       train_records=np.asarray(data["train_records"], np.int64),
                       test_records=np.asarray(data["test_records"], np.int64),
                       test_sectors={k: list(v) for k, v in data["test_sectors"].items()},
                       train_backgrounds=list(data["train_backgrounds"]),
                       test_backgrounds=list(data["test_backgrounds"]),
                       record_keys=[tuple(k) for k in data["record_keys"]])  # type: ignore
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{path}: malformed split manifest ({err})") from None

    def verify(self, bank: Any) -> None:
        """Check the manifest was made for this bank (same records in the same order).

        Raises:
            ConfigError: on a mismatch.
        """
        keys = _record_keys(bank)
        if keys != [tuple(k) for k in self.record_keys]:
            raise ConfigError(f"split manifest does not match the bank ({len(keys)} records "
                              f"vs {len(self.record_keys)} in the manifest, or different "
                              "records)")


def _record_keys(bank: Any) -> list[tuple[str, str, float, float]]:
    return [(r.kind, r.class_name, float(r.azimuth_deg), float(r.depression_deg))
            for r in bank.records]


def make_split(bank: Any, seed: int = 0, *, backgrounds: Sequence[str] | None = None,
               test_backgrounds: float = 1.0 / 9.0, test_fraction: float = 0.1,
               sector_deg: float = 6.0) -> Split:
    """Split bank records (held-out azimuth sectors per class) and backgrounds.

    Args:
        bank: signature bank (:class:`~sar_atd_training.overlay.pipeline.BankLike`).
        seed: random seed.
        backgrounds: background names to split (e.g. ``BackgroundSet.names``); none if omitted.
        test_backgrounds: share of backgrounds for test (< 1), or a count (>= 1).
        test_fraction: share of each class's occupied azimuth sectors held out for test.
        sector_deg: sector width (degrees).

    Raises:
        ConfigError: bad parameters, an empty bank, or a class whose records all fall in one
            sector (it could not be in both sets).
    """
    if len(bank) == 0:
        raise ConfigError("cannot split an empty signature bank")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if not 0.0 < sector_deg <= 180.0:
        raise ConfigError(f"sector_deg must be in (0, 180], got {sector_deg}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5B1]))
    keys = _record_keys(bank)
    n_sectors = int(math.ceil(360.0 / sector_deg))
    sectors = np.array([int((az % 360.0) // sector_deg) % n_sectors for _, _, az, _ in keys])
    classes = sorted({(k[0], k[1]) for k in keys})
    is_test = np.zeros(len(keys), bool)
    test_sectors: dict[str, list[int]] = {}
    for kind, cls in classes:
        # kinds besides target/tree/house: an own stream, the others' draws stay unchanged
        draw = rng if kind in _SHARED_STREAM_KINDS else np.random.default_rng(
            np.random.SeedSequence([int(seed), 0x5B1, zlib.crc32(kind.encode())]))
        idx = np.array([i for i, k in enumerate(keys) if k[0] == kind and k[1] == cls])
        occupied = np.unique(sectors[idx])
        if occupied.size < 2:
            raise ConfigError(f"class {cls!r} ({kind}) has azimuths in a single "
                              f"{sector_deg} deg sector: it cannot be in both train and test")
        n_test = min(occupied.size - 1, max(1, int(round(test_fraction * occupied.size))))
        chosen = np.sort(draw.choice(occupied, n_test, replace=False))
        test_sectors[cls] = chosen.tolist()
        is_test[idx] = np.isin(sectors[idx], chosen)
    names = list(backgrounds or [])
    train_bg: list[str] = []
    test_bg: list[str] = []
    if names:
        if len(names) < 2:
            raise ConfigError(f"need at least 2 backgrounds to split, got {len(names)}")
        n_test_bg = int(test_backgrounds) if test_backgrounds >= 1 else int(
            round(test_backgrounds * len(names)))
        n_test_bg = min(max(1, n_test_bg), len(names) - 1)
        perm = rng.permutation(len(names))
        test_set = set(perm[:n_test_bg].tolist())
        train_bg = [n for i, n in enumerate(names) if i not in test_set]
        test_bg = [n for i, n in enumerate(names) if i in test_set]
    return Split(seed=int(seed), sector_deg=float(sector_deg), test_fraction=test_fraction,
                 train_records=np.flatnonzero(~is_test).astype(np.int64),
                 test_records=np.flatnonzero(is_test).astype(np.int64),
                 test_sectors=test_sectors, train_backgrounds=train_bg,
                 test_backgrounds=test_bg, record_keys=keys)
