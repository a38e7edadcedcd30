"""The detector interface shared by CFAR, torch, ONNX Runtime and TensorRT detectors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class Detections:
    """Detections in one image.

    Attributes:
        boxes: float32 (N, 4) ``[x0, y0, x1, y1]`` in pixel-edge coordinates of the image.
        scores: float32 (N,) confidence, higher is more confident (any real range).
    """

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        if len(self.boxes) != len(self.scores):
            raise ValueError(f"{len(self.boxes)} boxes but {len(self.scores)} scores")

    def __len__(self) -> int:
        return len(self.scores)


@runtime_checkable
class Detector(Protocol):
    """Anything that finds targets in an 8-bit SAR image.

    ``detect`` takes a uint8 (H, W) image (quarter-power LUT or any monotonic rendering)
    and returns :class:`Detections` in that image's pixel coordinates.
    """

    name: str

    def detect(self, image: np.ndarray) -> Detections: ...
