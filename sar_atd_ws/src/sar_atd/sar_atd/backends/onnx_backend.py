"""ONNX Runtime backend: a detector exported by ``sar-atd export`` run by onnxruntime.

The ONNX graph holds the whole torchvision detector, post-processing (decoding, NMS, top-k)
included (see ``sar_atd_training.export``): ``image`` float32 (1, H, W) in 8-bit units, any
H and W -> ``boxes`` (N, 4), ``scores`` (N,), ``labels`` (N,). The runtime only applies the
score threshold, so torch and ONNX Runtime give the same boxes up to float rounding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sar_atd.backends.base import check_image, filter_scores
from sar_atd.detectors.base import Detections
from sar_atd.errors import BackendError


class OnnxDetector:
    """ONNX Runtime session behind the Detector interface.

    Args:
        path: ``.onnx`` file written by ``sar-atd export``.
        device: ``"cpu"`` or ``"cuda"``/``"cuda:N"`` (CUDAExecutionProvider when available).
        score_threshold: minimum score kept.
        threads: intra-op threads of the session (0 = onnxruntime default).

    Raises:
        BackendError: onnxruntime missing, or the file missing/corrupt (naming the path).
    """

    def __init__(self, path: str | Path, device: str = "cpu", score_threshold: float = 0.05,
                 threads: int = 0) -> None:
        path = Path(path)
        if not path.is_file():
            raise BackendError(f"ONNX model not found: {path}")
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise BackendError(f"onnxruntime is not installed ({err}); "
                               f"pip install onnxruntime") from None
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendError("device='cuda' but this onnxruntime has no "
                                   "CUDAExecutionProvider (install onnxruntime-gpu)")
            dev_id = int(str(device).split(":")[1]) if ":" in str(device) else 0
            providers = [("CUDAExecutionProvider", {"device_id": dev_id}), *providers]
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts,
                                                providers=providers)
        except Exception as err:  # noqa: BLE001 - ORT raises its own exception types
            raise BackendError(f"cannot load ONNX model {path}: "
                               f"{(str(err).splitlines() or [type(err).__name__])[0]}") from None
        self.path = path
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        names = [i.name for i in self.session.get_inputs()]
        if names != ["image"]:
            raise BackendError(f"{path}: expected one input 'image', got {names} "
                               f"(not exported by sar-atd export?)")
        self.score_threshold = float(score_threshold)
        self.name = f"onnx:{self.metadata.get('model_name', path.stem)}"

    def detect(self, image: np.ndarray) -> Detections:
        """Detect targets in a uint8 (H, W) image; boxes in its native pixel coordinates."""
        x = check_image(image)[None]
        boxes, scores, _labels = self.session.run(["boxes", "scores", "labels"], {"image": x})
        return filter_scores(boxes, scores, self.score_threshold)

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        """Detect in several images (one session run each: the graph takes one image)."""
        return [self.detect(im) for im in images]
