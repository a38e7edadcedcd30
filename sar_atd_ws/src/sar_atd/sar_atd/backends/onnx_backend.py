"""ONNX Runtime backend: a detector exported by ``sar-atd export`` run by onnxruntime.

Two graph layouts (see ``sar_atd_training.export``), told apart by the file's metadata:

* ``single``: ``image`` float32 (1, H, W) in 8-bit units, any H and W -> ``boxes`` (N, 4),
  ``scores`` (N,), ``labels`` (N,);
* ``batched``: ``tiles`` float32 (B, 1, T, T) -> ``boxes`` (B, D, 4), ``scores`` (B, D),
  ``labels`` (B, D), ``num_detections`` (B,), zero-padded. A short batch is padded with
  blank tiles and a tile smaller than T is padded bottom/right with the grey level the
  model's normalisation maps to 0 (what torch's own padding to a multiple of 32 does), so
  detections match the torch model up to float rounding.

The whole torchvision post-processing is inside the graph (box voting too, when exported
with it: metadata ``box_voting_iou``, :mod:`sar_atd.backends.voting`); the runtime only
applies the score threshold, and refuses a box-voting setting the graph does not hold.
Execution providers: with ``device="cpu"`` the CPU provider only; with
``"cuda[:N]"`` or ``"auto"``, TensorRT and CUDA providers first when this onnxruntime has
them (``onnxruntime-gpu``), CPU otherwise (``"auto"``) or a clear error (``"cuda"``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from sar_atd.backends.base import (
    check_image,
    check_tile_batch,
    filter_scores,
    unpad_detections,
)
from sar_atd.backends.voting import held_box_voting, parse_box_voting_iou, settle_box_voting
from sar_atd.detectors.base import Detections
from sar_atd.errors import BackendError
from sar_atd.models.metadata import METADATA_KEY, ModelInfo, file_sha256

log = logging.getLogger(__name__)

IMAGENET_GREY_PAD = 255.0 * (0.485 + 0.456 + 0.406) / 3.0
"""8-bit grey level whose normalised value is ~0 (mean of the ImageNet channel means)."""


def providers_for(device: str, available: list[str], cache_dir: str | Path | None = None
                  ) -> list[Any]:
    """ONNX Runtime execution providers for ``device`` among ``available`` (see module doc).

    Raises:
        BackendError: ``cuda`` asked for but no GPU provider is installed.
    """
    dev = str(device)
    if dev == "cpu":
        return ["CPUExecutionProvider"]
    dev_id = int(dev.split(":")[1]) if dev.startswith("cuda:") else 0
    out: list[Any] = []
    if "TensorrtExecutionProvider" in available:
        opts: dict[str, Any] = {"device_id": dev_id, "trt_fp16_enable": True}
        if cache_dir:
            opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir))
        out.append(("TensorrtExecutionProvider", opts))
    if "CUDAExecutionProvider" in available:
        out.append(("CUDAExecutionProvider", {"device_id": dev_id}))
    if not out and dev.startswith("cuda"):
        raise BackendError(f"device={dev!r} but this onnxruntime has no CUDA or TensorRT "
                           f"execution provider (install onnxruntime-gpu), available: "
                           f"{available}")
    return [*out, "CPUExecutionProvider"]


class OnnxDetector:
    """ONNX Runtime session behind the Detector interface.

    Args:
        path: ``.onnx`` file written by ``sar-atd export``.
        device: ``"cpu"``, ``"auto"`` or ``"cuda[:N]"`` (providers: module doc).
        score_threshold: minimum score kept.
        threads: intra-op threads of the session (0 = onnxruntime default).
        cache_dir: TensorRT execution provider engine cache.
        box_voting_iou: the box voting the caller expects (None or ``"model"``: whatever
            the graph holds; 0/``"none"``: none; an IoU): it must match the graph's.

    Attributes:
        box_voting_iou: the voting IoU the graph holds (0.0: none).

    Raises:
        BackendError: onnxruntime missing, or the file missing/corrupt (naming the path).
        ConfigError: ``box_voting_iou`` disagrees with the graph (one line, both values).
    """

    def __init__(self, path: str | Path, device: str = "cpu", score_threshold: float = 0.05,
                 threads: int = 0, cache_dir: str | Path | None = None,
                 box_voting_iou: float | str | None = None) -> None:
        requested = parse_box_voting_iou(box_voting_iou)
        path = Path(path)
        if not path.is_file():
            raise BackendError(f"ONNX model not found: {path}")
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise BackendError(f"onnxruntime is not installed ({err}); "
                               f"pip install onnxruntime") from None
        providers = providers_for(device, ort.get_available_providers(), cache_dir)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts,
                                                providers=providers)
        except Exception as err:  # noqa: BLE001 - ORT raises its own exception types
            raise BackendError(f"cannot load ONNX model {path}: "
                               f"{str(err).splitlines()[0]}") from None
        self.path = path
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.box_voting_iou = settle_box_voting(requested, held_box_voting(self.metadata),
                                                path.name)
        names = [i.name for i in self.session.get_inputs()]
        if names not in (["image"], ["tiles"]):
            raise BackendError(f"{path}: expected one input 'image' or 'tiles', got {names} "
                               f"(not exported by sar-atd export?)")
        self.batched = names == ["tiles"]
        if self.batched:
            shape = self.session.get_inputs()[0].shape
            if not all(isinstance(d, int) for d in shape):
                raise BackendError(f"{path}: batched graph needs a static input shape, got "
                                   f"{shape}")
            self.batch, self.tile = int(shape[0]), int(shape[2])
        self.score_threshold = float(score_threshold)
        self.providers = self.session.get_providers()
        self.device = device
        self.name = f"onnx:{self.metadata.get('model_name', path.stem)}"
        self.model_info = ModelInfo.from_json(self.metadata.get(METADATA_KEY),
                                              model_hash=file_sha256(path),
                                              model_name=self.metadata.get("model_name", ""))

    # ---- single-image layout --------------------------------------------------------
    def detect(self, image: np.ndarray) -> Detections:
        """Detect targets in a uint8 (H, W) image; boxes in its native pixel coordinates.

        Raises:
            ValueError: malformed image, or (batched graph) an image larger than its tile.
        """
        x = check_image(image)
        if self.batched:
            h, w = x.shape
            if h > self.tile or w > self.tile:
                raise ValueError(f"{self.path.name} is a batched graph of {self.tile} px "
                                 f"tiles; a {w}x{h} image must go through the scene "
                                 f"detector (e.g. --tile {self.tile})")
            return self._run_tiles(x[None, None])[0]
        boxes, scores, _labels = self.session.run(["boxes", "scores", "labels"],
                                                  {"image": x[None]})
        return filter_scores(boxes, scores, self.score_threshold)

    # ---- batched entry --------------------------------------------------------------
    def detect_batch(self, tiles: Any) -> list[Detections]:
        """Detect in each tile of a float32 (B, 1, H, W) tensor (or array) in 8-bit units.

        A batched graph runs ceil(B / batch) calls; a single-image graph one call per
        tile. Accepts a list of uint8 (H, W) arrays too.
        """
        if isinstance(tiles, list):
            return [self.detect(t) for t in tiles]
        if (self.batched and getattr(tiles, "is_cuda", False)
                and "CUDAExecutionProvider" in self.providers):
            return self._run_tiles_cuda(check_tile_batch(tiles))
        if isinstance(tiles, np.ndarray):
            arr = tiles.astype(np.float32, copy=False)
        else:
            arr = check_tile_batch(tiles).detach().to("cpu", copy=False).float().numpy()
        if arr.ndim != 4 or arr.shape[1] != 1:
            raise ValueError(f"tiles must be (B, 1, H, W), got shape {arr.shape}")
        if not self.batched:
            out = []
            for t in arr:
                boxes, scores = self.session.run(["boxes", "scores"],
                                                 {"image": np.ascontiguousarray(t)})
                out.append(filter_scores(boxes, scores, self.score_threshold))
            return out
        return self._run_tiles(arr)

    def _run_tiles(self, arr: np.ndarray) -> list[Detections]:
        b, _, h, w = arr.shape
        if h > self.tile or w > self.tile:
            raise ValueError(f"tiles of {w}x{h} px exceed the graph's {self.tile} px tile")
        out: list[Detections] = []
        for i0 in range(0, b, self.batch):
            chunk = arr[i0:i0 + self.batch]
            n = len(chunk)
            x = np.full((self.batch, 1, self.tile, self.tile), IMAGENET_GREY_PAD, np.float32)
            x[n:] = 0.0
            x[:n, :, :h, :w] = chunk
            boxes, scores, num = self.session.run(["boxes", "scores", "num_detections"],
                                                  {"tiles": x})
            out += unpad_detections(boxes, scores, num, n, (h, w), self.score_threshold)
        return out

    def _run_tiles_cuda(self, tiles: Any) -> list[Detections]:
        """Batched graph on CUDA tiles: the padded batch is bound by device address
        (I/O binding), so the tiles never visit host memory; outputs come back to host."""
        import torch

        b, _, h, w = tiles.shape
        if h > self.tile or w > self.tile:
            raise ValueError(f"tiles of {w}x{h} px exceed the graph's {self.tile} px tile")
        dev = tiles.device
        out: list[Detections] = []
        for i0 in range(0, b, self.batch):
            chunk = tiles[i0:i0 + self.batch]
            n = int(chunk.shape[0])
            x = torch.full((self.batch, 1, self.tile, self.tile), IMAGENET_GREY_PAD,
                           dtype=torch.float32, device=dev)
            x[n:] = 0.0
            x[:n, :, :h, :w] = chunk.float()
            binding = self.session.io_binding()
            binding.bind_input("tiles", "cuda", dev.index or 0, np.float32, tuple(x.shape),
                               x.data_ptr())
            for name in ("boxes", "scores", "num_detections"):
                binding.bind_output(name, "cpu")
            self.session.run_with_iobinding(binding)
            boxes, scores, num = binding.copy_outputs_to_cpu()
            out += unpad_detections(boxes, scores, num, n, (h, w), self.score_threshold)
        return out

    def describe(self) -> dict[str, Any]:
        """Backend facts for reports."""
        d: dict[str, Any] = {"providers": self.providers, "layout":
                             "batched" if self.batched else "single"}
        if self.batched:
            d.update(batch=self.batch, tile=self.tile)
        d["metadata"] = {k: v for k, v in self.metadata.items() if k != METADATA_KEY}
        return json.loads(json.dumps(d))
