"""The detector interface shared by CFAR, torch, ONNX Runtime and TensorRT detectors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch


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
    and returns :class:`Detections` in that image's pixel coordinates. Detectors may also
    offer ``detect_batch(tiles)``: float32 (B, 1, H, W) tensor in 8-bit units on their
    device -> one :class:`Detections` per tile (see :func:`detect_tiles`).
    """

    name: str

    def detect(self, image: np.ndarray) -> Detections: ...


def tiles_to_uint8(tiles: torch.Tensor) -> list[np.ndarray]:
    """(B, 1, H, W) tensor in 8-bit units -> B uint8 (H, W) host arrays (rounded, clipped)."""
    import torch

    if not isinstance(tiles, torch.Tensor) or tiles.dim() != 4 or tiles.shape[1] != 1:
        raise ValueError(f"tiles must be a (B, 1, H, W) tensor, got "
                         f"{tuple(getattr(tiles, 'shape', ())) or type(tiles).__name__}")
    u8 = tiles.detach().round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    return [np.ascontiguousarray(t[0]) for t in u8]


def detect_tiles(detector: Detector, tiles: torch.Tensor) -> list[Detections]:
    """Run ``detector`` on a (B, 1, H, W) tile tensor: its batched ``detect_batch`` entry
    when it has one, else ``detect`` on each tile as uint8 (host)."""
    batched = getattr(detector, "detect_batch", None)
    if batched is not None:
        return list(batched(tiles))
    return [detector.detect(t) for t in tiles_to_uint8(tiles)]
