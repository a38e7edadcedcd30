"""``sar-atd export``: a trained checkpoint to ONNX (and weights-only ``.pt``) for the runtime.

    sar-atd export --checkpoint runs/NAME/checkpoint.pt --out model.onnx [--fp16]
    sar-atd export --checkpoint runs/NAME/checkpoint.pt --out model.pt [--fp16]

ONNX graph (decision, documented here and in :mod:`sar_atd.backends.onnx_backend`): the
WHOLE torchvision detector is exported with the TorchScript-tracing exporter
(``dynamo=False``), post-processing included (box decoding, score threshold, per-class NMS,
top-k), exactly as torchvision supports for its detection models. One implementation of the
post-processing therefore serves torch, ONNX Runtime and TensorRT (which maps
``NonMaxSuppression`` to its INMSLayer), and the runtime only filters by score.

* input ``image``: float32 (1, H, W) in 8-bit units (uint8 image cast to float), H and W
  dynamic (native pixel scale, no resize; padding to a multiple of 32 happens in the graph);
* outputs ``boxes`` float32 (N, 4) xyxy pixel-edge coordinates, ``scores`` float32 (N,),
  ``labels`` int64 (N,);
* metadata: ``sar_atd.format``, ``model_name``, ``model_kwargs`` (JSON), ``score_thresh``.

``--fp16`` stores the weights as float16 (half the file) with a Cast to float32 in front of
each, so ONNX Runtime computes in float32 on any machine; the TensorRT backend builds an FP16
engine on its own (``fp16=True``). The export uses the lowest score threshold the runtime may
ask for (``--score-threshold``, default 0.01).
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ONNX_FORMAT = "sar_atd.onnx/1"


def export_onnx(model: Any, out: str | Path, *, model_name: str,
                model_kwargs: dict[str, Any], fp16: bool = False, opset: int = 17,
                example_size: tuple[int, int] = (640, 640)) -> Path:
    """Export a detector (eval mode, CPU) to an ONNX file with dynamic image size.

    Args:
        model: torchvision detector from :func:`sar_atd.models.build_detector`.
        out: ``.onnx`` path (written atomically: temp file then rename).
        model_name, model_kwargs: recorded in the file's metadata.
        fp16: store weights as float16 (computation stays float32).
        opset: ONNX opset.
        example_size: (H, W) of the tracing example.
    """
    import os
    import tempfile

    import onnx
    import torch

    out = Path(out)
    model = model.cpu().eval()
    example = torch.rand(1, *example_size, generator=torch.Generator().manual_seed(0)) * 255
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=out.parent if out.parent.exists() else None)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings of torchvision's own code
            torch.onnx.export(model, ([example],), tmp, opset_version=opset, dynamo=False,
                              input_names=["image"], output_names=["boxes", "scores", "labels"],
                              dynamic_axes={"image": {1: "height", 2: "width"},
                                            "boxes": {0: "n"}, "scores": {0: "n"},
                                            "labels": {0: "n"}})
        proto = onnx.load(tmp)
        if fp16:
            _weights_to_fp16(proto)
        score = getattr(model, "score_thresh", None)
        if score is None and hasattr(model, "roi_heads"):
            score = model.roi_heads.score_thresh
        meta = {"sar_atd.format": ONNX_FORMAT, "model_name": model_name,
                "model_kwargs": json.dumps(model_kwargs, default=str),
                "score_thresh": str(score), "weights_dtype": "float16" if fp16 else "float32",
                "input": "image float32 (1, H, W) 8-bit units, native scale"}
        del proto.metadata_props[:]
        for k, v in meta.items():
            proto.metadata_props.add(key=k, value=v)
        onnx.checker.check_model(proto)
        out.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(proto, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("exported %s to %s (%.1f MB)", model_name, out, out.stat().st_size / 1e6)
    return out


def _weights_to_fp16(proto: Any) -> None:
    """Float32 initializers (> 16 values) -> float16 + Cast back to float32 (in place)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    casts = []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        arr = numpy_helper.to_array(init)
        if arr.size <= 16:
            continue
        name = init.name
        half = numpy_helper.from_array(arr.astype(np.float16), name=f"{name}__fp16")
        graph.initializer.remove(init)
        graph.initializer.append(half)
        casts.append(helper.make_node("Cast", [f"{name}__fp16"], [name], to=TensorProto.FLOAT,
                                      name=f"{name}__cast"))
    for i, node in enumerate(casts):
        graph.node.insert(i, node)


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, fp16: bool = False,
                      opset: int = 17, score_threshold: float = 0.01) -> Path:
    """Export a trainer checkpoint or weights file to ``.onnx`` or weights-only ``.pt``.

    Raises:
        CheckpointError: unreadable/mismatched checkpoint (names the path).
        ValueError: ``out`` suffix not ``.onnx`` or ``.pt``.
    """
    from sar_atd.models.checkpoint import load_model, save_weights

    out = Path(out)
    if out.suffix not in (".onnx", ".pt"):
        raise ValueError(f"--out must end in .onnx or .pt, got {out}")
    overrides: dict[str, Any] = {"score_thresh": score_threshold}
    model, ckpt = load_model(checkpoint, device="cpu", **overrides)
    kwargs = dict(ckpt["model_kwargs"])
    if out.suffix == ".pt":
        extra = {k: ckpt[k] for k in ("config", "record", "step") if k in ckpt}
        return save_weights(out, model, ckpt["model_name"], kwargs, fp16=fp16, extra=extra)
    return export_onnx(model, out, model_name=ckpt["model_name"], model_kwargs=kwargs,
                       fp16=fp16, opset=opset)


def _run(args: argparse.Namespace) -> int:
    path = export_checkpoint(args.checkpoint, args.out, fp16=args.fp16, opset=args.opset,
                             score_threshold=args.score_threshold)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def register(subparsers: Any) -> None:
    """Add ``sar-atd export``."""
    p = subparsers.add_parser("export", help="export a checkpoint to ONNX or weights-only .pt",
                              description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, type=Path, help="trainer checkpoint (.pt)")
    p.add_argument("--out", required=True, type=Path, help="model.onnx or model.pt")
    p.add_argument("--fp16", action="store_true", help="store weights as float16")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--score-threshold", type=float, default=0.01,
                   help="lowest score kept by the exported model")
    p.set_defaults(func=_run)
