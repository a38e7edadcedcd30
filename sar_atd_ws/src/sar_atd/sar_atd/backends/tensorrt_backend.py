"""TensorRT backend: an engine built from the exported ONNX file, run on a CUDA device.

``tensorrt`` (10.x API) and a CUDA build of torch are imported lazily, only when this backend
is used; where they are missing, :class:`TensorRTDetector` raises :class:`BackendError` with
the reason. CUDA buffers are torch tensors (no pycuda needed). The ONNX graph carries the
post-processing (NMS -> TensorRT INMSLayer), so its outputs have a data-dependent length,
served by an ``IOutputAllocator``.

The serialized engine is cached beside the ONNX file (``model.fp16.engine`` /
``model.fp32.engine``) and rebuilt when the ONNX file is newer. One optimisation profile
covers images from ``min_hw`` to ``max_hw`` pixels, tuned for ``opt_hw`` (the 640x640 tile).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from sar_atd.backends.base import check_image, filter_scores
from sar_atd.detectors.base import Detections
from sar_atd.errors import BackendError

log = logging.getLogger(__name__)


def _import_tensorrt() -> tuple[Any, Any]:
    try:
        import tensorrt as trt
    except ImportError as err:
        raise BackendError(f"TensorRT backend unavailable: cannot import tensorrt ({err}); "
                           f"install NVIDIA TensorRT (e.g. pip install tensorrt on x86 with "
                           f"CUDA, JetPack on Jetson) or use the .onnx/.pt backends") from None
    import torch

    if not torch.cuda.is_available():
        raise BackendError("TensorRT backend needs a CUDA device; torch sees none")
    return trt, torch


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, fp16: bool = True,
                 min_hw: tuple[int, int] = (32, 32), opt_hw: tuple[int, int] = (640, 640),
                 max_hw: tuple[int, int] = (2048, 2048), workspace_gib: float = 2.0) -> Path:
    """Parse ``onnx_path`` and write a serialized TensorRT engine to ``engine_path``.

    Raises:
        BackendError: TensorRT missing, or the ONNX file missing/unparsable (naming it).
    """
    trt, _ = _import_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise BackendError(f"ONNX model not found: {onnx_path}")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx_path}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    if fp16 and builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape("image", (1, *min_hw), (1, *opt_hw), (1, *max_hw))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_path}")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    log.info("built TensorRT engine %s (fp16=%s)", engine_path, fp16)
    return engine_path


class TensorRTDetector:
    """TensorRT engine behind the Detector interface.

    Args:
        path: ``.onnx`` (engine built and cached beside it) or a serialized ``.engine``.
        device: CUDA device (``"cuda"`` or ``"cuda:N"``).
        score_threshold: minimum score kept.
        fp16: build an FP16 engine (when building from ONNX).

    Raises:
        BackendError: TensorRT/CUDA unavailable, or the model missing/corrupt.
    """

    def __init__(self, path: str | Path, device: str = "cuda", score_threshold: float = 0.05,
                 fp16: bool = True, **build_kw: Any) -> None:
        trt, torch = _import_tensorrt()
        path = Path(path)
        if not path.is_file():
            raise BackendError(f"model not found: {path}")
        if path.suffix == ".onnx":
            engine_path = path.with_suffix(".fp16.engine" if fp16 else ".fp32.engine")
            if not engine_path.is_file() or engine_path.stat().st_mtime < path.stat().st_mtime:
                build_engine(path, engine_path, fp16=fp16, **build_kw)
        else:
            engine_path = path
        self.torch = torch
        self.device = torch.device(device if str(device).startswith("cuda") else "cuda")
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise BackendError(f"cannot deserialize TensorRT engine {engine_path}")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(device=self.device)
        self.allocator = _make_allocator(trt, torch, self.device)
        self.outputs = ["boxes", "scores", "labels"]
        for name in self.outputs:
            self.context.set_output_allocator(name, self.allocator)
        self.score_threshold = float(score_threshold)
        self.name = f"tensorrt:{path.stem}"

    def detect(self, image: np.ndarray) -> Detections:
        """Detect targets in a uint8 (H, W) image; boxes in its native pixel coordinates."""
        torch = self.torch
        x = torch.from_numpy(check_image(image))[None].to(self.device).contiguous()
        self.context.set_input_shape("image", tuple(x.shape))
        self.context.set_tensor_address("image", x.data_ptr())
        with torch.cuda.stream(self.stream):
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise BackendError(f"{self.name}: TensorRT execution failed")
        self.stream.synchronize()
        boxes = self.allocator.result("boxes", (-1, 4), torch.float32)
        scores = self.allocator.result("scores", (-1,), torch.float32)
        return filter_scores(boxes.cpu().numpy(), scores.cpu().numpy(), self.score_threshold)

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        return [self.detect(im) for im in images]


def _make_allocator(trt: Any, torch: Any, device: Any) -> Any:
    """An IOutputAllocator backed by torch CUDA byte buffers (grown on demand)."""

    class _Allocator(trt.IOutputAllocator):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.buffers: dict[str, Any] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}

        def reallocate_output(self, name: str, memory: int, size: int, alignment: int) -> int:
            buf = self.buffers.get(name)
            if buf is None or buf.numel() < size:
                buf = torch.empty(max(size, 1), dtype=torch.uint8, device=device)
                self.buffers[name] = buf
            return buf.data_ptr()

        def notify_shape(self, name: str, shape: Any) -> None:
            self.shapes[name] = tuple(shape)

        def result(self, name: str, shape: tuple[int, ...], dtype: Any) -> Any:
            n = int(np.prod(self.shapes[name])) if self.shapes.get(name) else 0
            if n == 0:
                return torch.zeros((0, *shape[1:]), dtype=dtype)
            return self.buffers[name].view(dtype)[:n].reshape(shape)

    return _Allocator()
