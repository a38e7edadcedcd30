"""Small in-memory signature banks for tests, demos and runs without a simulated bank.

:class:`ArrayBank` is a ``sar_atd_training.simulator.bank.SignatureBank``
(``records``, ``signature(i)``, ``shadow(i)``, ``support(i)``, ``select(...)``, ``__len__``) for
arrays held in memory, so the overlay pipeline, its tests and demos work without the simulator.
:func:`make_toy_bank` builds a tiny bank of point-scatterer "vehicles" (a few bright scatterers
formed with :func:`sar_atd.sar.sensor.form_image` ``ideal=True``, a box support and a box
shadow behind them, away from the sensor), and :func:`simulated_bank` uses the real simulator
(``simulate_signature``) when it is installed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sar_atd.sar.sensor import SensorConfig, form_image, shadow_length_m
from sar_atd_training.simulator.bank import SignatureBank, SignatureRecord

__all__ = ["ArrayBank", "SignatureRecord", "make_toy_bank", "simulated_bank", "toy_signature"]


class ArrayBank(SignatureBank):
    """In-memory signature bank over stacked arrays (a :class:`SignatureBank` built by
    :meth:`SignatureBank.from_arrays`: same records, selection and accessors).

    Args:
        signatures: complex64 (N, S, S) ideal target-only signatures.
        shadows: bool (N, S, S) shadow masks.
        supports: bool (N, S, S) support masks.
        records: N :class:`SignatureRecord`.
    """

    def __init__(self, signatures: np.ndarray, shadows: np.ndarray, supports: np.ndarray,
                 records: Sequence[SignatureRecord]) -> None:
        bank = SignatureBank.from_arrays(signatures, shadows, supports, records)
        super().__init__(bank.records, bank._chunks, bank.shape)

    @classmethod
    def from_arrays(cls, signatures: np.ndarray, shadows: np.ndarray, supports: np.ndarray,
                    records: Sequence[SignatureRecord]) -> ArrayBank:
        return cls(signatures, shadows, supports, records)


def toy_signature(length_m: float, width_m: float, height_m: float, azimuth_deg: float,
                  depression_deg: float, seed: int, size: int = 128, n_scatterers: int = 24,
                  amplitude: tuple[float, float] = (0.3, 2.0),
                  sensor: SensorConfig | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A box-shaped toy vehicle: point scatterers on a rotated box, its support and shadow.

    Returns:
        ``(signature complex64 (size, size), shadow bool, support bool)``; the signature is
        ideal (full band), the support is the laid-over footprint, the shadow is the footprint
        swept away from the sensor (up) by ``height / tan(depression)``, minus the support.
    """
    sensor = sensor or SensorConfig()
    rng = np.random.default_rng(seed)
    az = math.radians(azimuth_deg)
    u = rng.uniform(-0.5, 0.5, n_scatterers) * length_m
    v = rng.uniform(-0.5, 0.5, n_scatterers) * width_m
    z = rng.uniform(0.2, 1.0, n_scatterers) * height_m
    x = u * math.cos(az) - v * math.sin(az)
    y = u * math.sin(az) + v * math.cos(az)
    xyz = np.stack([x, y, z], 1)
    amps = rng.uniform(*amplitude, n_scatterers) * np.exp(1j * rng.uniform(0, 2 * np.pi,
                                                                            n_scatterers))
    sig = form_image(xyz, amps, (size, size), depression_deg, sensor, ideal=True)
    # footprint corners -> pixel polygon
    import cv2

    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) * 0.5 * np.array(
        [length_m, width_m])
    cx = corners[:, 0] * math.cos(az) - corners[:, 1] * math.sin(az)
    cy = corners[:, 0] * math.sin(az) + corners[:, 1] * math.cos(az)
    rows = size // 2 - cy / sensor.range_spacing_m
    cols = size // 2 + cx / sensor.xrange_spacing_m
    foot = np.zeros((size, size), np.uint8)
    cv2.fillPoly(foot, [np.round(np.stack([cols, rows], 1)).astype(np.int32)], 1)
    foot_b = foot.astype(bool)
    lay_px = int(round(height_m * math.tan(math.radians(depression_deg))
                       / sensor.range_spacing_m))
    support = foot_b.copy()
    for k in range(1, lay_px + 1):  # laid-over body toward the sensor (down)
        support[k:] |= foot_b[:-k]
    shadow = foot_b.copy()
    sh_px = int(round(shadow_length_m(height_m, depression_deg) / sensor.range_spacing_m))
    for k in range(1, sh_px + 1):
        shadow[:-k] |= foot_b[k:]
    shadow &= ~support
    return sig.astype(np.complex64), shadow, support


def make_toy_bank(classes: Sequence[str] = ("T72", "BMP2", "ZIL131"),
                  azimuths_deg: Sequence[float] = (0.0, 45.0, 90.0, 135.0),
                  depression_deg: float = 17.0, ood: bool = False, seed: int = 0,
                  size: int = 128) -> ArrayBank:
    """A tiny :class:`ArrayBank` of toy vehicles (and a toy 'tree'/'house' when ``ood``)."""
    sigs, shadows, supports, records = [], [], [], []
    for ci, cls in enumerate(classes):
        for ai, az in enumerate(azimuths_deg):
            s, sh, sp = toy_signature(6.0 + ci, 3.0, 2.3, az, depression_deg,
                                      seed * 1000 + ci * 100 + ai, size)
            sigs.append(s)
            shadows.append(sh)
            supports.append(sp)
            records.append(SignatureRecord("target", cls, float(az), float(depression_deg)))
    if ood:
        for kind, dims, amp in (("tree", (5.0, 5.0, 9.0), (0.05, 0.4)),
                                ("house", (10.0, 7.0, 5.0), (0.3, 3.0))):
            for ai, az in enumerate(azimuths_deg):
                s, sh, sp = toy_signature(*dims, az, depression_deg, seed + 77 + ai, size,
                                          n_scatterers=60, amplitude=amp)
                sigs.append(s)
                shadows.append(sh)
                supports.append(sp)
                records.append(SignatureRecord(kind, kind, float(az), float(depression_deg)))
    return ArrayBank(np.stack(sigs), np.stack(shadows), np.stack(supports), records)


def simulated_bank(classes: Sequence[str] = ("T72", "BMP2", "ZIL131", "2S1"),
                   azimuths_deg: Sequence[float] = (0.0, 60.0, 120.0), depression_deg: float
                   = 17.0, seed: int = 0) -> ArrayBank:
    """A small bank made on the fly with the physics simulator (``simulate_signature``).

    Raises:
        ImportError: when the simulator is not installed.
    """
    from sar_atd_training.simulator import simulate_signature

    sigs, shadows, supports, records = [], [], [], []
    for ci, cls in enumerate(classes):
        for ai, az in enumerate(azimuths_deg):
            s, sh, sp = simulate_signature(cls, float(az), float(depression_deg),
                                           seed=seed * 1000 + ci * 100 + ai)
            sigs.append(np.asarray(s, np.complex64))
            shadows.append(np.asarray(sh, bool))
            supports.append(np.asarray(sp, bool))
            records.append(SignatureRecord("target", cls, float(az), float(depression_deg)))
    return ArrayBank(np.stack(sigs), np.stack(shadows), np.stack(supports), records)
