"""Shared pieces of the runtime backends: input checks and score filtering."""

from __future__ import annotations

from typing import Any

import numpy as np

from sar_atd.detectors.base import Detections


def check_image(image: object) -> np.ndarray:
    """Validate one SAR image and return it as float32 (H, W) in 8-bit units.

    Args:
        image: uint8 (H, W) (quarter-power LUT image) or float (H, W) already in 8-bit
            units (finite, in [0, 255]).

    Raises:
        ValueError: not a numpy array, not 2-D, empty, another dtype, or a float image with
            NaN/inf or values outside [0, 255].
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array (H, W), got {type(image).__name__}")
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W) single-channel, got shape {image.shape}")
    if image.size == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32)
    if np.issubdtype(image.dtype, np.floating):
        if not np.all(np.isfinite(image)):
            raise ValueError("float image contains NaN or infinite values")
        lo, hi = float(image.min()), float(image.max())
        if lo < 0.0 or hi > 255.0:
            raise ValueError(f"float image must be in 8-bit units [0, 255], got [{lo}, {hi}]")
        return image.astype(np.float32)
    raise ValueError(f"image dtype must be uint8 (or float in [0, 255]), got {image.dtype}")


def check_tile_batch(tiles: object) -> Any:
    """Validate a batch of tiles: float (B, 1, H, W) torch tensor in 8-bit units.

    Raises:
        ValueError: not a tensor, wrong rank/channels, empty, or not floating point.
    """
    import torch

    if not isinstance(tiles, torch.Tensor):
        raise ValueError(f"tiles must be a torch tensor (B, 1, H, W), got "
                         f"{type(tiles).__name__}")
    if tiles.dim() != 4 or tiles.shape[1] != 1:
        raise ValueError(f"tiles must be (B, 1, H, W), got shape {tuple(tiles.shape)}")
    if tiles.numel() == 0:
        raise ValueError(f"tile batch is empty: shape {tuple(tiles.shape)}")
    if not tiles.is_floating_point():
        raise ValueError(f"tiles must be float in 8-bit units, got {tiles.dtype}")
    return tiles


def filter_scores(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> Detections:
    """Detections with ``scores >= threshold``, sorted by decreasing score."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    keep = scores >= threshold
    boxes, scores = boxes[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    return Detections(boxes[order], scores[order])


def unpad_detections(boxes: np.ndarray, scores: np.ndarray, num: np.ndarray, n: int,
                     hw: tuple[int, int], threshold: float) -> list[Detections]:
    """Detections of the first ``n`` tiles of a padded batched-graph output.

    Args:
        boxes: (B, D, 4), scores: (B, D), num: (B,) valid detections per tile.
        n: real tiles in the batch (the rest are padding).
        hw: (H, W) of the real tiles; boxes are clipped to it.
        threshold: minimum score kept.
    """
    h, w = hw
    out = []
    for k in range(n):
        m = int(num[k])
        bk = np.asarray(boxes[k, :m], np.float32).copy()
        bk[:, 0::2] = np.clip(bk[:, 0::2], 0, w)
        bk[:, 1::2] = np.clip(bk[:, 1::2], 0, h)
        out.append(filter_scores(bk, scores[k, :m], threshold))
    return out
