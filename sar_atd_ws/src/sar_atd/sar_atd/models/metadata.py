"""What a model file records about the data it was trained on, and its identity.

Every model file (``.pt`` weights, ``.onnx``, TensorRT engine cache entries) carries a
:class:`ModelInfo`: the pixel spacing and radar side of its training images (the scene
detector resamples and rotates scenes to them), the rendering it expects for non-8-bit
scenes, its operating score threshold (best F1 at IoU 0.5 on its synthetic validation set)
and a hash of the file's bytes (engine cache key, reports). Files written before these
fields existed get the MSTAR defaults below and no operating threshold.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ModelInfo", "MSTAR_PIXEL_SPACING_M", "file_sha256", "model_info_of",
           "METADATA_KEY"]

MSTAR_PIXEL_SPACING_M = (0.2021, 0.2031)
"""MSTAR ground-plane pixel spacing (row = range, column = cross-range), metres."""

METADATA_KEY = "sar_atd.model_info"
"""Key of the JSON-encoded :class:`ModelInfo` in ONNX metadata and ``.pt`` files."""


@dataclass
class ModelInfo:
    """Training geometry, rendering and operating point of a detector.

    Attributes:
        pixel_spacing_m: (row, column) spacing of the training images, metres.
        orientation: side of the training images the radar is on (``"bottom"``: MSTAR).
        render: rendering of amplitude scenes into the model's 8-bit input, as
            :class:`~sar_atd.config.TilerConfig` fields (``gamma``, ``amplitude_ref`` with
            0 = content anchor, ``ref_quantile``, ``ref_level``).
        operating_threshold: score threshold of best F1 at IoU 0.5 on the validation set
            (None: unknown).
        operating_point: how it was measured (set, images, precision, recall, F1).
        model_hash: SHA-256 of the model file's bytes ("" when not from a file).
        model_name: builder name (e.g. ``retinanet_r18_fpn``) or ``cfar``.
    """

    pixel_spacing_m: tuple[float, float] = MSTAR_PIXEL_SPACING_M
    orientation: str = "bottom"
    render: dict[str, float] = field(default_factory=lambda: {"gamma": 0.5,
                                                              "amplitude_ref": 1.0})
    operating_threshold: float | None = None
    operating_point: dict[str, Any] = field(default_factory=dict)
    model_hash: str = ""
    model_name: str = ""

    @property
    def amplitude_ref(self) -> float:
        """Rendered-domain white point (0 = content-anchored, see ``render``)."""
        return float(self.render.get("amplitude_ref", 1.0))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["pixel_spacing_m"] = list(self.pixel_spacing_m)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, **override: Any) -> ModelInfo:
        """From a stored mapping; unknown keys are ignored (newer files), missing ones take
        the defaults."""
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        if "pixel_spacing_m" in kw:
            kw["pixel_spacing_m"] = tuple(float(v) for v in kw["pixel_spacing_m"])
        op = kw.get("operating_threshold")
        if op is not None and not (isinstance(op, (int, float)) and math.isfinite(op)):
            kw["operating_threshold"] = None
        kw.update(override)
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str | None, **override: Any) -> ModelInfo:
        try:
            d = json.loads(text) if text else {}
        except json.JSONDecodeError:
            d = {}
        return cls.from_dict(d if isinstance(d, dict) else {}, **override)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def model_info_of(detector: object) -> ModelInfo:
    """``detector.model_info`` when it has one, else the MSTAR defaults."""
    info = getattr(detector, "model_info", None)
    return info if isinstance(info, ModelInfo) else ModelInfo(
        model_name=str(getattr(detector, "name", "")))
