"""Hybrid training data: synthetic signatures overlaid on backgrounds, on the fly, in torch."""

from sar_atd_training.overlay.dataset import OverlayDataset, collate_detection
from sar_atd_training.overlay.pipeline import (
    OverlayConfig,
    OverlayDataError,
    OverlayPipeline,
    OverlayStatisticsError,
    PlacementError,
    Sample,
    dropout_brightest,
)
from sar_atd_training.overlay.splits import Split, make_split

__all__ = [
    "OverlayConfig", "OverlayDataError", "OverlayDataset", "OverlayPipeline",
    "OverlayStatisticsError", "PlacementError", "Sample", "Split", "collate_detection",
    "dropout_brightest", "make_split",
]
