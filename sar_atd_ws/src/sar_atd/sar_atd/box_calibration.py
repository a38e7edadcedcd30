"""Class-aware box calibration: move each detection box's sides by a vehicle-class bias.

The single-class detector's box errors follow the vehicle class (some classes come out too
long on the far side, others too short), which it cannot see. A small CNN, trained on
synthetic targets only, predicts the vehicle class from a fixed-pixel window around each
detection box; the box sides are then moved by per-class side offsets fitted on matched
detections of a calibration split of real data.

Input contract (the same windows as :func:`sar_atd.verifier.extract_crops`):

* ``image``: uint8 (H, W), the 8-bit rendering the detector saw, at the model's pixel
  spacing (MSTAR ~0.2 m). The window is **not** resampled: the target's size in pixels is
  the strongest class cue;
* ``boxes``: float32 (N, 4) ``[x0, y0, x1, y1]`` pixel edges (radar at the bottom: the far
  side is ``y0``, the near side ``y1``, left/right ``x0``/``x1``);
* window: uint8 (N, S, S) centred on each box, plus a 0/1 box-mask channel.

Offsets are pixels in side order :data:`SIDES` (far, near, left, right), signed outwards:
a positive offset means boxes extend too far on that side and moves it inwards. For class
probabilities ``p`` (N, C) the applied offsets (N, 4) are, by ``mode``:

* ``hard``: ``offsets[argmax p]``;
* ``soft``: ``p @ offsets``;
* ``linear``: ``[p, 1] @ linear`` (``linear`` (C + 1, 4), regressed on the calibration set).

Files (``.pt``): a dict with ``format`` ``"sar-atd-box-calibrator"``, ``version``,
``window`` (S), ``channels``, ``classes`` (C names), ``mode``, ``offsets`` (C, 4),
``linear`` (C + 1, 4), the classifier's ``state_dict`` and a ``record``;
:func:`load_box_calibrator` refuses anything else with one :class:`BoxCalibrationError`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sar_atd.detectors.base import Detections
from sar_atd.errors import SarAtdError

__all__ = ["BoxCalibrationError", "ClassNet", "BoxCalibrator", "CalibratedDetector",
           "SIDES", "MODES", "FORMAT", "VERSION", "DEFAULT_WINDOW", "apply_side_offsets",
           "offsets_for", "save_box_calibrator", "load_box_calibrator"]

FORMAT = "sar-atd-box-calibrator"
VERSION = 1
DEFAULT_WINDOW = 96
"""Window side in pixels: the longest MSTAR vehicle (~51 px at 0.2 m) plus its shadow."""
SIDES = ("far", "near", "left", "right")
"""Side order of every (..., 4) offset array."""
MODES = ("hard", "soft", "linear")
_COORD = (1, 3, 0, 2)  # box coordinate of each side
_OUTWARD = np.array([-1.0, 1.0, -1.0, 1.0])  # sign that makes "beyond" > 0


class BoxCalibrationError(SarAtdError, ValueError):
    """A box-calibrator file is missing, corrupt or inconsistent, or an input is malformed."""


def apply_side_offsets(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Move each box's sides inwards by its own offsets (< 0 moves outwards).

    Args:
        boxes: float (N, 4) xyxy pixel edges.
        offsets: float (N, 4) or (4,) pixels in :data:`SIDES` order.

    Returns:
        float32 (N, 4); a box narrower than its correction keeps 1 px, centred.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    o = np.broadcast_to(np.asarray(offsets, np.float64), b.shape)
    out = b.copy()
    for s, c in enumerate(_COORD):
        out[:, c] = b[:, c] - _OUTWARD[s] * o[:, s]
    for lo, hi in ((0, 2), (1, 3)):
        bad = out[:, hi] - out[:, lo] < 1.0
        mid = (out[bad, lo] + out[bad, hi]) / 2
        out[bad, lo], out[bad, hi] = mid - 0.5, mid + 0.5
    return out.astype(np.float32)


def offsets_for(probs: np.ndarray, mode: str, offsets: np.ndarray, linear: np.ndarray
                ) -> np.ndarray:
    """Per-box side offsets from class probabilities.

    Args:
        probs: float (N, C) class probabilities (rows sum to 1).
        mode: one of :data:`MODES`.
        offsets: float (C, 4) per-class offsets (``hard``/``soft``).
        linear: float (C + 1, 4) regression weights, bias last (``linear``).

    Returns:
        float64 (N, 4) pixels in :data:`SIDES` order.
    """
    p = np.asarray(probs, np.float64)
    if p.ndim != 2:
        raise BoxCalibrationError(f"class probabilities must be (N, C), got {p.shape}")
    if mode == "hard":
        return np.asarray(offsets, np.float64)[np.argmax(p, 1)] if len(p) else np.zeros((0, 4))
    if mode == "soft":
        return p @ np.asarray(offsets, np.float64)
    if mode == "linear":
        return np.concatenate([p, np.ones((len(p), 1))], 1) @ np.asarray(linear, np.float64)
    raise BoxCalibrationError(f"unknown box-calibration mode {mode!r}; choices {MODES}")


class ClassNet(nn.Module):
    """Small CNN: (N, 2, S, S) float32 (window in 8-bit units, box mask 0/1) -> (N, C) logits.

    3x3 conv blocks (BN, ReLU, 2x2 max-pool) of ``channels`` widths, global
    average and max pooling, a linear layer. The window is standardised by its own mean and
    standard deviation (display gain/offset vary between scenes); no resampling happens
    anywhere, so sizes stay in pixels.
    """

    def __init__(self, n_classes: int, channels: Sequence[int] = (16, 32, 48, 64, 96)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 2
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(2 * c_in, int(n_classes)))
        self.channels = tuple(int(c) for c in channels)
        self.n_classes = int(n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        crop, mask = x[:, :1], x[:, 1:2]
        mean = crop.mean(dim=(2, 3), keepdim=True)
        std = crop.std(dim=(2, 3), keepdim=True).clamp_min(1.0)
        f = self.features(torch.cat([(crop - mean) / std, mask], 1))
        return self.head(torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], 1))


class BoxCalibrator:
    """Vehicle-class probabilities of detection boxes and the side correction they select.

    Args:
        net: the classifier (put in eval mode here).
        classes: C class names, the order of the network's outputs and of ``offsets``.
        window: window side S in pixels (a multiple of 16).
        mode: one of :data:`MODES`.
        offsets: float (C, 4) per-class side offsets, pixels (default zeros).
        linear: float (C + 1, 4) regression weights (default zeros).
        record: how it was trained and fitted (reports).
        path: the file it came from (reports).
    """

    def __init__(self, net: nn.Module, classes: Sequence[str], window: int = DEFAULT_WINDOW,
                 mode: str = "soft", offsets: np.ndarray | None = None,
                 linear: np.ndarray | None = None, record: dict[str, Any] | None = None,
                 path: str = "") -> None:
        c = len(classes)
        if window < 16 or window % 16:
            raise BoxCalibrationError(f"box-calibrator window must be a multiple of 16, got "
                                      f"{window}")
        if mode not in MODES:
            raise BoxCalibrationError(f"unknown box-calibration mode {mode!r}; choices {MODES}")
        off = np.zeros((c, 4)) if offsets is None else np.asarray(offsets, np.float64)
        lin = np.zeros((c + 1, 4)) if linear is None else np.asarray(linear, np.float64)
        if off.shape != (c, 4) or lin.shape != (c + 1, 4):
            raise BoxCalibrationError(f"offsets must be ({c}, 4) and linear ({c + 1}, 4) for "
                                      f"{c} classes, got {off.shape} and {lin.shape}")
        if not (np.isfinite(off).all() and np.isfinite(lin).all()):
            raise BoxCalibrationError("box-calibrator offsets must be finite")
        self.net = net.eval()
        self.classes = tuple(str(x) for x in classes)
        self.window = int(window)
        self.mode = mode
        self.offsets = off
        self.linear = lin
        self.record = record or {}
        self.path = path
        self.last_ms_per_box = float("nan")

    def probabilities(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """float32 (N, C) class probabilities of each box of a uint8 (H, W) image."""
        from sar_atd.verifier import VerifierError, crops_to_tensor, extract_crops

        try:
            crops, masks = extract_crops(image, boxes, self.window)
        except VerifierError as err:
            raise BoxCalibrationError(str(err).replace("verifier", "box-calibrator")) from None
        if len(crops) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        t0 = time.perf_counter()
        with torch.inference_mode():
            p = torch.softmax(self.net(crops_to_tensor(crops, masks)), 1).numpy()
        self.last_ms_per_box = (time.perf_counter() - t0) * 1e3 / len(crops)
        return p.astype(np.float32)

    def offsets_of(self, probs: np.ndarray) -> np.ndarray:
        """float64 (N, 4) side offsets for (N, C) probabilities under the stored mode."""
        return offsets_for(probs, self.mode, self.offsets, self.linear)

    def calibrate(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """float32 (N, 4) corrected boxes of a uint8 (H, W) image."""
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        if len(b) == 0:
            return b
        return apply_side_offsets(b, self.offsets_of(self.probabilities(image, b)))

    def apply(self, image: np.ndarray, det: Detections) -> Detections:
        """``det`` with corrected boxes (scores unchanged)."""
        if len(det) == 0:
            return det
        return Detections(self.calibrate(image, det.boxes), det.scores)


class CalibratedDetector:
    """A detector followed by a :class:`BoxCalibrator` on whole images (``detect`` only)."""

    def __init__(self, detector: Any, calibrator: BoxCalibrator) -> None:
        self.detector = detector
        self.calibrator = calibrator
        self.name = f"{detector.name} + box calibration ({calibrator.mode})"
        self.model_info = getattr(detector, "model_info", None)

    def detect(self, image: np.ndarray) -> Detections:
        """Detections of a uint8 (H, W) image with calibrated boxes."""
        return self.calibrator.apply(image, self.detector.detect(image))


def save_box_calibrator(path: str | Path, calibrator: BoxCalibrator) -> None:
    """Write ``calibrator`` atomically (see the module docstring for the content)."""
    from sar_atd.atomic import atomic_path

    net = calibrator.net
    doc = {"format": FORMAT, "version": VERSION, "window": calibrator.window,
           "channels": list(getattr(net, "channels", ())), "classes": list(calibrator.classes),
           "mode": calibrator.mode, "offsets": calibrator.offsets.tolist(),
           "linear": calibrator.linear.tolist(), "state_dict": net.state_dict(),
           "record": dict(calibrator.record)}
    with atomic_path(path) as tmp:
        torch.save(doc, tmp)


def load_box_calibrator(path: str | Path, mode: str | None = None) -> BoxCalibrator:
    """Read a box-calibrator file; ``mode`` overrides the stored one.

    Raises:
        BoxCalibrationError: missing, unreadable, not a box-calibrator file, or
            inconsistent content.
    """
    p = Path(path)
    if not p.is_file():
        raise BoxCalibrationError(f"box-calibrator file not found: {p}")
    try:
        doc = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise BoxCalibrationError(f"box-calibrator file {p} is unreadable (corrupt or not a "
                                  f"torch file): {type(err).__name__}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BoxCalibrationError(f"{p} is not a box-calibrator file (format "
                                  f"{doc.get('format') if isinstance(doc, dict) else None!r})")
    if doc.get("version") != VERSION:
        raise BoxCalibrationError(f"{p}: unsupported box-calibrator version "
                                  f"{doc.get('version')!r}")
    try:
        classes = [str(c) for c in doc["classes"]]
        net = ClassNet(len(classes), tuple(int(c) for c in doc["channels"]))
        net.load_state_dict(doc["state_dict"])
        return BoxCalibrator(net, classes, int(doc["window"]), mode or str(doc["mode"]),
                             np.asarray(doc["offsets"], np.float64),
                             np.asarray(doc["linear"], np.float64),
                             record=dict(doc.get("record") or {}), path=str(p))
    except BoxCalibrationError as err:
        raise BoxCalibrationError(f"{p}: {err}") from None
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise BoxCalibrationError(f"{p}: malformed box-calibrator file "
                                  f"({str(err).splitlines()[0][:200]})") from None
