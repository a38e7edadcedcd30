"""TensorRT backend (TensorRT 10.x Python API): engines built from the exported ONNX file.

* **Build.** :func:`build_engine` parses the ONNX file (the batched tile graph of
  ``sar-atd export --batch B --tile T``, static shapes, or the single-image graph with one
  optimisation profile) and builds an FP32, FP16 or INT8 engine. INT8 uses the 10.x
  implicit-quantization calibrator (``IInt8EntropyCalibrator2``) fed with tiles from the
  overlay pipeline (:class:`TileCalibrator`); FP16 is enabled alongside as a fallback for
  layers without INT8 kernels. TensorRT 11 removed these builder flags and calibrators:
  pin ``tensorrt>=10,<11``.
* **Cache.** Engines are cached in a folder (``$SAR_ATD_ENGINE_CACHE`` or
  ``~/.cache/sar_atd/engines``; never beside the model), under a key made of the ONNX
  file's SHA-256, the GPU name and compute capability, the TensorRT version and the
  precision (:func:`engine_cache_key`): a changed model, GPU or TensorRT gives a new engine.
  A ``KEY.json`` sidecar holds the model's metadata.
* **Run.** With a CUDA build of torch, inputs and outputs are torch CUDA tensors: a tile
  batch from the GPU tiler is bound by address (zero copy). Without torch CUDA (a torch-free
  deployment image), buffers are pycuda device allocations on a pycuda stream in the
  primary CUDA context (``pycuda.autoprimaryctx``), shared with any other CUDA user of the
  process.

``tensorrt`` and ``pycuda`` are imported lazily, only when this backend is used; a missing
package is a :class:`~sar_atd.errors.BackendError` naming it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sar_atd.backends.base import unpad_detections
from sar_atd.detectors.base import Detections
from sar_atd.errors import BackendError
from sar_atd.models.metadata import METADATA_KEY, ModelInfo, file_sha256

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
OUTPUTS = ("boxes", "scores", "labels", "num_detections")


def import_tensorrt() -> Any:
    """``import tensorrt`` (10.x), or BackendError naming the package."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise BackendError(f"TensorRT backend unavailable: cannot import the 'tensorrt' "
                           f"package ({err}); install TensorRT 10.x (pip install "
                           f"'tensorrt>=10,<11' on x86 with CUDA, JetPack 6 on Jetson) or use "
                           f"the .onnx/.pt backends") from None
    major = int(str(getattr(trt, "__version__", "0")).split(".")[0] or 0)
    if major != 10:
        raise BackendError(f"TensorRT {trt.__version__} found; this backend is written for "
                           f"the 10.x API (11.x removed the FP16/INT8 builder flags and "
                           f"calibrators): install 'tensorrt>=10,<11'")
    return trt


def import_pycuda() -> tuple[Any, Any]:
    """``pycuda.driver`` in the primary context, or BackendError naming the package."""
    try:
        import pycuda.autoprimaryctx  # noqa: F401 - retains the primary context
        import pycuda.driver as cuda
    except ImportError as err:
        raise BackendError(f"TensorRT backend without torch CUDA needs the 'pycuda' package "
                           f"({err}); pip install pycuda, or install a CUDA build of "
                           f"torch") from None
    return cuda, pycuda.autoprimaryctx


def default_cache_dir() -> Path:
    """``$SAR_ATD_ENGINE_CACHE`` or ``~/.cache/sar_atd/engines``."""
    env = os.environ.get("SAR_ATD_ENGINE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "sar_atd" / "engines"


def engine_cache_key(model_hash: str, gpu_name: str, compute_capability: tuple[int, int],
                     trt_version: str, precision: str) -> str:
    """Cache key of an engine: changes with the model bytes, GPU, TensorRT and precision.

    Returns:
        ``"<precision>-<sm>-<24 hex>"``, e.g. ``"fp16-sm87-3f1c..."``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    text = json.dumps([model_hash, gpu_name, list(compute_capability), trt_version,
                       precision])
    digest = hashlib.sha256(text.encode()).hexdigest()[:24]
    return f"{precision}-sm{compute_capability[0]}{compute_capability[1]}-{digest}"


def gpu_identity(device_index: int = 0) -> tuple[str, tuple[int, int]]:
    """(GPU name, compute capability) from torch CUDA, else pycuda."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(device_index)
            return torch.cuda.get_device_name(device_index), (major, minor)
    except ImportError:
        pass
    cuda, _ = import_pycuda()
    dev = cuda.Device(device_index)
    major, minor = dev.compute_capability()
    return dev.name(), (int(major), int(minor))


class TileCalibrator:
    """Factory of a 10.x ``IInt8EntropyCalibrator2`` fed with (B, 1, T, T) float32 tile
    batches in 8-bit units (e.g. overlay-pipeline images), its cache in ``cache_file``."""

    @staticmethod
    def build(trt: Any, batches: Iterable[np.ndarray], cache_file: Path) -> Any:
        cuda, _ = _device_buffers()

        class _Calibrator(trt.IInt8EntropyCalibrator2):
            def __init__(self) -> None:
                super().__init__()
                self.it: Iterator[np.ndarray] = iter(batches)
                self.buf: Any = None
                self.batch = 0

            def get_batch_size(self) -> int:
                return self.batch or 1

            def get_batch(self, names: list[str]) -> list[int] | None:
                try:
                    x = np.ascontiguousarray(next(self.it), np.float32)
                except StopIteration:
                    return None
                self.batch = int(x.shape[0])
                self.buf = cuda.to_device(x)
                return [int(cuda.pointer(self.buf))]

            def read_calibration_cache(self) -> bytes | None:
                return cache_file.read_bytes() if cache_file.is_file() else None

            def write_calibration_cache(self, cache: Any) -> None:
                cache_file.parent.mkdir(parents=True, exist_ok=True)
                cache_file.write_bytes(bytes(cache))

        return _Calibrator()


def _device_buffers() -> tuple[Any, str]:
    """A minimal device-buffer API (``to_device``, ``empty``, ``pointer``, ``to_host``) on
    torch CUDA when available, else on pycuda; and which one was picked."""
    try:
        import torch

        if torch.cuda.is_available():
            class _Torch:
                @staticmethod
                def to_device(x: np.ndarray) -> Any:
                    return torch.from_numpy(x).cuda()

                @staticmethod
                def pointer(buf: Any) -> int:
                    return int(buf.data_ptr())

            return _Torch, "torch"
    except ImportError:
        pass
    cuda, _ = import_pycuda()

    class _PyCuda:
        @staticmethod
        def to_device(x: np.ndarray) -> Any:
            return cuda.to_device(x)

        @staticmethod
        def pointer(buf: Any) -> int:
            return int(buf)

    return _PyCuda, "pycuda"


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, precision: str = "fp16",
                 calibration: Iterable[np.ndarray] | None = None,
                 workspace_gib: float = 2.0,
                 min_hw: tuple[int, int] = (32, 32), opt_hw: tuple[int, int] = (640, 640),
                 max_hw: tuple[int, int] = (2048, 2048)) -> Path:
    """Parse ``onnx_path`` and write a serialized TensorRT engine to ``engine_path``.

    Args:
        onnx_path: model exported by ``sar-atd export``.
        engine_path: output (written to a hidden temporary sibling, then renamed).
        precision: ``fp32``, ``fp16`` or ``int8`` (INT8 needs ``calibration``).
        calibration: (B, 1, T, T) float32 tile batches for the INT8 calibrator.
        workspace_gib: builder workspace limit.
        min_hw, opt_hw, max_hw: image sizes of the optimisation profile (single-image
            graphs only; batched graphs have static shapes).

    Raises:
        BackendError: TensorRT missing, ONNX unparsable, INT8 without calibration data,
            or the build failing (naming the file).
    """
    from sar_atd.atomic import atomic_write_bytes

    trt = import_tensorrt()
    if precision not in PRECISIONS:
        raise BackendError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise BackendError(f"ONNX model not found: {onnx_path}")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch: the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse {onnx_path}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if calibration is None:
            raise BackendError("an INT8 engine needs calibration tiles (overlay-pipeline "
                               "images); give calibration=... or build fp16")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = TileCalibrator.build(
            trt, calibration, engine_path.with_suffix(".calib"))
    inp = network.get_input(0)
    if any(d < 0 for d in inp.shape):  # single-image graph: (1, H, W) dynamic
        profile = builder.create_optimization_profile()
        profile.set_shape(inp.name, (1, *min_hw), (1, *opt_hw), (1, *max_hw))
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build a {precision} engine from {onnx_path}")
    atomic_write_bytes(engine_path, bytes(serialized))
    log.info("built TensorRT %s engine %s", precision, engine_path)
    return engine_path


def cached_engine(onnx_path: str | Path, *, precision: str = "fp16",
                  cache_dir: str | Path | None = None, device_index: int = 0,
                  calibration: Iterable[np.ndarray] | None = None) -> tuple[Path, ModelInfo]:
    """The cached engine of ``onnx_path`` for this GPU/TensorRT/precision, built if absent.

    Returns:
        (engine path, model metadata from the ONNX file).
    """
    import onnx

    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    model_hash = file_sha256(onnx_path)
    name, cc = gpu_identity(device_index)
    key = engine_cache_key(model_hash, name, cc, trt.__version__, precision)
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    engine = folder / f"{onnx_path.stem}-{key}.engine"
    meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False)
            .metadata_props}
    info = ModelInfo.from_json(meta.get(METADATA_KEY), model_hash=model_hash,
                               model_name=meta.get("model_name", onnx_path.stem))
    if not engine.is_file():
        build_engine(onnx_path, engine, precision=precision, calibration=calibration)
        from sar_atd.atomic import atomic_write_json

        atomic_write_json(engine.with_suffix(".json"), {
            "onnx": str(onnx_path), "model_hash": model_hash, "gpu": name,
            "compute_capability": list(cc), "tensorrt": trt.__version__,
            "precision": precision, METADATA_KEY: info.to_dict(), "metadata": meta})
    return engine, info


class TensorRTDetector:
    """TensorRT engine behind the Detector interface (batched tile graph).

    Args:
        path: ``.onnx`` (engine built into the cache, see module doc) or ``.engine``.
        device: CUDA device (``"cuda"`` or ``"cuda:N"``).
        score_threshold: minimum score kept.
        precision: ``fp32`` | ``fp16`` | ``int8`` when building from ONNX.
        cache_dir: engine cache folder.
        calibration: INT8 calibration tile batches.
        box_voting_iou: the box voting the caller expects (None or ``"model"``: whatever
            the graph holds); checked against the ONNX metadata (``.onnx``) or the engine's
            ``.json`` sidecar (``.engine``; none recorded = no voting) before any build.

    Raises:
        BackendError: TensorRT, CUDA or pycuda unavailable, or the model missing/corrupt.
        ConfigError: ``box_voting_iou`` disagrees with the graph (one line, both values).
    """

    def __init__(self, path: str | Path, device: str = "cuda", score_threshold: float = 0.05,
                 precision: str = "fp16", cache_dir: str | Path | None = None,
                 calibration: Iterable[np.ndarray] | None = None,
                 box_voting_iou: float | str | None = None, **_: Any) -> None:
        from sar_atd.backends.voting import (
            held_box_voting,
            parse_box_voting_iou,
            settle_box_voting,
        )

        requested = parse_box_voting_iou(box_voting_iou)
        trt = import_tensorrt()
        path = Path(path)
        if not path.is_file():
            raise BackendError(f"model not found: {path}")
        dev_index = int(str(device).split(":")[1]) if ":" in str(device) else 0
        if path.suffix == ".onnx":
            import onnx

            graph_meta = {p.key: p.value for p in onnx.load(
                str(path), load_external_data=False).metadata_props}
            self.box_voting_iou = settle_box_voting(requested, held_box_voting(graph_meta),
                                                    path.name)
            engine_path, self.model_info = cached_engine(
                path, precision=precision, cache_dir=cache_dir, device_index=dev_index,
                calibration=calibration)
        else:
            engine_path = path
            side = path.with_suffix(".json")
            meta = json.loads(side.read_text()) if side.is_file() else {}
            self.box_voting_iou = settle_box_voting(
                requested, held_box_voting(meta.get("metadata") or meta), path.name)
            self.model_info = ModelInfo.from_dict(meta.get(METADATA_KEY),
                                                  model_hash=file_sha256(path))
        self.buffers, self.kind = _device_buffers()
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise BackendError(f"cannot deserialize TensorRT engine {engine_path} (built by "
                               f"another TensorRT version or GPU?)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        if "tiles" not in names or not set(OUTPUTS) <= set(names):
            raise BackendError(f"{engine_path}: expected input 'tiles' and outputs {OUTPUTS} "
                               f"(export with sar-atd export --batch B --tile T), got {names}")
        shape = tuple(self.engine.get_tensor_shape("tiles"))
        self.batch, self.tile = int(shape[0]), int(shape[2])
        self.context = self.engine.create_execution_context()
        self.score_threshold = float(score_threshold)
        self.device_index = dev_index
        self.name = f"tensorrt:{path.stem}"
        self._setup_io()

    def _setup_io(self) -> None:
        """Static input/output buffers bound once (torch CUDA tensors or pycuda memory)."""
        shapes = {n: tuple(self.engine.get_tensor_shape(n)) for n in ("tiles", *OUTPUTS)}
        if any(d < 0 for s in shapes.values() for d in s):
            raise BackendError(f"{self.name}: engine has dynamic output shapes {shapes}; "
                               f"export the padded batched graph (--batch/--tile)")
        dtypes = {"tiles": np.float32, "boxes": np.float32, "scores": np.float32,
                  "labels": np.int64, "num_detections": np.int64}
        if self.kind == "torch":
            import torch

            dev = torch.device("cuda", self.device_index)
            tdt = {np.float32: torch.float32, np.int64: torch.int64}
            self.io = {n: torch.empty(shapes[n], dtype=tdt[dtypes[n]], device=dev)
                       for n in shapes}
            self.stream: Any = torch.cuda.Stream(device=dev)
            self.stream_handle = self.stream.cuda_stream
            for n, t in self.io.items():
                self.context.set_tensor_address(n, t.data_ptr())
        else:
            cuda, _ = import_pycuda()
            self.host = {n: cuda.pagelocked_empty(shapes[n], dtypes[n]) for n in shapes}
            self.io = {n: cuda.mem_alloc(self.host[n].nbytes) for n in shapes}
            self.stream = cuda.Stream()
            self.stream_handle = self.stream.handle
            for n, buf in self.io.items():
                self.context.set_tensor_address(n, int(buf))

    def detect(self, image: np.ndarray) -> Detections:
        """Detect targets in a uint8 (H, W) image no larger than the engine's tile."""
        from sar_atd.backends.base import check_image

        x = check_image(image)
        return self.detect_batch(x[None, None])[0]

    def detect_batch(self, tiles: Any) -> list[Detections]:
        """Detect in each tile of a float32 (B, 1, H, W) batch (torch CUDA tensor: bound
        without a host copy; numpy: uploaded), H, W <= the engine's tile."""
        b, _, h, w = tuple(tiles.shape)
        if h > self.tile or w > self.tile:
            raise ValueError(f"tiles of {w}x{h} px exceed the engine's {self.tile} px tile")
        out: list[Detections] = []
        for i0 in range(0, b, self.batch):
            chunk = tiles[i0:i0 + self.batch]
            n = int(chunk.shape[0])
            res = self._run(chunk, n, h, w)
            out += unpad_detections(res["boxes"], res["scores"], res["num_detections"], n,
                                    (h, w), self.score_threshold)
        return out

    def _run(self, chunk: Any, n: int, h: int, w: int) -> dict[str, np.ndarray]:
        from sar_atd.backends.onnx_backend import IMAGENET_GREY_PAD

        if self.kind == "torch":
            import torch

            x = self.io["tiles"]
            with torch.cuda.stream(self.stream):
                x.fill_(IMAGENET_GREY_PAD)
                x[n:].zero_()
                x[:n, :, :h, :w].copy_(torch.as_tensor(chunk).to(x.device, torch.float32),
                                       non_blocking=True)
                if not self.context.execute_async_v3(self.stream_handle):
                    raise BackendError(f"{self.name}: TensorRT execution failed")
            self.stream.synchronize()
            return {k: self.io[k].cpu().numpy() for k in ("boxes", "scores", "num_detections")}
        cuda, _ = import_pycuda()
        host = self.host["tiles"]
        host.fill(IMAGENET_GREY_PAD)
        host[n:] = 0.0
        host[:n, :, :h, :w] = np.asarray(chunk, np.float32)
        cuda.memcpy_htod_async(self.io["tiles"], host, self.stream)
        if not self.context.execute_async_v3(self.stream_handle):
            raise BackendError(f"{self.name}: TensorRT execution failed")
        for k in ("boxes", "scores", "num_detections"):
            cuda.memcpy_dtoh_async(self.host[k], self.io[k], self.stream)
        self.stream.synchronize()
        return {k: self.host[k].copy() for k in ("boxes", "scores", "num_detections")}
