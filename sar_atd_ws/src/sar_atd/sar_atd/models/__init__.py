"""Detector models: torchvision builders with the SAR input convention, and checkpoint I/O.

``build_detector(name, **kw)`` builds from the registry :data:`MODELS`;
``load_model(path)`` rebuilds a model from a trainer checkpoint or exported weights file.
"""

from sar_atd.models.checkpoint import (
    CHECKPOINT_FORMAT,
    WEIGHTS_FORMAT,
    load_model,
    read_checkpoint,
    save_weights,
)
from sar_atd.models.registry import MODELS, NUM_CLASSES, build_detector, load_backbone_weights
from sar_atd.models.transform import NativeScaleTransform

__all__ = [
    "CHECKPOINT_FORMAT", "MODELS", "NUM_CLASSES", "NativeScaleTransform", "WEIGHTS_FORMAT",
    "build_detector", "load_backbone_weights", "load_model", "read_checkpoint", "save_weights",
]
