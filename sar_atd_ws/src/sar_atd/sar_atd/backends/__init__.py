"""Runtime backends: one :class:`~sar_atd.detectors.base.Detector` per model file format.

``load_detector(path)`` dispatches on the file suffix (or ``backend=``):

* ``.pt``/``.pth``: trainer checkpoint or exported weights, run by torch
  (:class:`TorchDetector`);
* ``.onnx``: ONNX Runtime (:class:`OnnxDetector`), or TensorRT with ``backend="tensorrt"``;
* ``.engine``/``.plan``: a serialized TensorRT engine (:class:`TensorRTDetector`, imported
  lazily; :class:`~sar_atd.errors.BackendError` where TensorRT is unavailable).

Every backend takes uint8 (H, W) images of any size and returns boxes at the image's native
pixel scale (no resizing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sar_atd.backends.base import check_image
from sar_atd.detectors.base import Detector
from sar_atd.errors import BackendError

BACKENDS = ("torch", "onnxruntime", "tensorrt")


def load_detector(path: str | Path, device: str = "cpu", score_threshold: float = 0.05,
                  backend: str | None = None, **kwargs: Any) -> Detector:
    """Load a detector model file behind the common Detector interface.

    Args:
        path: ``.pt`` (torch), ``.onnx`` (ONNX Runtime, or TensorRT with
            ``backend="tensorrt"``) or ``.engine`` (TensorRT).
        device: ``"cpu"`` or ``"cuda[:N]"``.
        score_threshold: minimum score of returned detections.
        backend: force one of :data:`BACKENDS` instead of choosing by suffix.
        **kwargs: backend options (``threads``/``cache_dir`` for ONNX Runtime,
            ``precision``/``cache_dir``/``calibration`` for TensorRT, builder overrides for
            torch).

    Raises:
        BackendError: unknown suffix/backend, TensorRT unavailable, unloadable ONNX file.
        CheckpointError: missing, corrupt or mismatched torch checkpoint.
    """
    from sar_atd.runtime import MODEL_SUFFIXES

    path = Path(path)
    if backend is None:
        backend = MODEL_SUFFIXES.get(path.suffix.lower())
        if backend is None:
            raise BackendError(f"cannot tell the backend of {path}: suffix must be one of "
                               f"{sorted(MODEL_SUFFIXES)}")
    if backend == "torch":
        from sar_atd.backends.torch_backend import TorchDetector

        return TorchDetector.from_file(path, device=device, score_threshold=score_threshold,
                                       **kwargs)
    if backend == "onnxruntime":
        from sar_atd.backends.onnx_backend import OnnxDetector

        return OnnxDetector(path, device=device, score_threshold=score_threshold, **kwargs)
    if backend == "tensorrt":
        from sar_atd.backends.tensorrt_backend import TensorRTDetector

        trt_device = device if str(device).startswith("cuda") else "cuda"
        return TensorRTDetector(path, device=trt_device, score_threshold=score_threshold,
                                **kwargs)
    raise BackendError(f"unknown backend {backend!r}; choices: {list(BACKENDS)}")


__all__ = ["BACKENDS", "check_image", "load_detector"]
