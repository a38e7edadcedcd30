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
* metadata: ``sar_atd.format``, ``model_name``, ``model_kwargs`` (JSON), ``score_thresh``,
  ``box_voting_iou``.

``--batch B --tile T`` exports the batched tile graph the scene detector runs instead:

* input ``tiles``: float32 (B, 1, T, T) in 8-bit units (B and T fixed; the runtime pads a
  short last batch with blank tiles and a tile smaller than T bottom/right);
* outputs ``boxes`` float32 (B, D, 4), ``scores`` float32 (B, D), ``labels`` int64 (B, D)
  and ``num_detections`` int64 (B,), D = the model's ``detections_per_img``: each tile's
  detections (torchvision's post-processing per tile, unchanged) padded with zeros, so
  every output has a fixed size (TensorRT engines with static shapes);
* metadata ``layout: batched``, ``batch``, ``tile``.

Both layouts carry ``sar_atd.model_info`` (JSON of :class:`sar_atd.models.metadata.ModelInfo`:
training spacing, orientation, rendering, operating threshold) copied from the checkpoint.
The file is written to a hidden temporary sibling and renamed into place, so an
interrupted export never leaves a partial ``.onnx`` (nor a visible temporary file).

**Box voting** (``--box-voting-iou T``, default 0.5; ``0``/``none``: off): the graph's NMS
is followed by box voting as plain tensor operations (:mod:`sar_atd.backends.voting`, the
same function the torch backend runs): the model's NMS is taken over so that its candidates
come out, the same per-class NMS keeps the same boxes and scores, and each kept box takes
the score-weighted mean of the candidates of its class with IoU >= T (scores >= 0.01). The
metadata key ``box_voting_iou`` records T or ``none``; the runtime refuses a setting that
disagrees with it. A weights-only ``.pt`` records it under the same key.

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

import numpy as np

from sar_atd.backends.voting import DEFAULT_BOX_VOTING_IOU, parse_box_voting_iou

log = logging.getLogger(__name__)

ONNX_FORMAT = "sar_atd.onnx/1"


def _voting_iou(text: str) -> float:
    """``--box-voting-iou``: an IoU in [0, 1] or ``none``/``off`` (0)."""
    try:
        iou = parse_box_voting_iou(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if iou is None:
        raise argparse.ArgumentTypeError("--box-voting-iou of an export is an IoU or none "
                                         "('model' is a runtime setting)")
    return iou


class BatchedTileGraph:
    """Factory of the batched export wrapper (torch is imported lazily)."""

    @staticmethod
    def build(model: Any, batch: int, detections: int) -> Any:
        """``nn.Module``: tiles (B, 1, T, T) -> padded per-tile detections (module doc)."""
        import torch
        from torch import nn

        class _Batched(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, tiles: torch.Tensor) -> tuple[torch.Tensor, ...]:
                outs = self.model([tiles[i] for i in range(batch)])
                boxes, scores, labels, valid = [], [], [], []
                for o in outs:
                    z = torch.zeros(detections, dtype=o["scores"].dtype)
                    boxes.append(torch.cat([o["boxes"], z[:, None].expand(-1, 4)])[:detections])
                    scores.append(torch.cat([o["scores"], z])[:detections])
                    labels.append(torch.cat([o["labels"], z.long()])[:detections])
                    valid.append(torch.cat([torch.ones_like(o["scores"]), z])[:detections])
                num = torch.stack(valid).sum(1).round().long()
                return torch.stack(boxes), torch.stack(scores), torch.stack(labels), num

        return _Batched().eval()


def _detections_per_img(model: Any) -> int:
    n = getattr(model, "detections_per_img", None)
    if n is None and hasattr(model, "roi_heads"):
        n = model.roi_heads.detections_per_img
    return int(n or 100)


def export_onnx(model: Any, out: str | Path, *, model_name: str,
                model_kwargs: dict[str, Any], fp16: bool = False, opset: int = 17,
                example_size: tuple[int, int] = (640, 640), batch: int | None = None,
                tile: int | None = None, model_info: dict[str, Any] | None = None,
                box_voting_iou: float = DEFAULT_BOX_VOTING_IOU) -> Path:
    """Export a detector (eval mode, CPU) to an ONNX file (layouts in the module doc).

    Args:
        model: torchvision detector from :func:`sar_atd.models.build_detector`.
        out: ``.onnx`` path (written atomically).
        model_name, model_kwargs: recorded in the file's metadata.
        fp16: store weights as float16 (computation stays float32).
        opset: ONNX opset.
        example_size: (H, W) of the tracing example (single-image layout).
        batch, tile: export the batched tile graph with B = ``batch`` tiles of
            ``tile`` x ``tile`` pixels (both or neither).
        model_info: :class:`~sar_atd.models.metadata.ModelInfo` fields to record.
        box_voting_iou: box voting after the graph's NMS at this IoU (module doc); 0: none.
    """
    import onnx
    import torch

    from sar_atd.atomic import atomic_path, clean_stale_temporaries
    from sar_atd.backends.voting import (
        VOTING_METADATA_KEY,
        voting_graph,
        voting_metadata_value,
    )
    from sar_atd.models.metadata import METADATA_KEY, ModelInfo

    if (batch is None) != (tile is None):
        raise ValueError("give both --batch and --tile (batched tile graph) or neither")
    if batch is not None and (batch < 1 or tile is None or tile < 32):
        raise ValueError(f"--batch must be >= 1 and --tile >= 32, got {batch}, {tile}")
    out = Path(out)
    clean_stale_temporaries(out)
    if not 0.0 <= box_voting_iou <= 1.0:
        raise ValueError(f"--box-voting-iou must be in [0, 1] (0 = none), got "
                         f"{box_voting_iou}")
    model = model.cpu().eval()
    gen = torch.Generator().manual_seed(0)
    names = ["boxes", "scores", "labels"]
    detections = _detections_per_img(model)
    core: Any = voting_graph(model, box_voting_iou) if box_voting_iou > 0 else model
    if batch is not None:
        assert tile is not None
        graph: Any = BatchedTileGraph.build(core, batch, detections)
        args: tuple[Any, ...] = (torch.rand(batch, 1, tile, tile, generator=gen) * 255,)
        inputs, names, dyn = ["tiles"], [*names, "num_detections"], None
    else:
        graph = core
        args = ([torch.rand(1, *example_size, generator=gen) * 255],)
        inputs = ["image"]
        dyn = {"image": {1: "height", 2: "width"}, "boxes": {0: "n"}, "scores": {0: "n"},
               "labels": {0: "n"}}
    info = ModelInfo.from_dict(model_info)
    with atomic_path(out) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings of torchvision's own code
            torch.onnx.export(graph, args, str(tmp), opset_version=opset, dynamo=False,
                              input_names=inputs, output_names=names, dynamic_axes=dyn)
        proto = onnx.load(str(tmp))
        if fp16:
            _weights_to_fp16(proto)
        score = getattr(model, "score_thresh", None)
        if score is None and hasattr(model, "roi_heads"):
            score = model.roi_heads.score_thresh
        meta = {"sar_atd.format": ONNX_FORMAT, "model_name": model_name,
                "model_kwargs": json.dumps(model_kwargs, default=str),
                "score_thresh": str(score), "weights_dtype": "float16" if fp16 else "float32",
                VOTING_METADATA_KEY: voting_metadata_value(box_voting_iou),
                METADATA_KEY: info.to_json()}
        if batch is not None:
            meta.update({"layout": "batched", "batch": str(batch), "tile": str(tile),
                         "detections_per_tile": str(detections),
                         "input": f"tiles float32 ({batch}, 1, {tile}, {tile}) 8-bit units"})
        else:
            meta.update({"layout": "single",
                         "input": "image float32 (1, H, W) 8-bit units, native scale"})
        del proto.metadata_props[:]
        for k, v in meta.items():
            proto.metadata_props.add(key=k, value=v)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
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


def calibration_batches(train_config: dict[str, Any], bank: str | Path, n_batches: int,
                        batch: int, tile: int, seed: int = 2_000_003) -> Any:
    """INT8 calibration data: ``n_batches`` float32 (batch, 1, tile, tile) arrays in 8-bit
    units, overlay-pipeline images of the model's own recipe (a seed disjoint from the
    training and validation streams), generated lazily."""
    from sar_atd_training.evaluation.operating_point import recipe_factory

    factory, _ = recipe_factory(train_config, bank, tile)
    stream = iter(factory(seed))
    for _ in range(n_batches):
        imgs = [next(stream)[0].numpy().reshape(tile, tile) for _ in range(batch)]
        yield np.stack(imgs)[:, None].astype(np.float32)


def build_engine_file(checkpoint: str | Path, out: str | Path, *, batch: int, tile: int,
                      precision: str = "fp16", bank: str | Path | None = None,
                      calibration_batches_n: int = 16, score_threshold: float = 0.01,
                      box_voting_iou: float = DEFAULT_BOX_VOTING_IOU) -> Path:
    """Checkpoint -> batched ONNX (``out`` with suffix ``.onnx``) -> TensorRT engine ``out``.

    Raises:
        BackendError: TensorRT missing (naming the package) or the build failing.
        ValueError: INT8 without a bank for calibration tiles.
    """
    from sar_atd.atomic import atomic_write_json
    from sar_atd.backends.tensorrt_backend import build_engine, import_tensorrt
    from sar_atd.backends.voting import VOTING_METADATA_KEY, voting_metadata_value
    from sar_atd.models.checkpoint import read_checkpoint
    from sar_atd.models.metadata import METADATA_KEY, ModelInfo, file_sha256

    trt = import_tensorrt()  # fail before the export when TensorRT is missing
    out = Path(out)
    ckpt = read_checkpoint(checkpoint)
    calib = None
    if precision == "int8":
        if bank is None or not isinstance(ckpt.get("config"), dict):
            raise ValueError("an INT8 engine needs --bank and a model file that stores its "
                             "training recipe (calibration tiles come from its overlay "
                             "pipeline)")
        calib = calibration_batches(ckpt["config"], bank, calibration_batches_n, batch, tile)
    onnx_path = export_checkpoint(checkpoint, out.with_suffix(".onnx"),
                                  score_threshold=score_threshold, batch=batch, tile=tile,
                                  box_voting_iou=box_voting_iou)
    build_engine(onnx_path, out, precision=precision, calibration=calib)
    info = ModelInfo.from_dict(ckpt.get(METADATA_KEY))
    atomic_write_json(out.with_suffix(".json"), {
        "onnx": str(onnx_path), "model_hash": file_sha256(onnx_path),
        "tensorrt": trt.__version__, "precision": precision,
        VOTING_METADATA_KEY: voting_metadata_value(box_voting_iou), METADATA_KEY: info.to_dict()})
    return out


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, fp16: bool = False,
                      opset: int = 17, score_threshold: float = 0.01,
                      batch: int | None = None, tile: int | None = None,
                      box_voting_iou: float = DEFAULT_BOX_VOTING_IOU) -> Path:
    """Export a trainer checkpoint or weights file to ``.onnx`` or weights-only ``.pt``.

    ``box_voting_iou``: the graph's box voting (0: none); a ``.pt`` records it.

    Raises:
        CheckpointError: unreadable/mismatched checkpoint (names the path).
        ValueError: ``out`` suffix not ``.onnx`` or ``.pt``.
    """
    from sar_atd.backends.voting import VOTING_METADATA_KEY, voting_metadata_value
    from sar_atd.models.checkpoint import load_model, save_weights
    from sar_atd.models.metadata import METADATA_KEY as MODEL_INFO_KEY

    out = Path(out)
    if out.suffix not in (".onnx", ".pt"):
        raise ValueError(f"--out must end in .onnx, .pt or .engine, got {out}")
    overrides: dict[str, Any] = {"score_thresh": score_threshold}
    model, ckpt = load_model(checkpoint, device="cpu", **overrides)
    kwargs = dict(ckpt["model_kwargs"])
    if out.suffix == ".pt":
        extra = {k: ckpt[k] for k in ("config", "record", "step", MODEL_INFO_KEY)
                 if k in ckpt}
        extra[VOTING_METADATA_KEY] = voting_metadata_value(box_voting_iou)
        return save_weights(out, model, ckpt["model_name"], kwargs, fp16=fp16, extra=extra)
    return export_onnx(model, out, model_name=ckpt["model_name"], model_kwargs=kwargs,
                       fp16=fp16, opset=opset, batch=batch, tile=tile,
                       model_info=ckpt.get(MODEL_INFO_KEY), box_voting_iou=box_voting_iou)


def _run(args: argparse.Namespace) -> int:
    if not 0.0 <= args.score_threshold <= 1.0:
        raise SystemExit(f"sar-atd export: error: --score-threshold must be in [0, 1], got "
                         f"{args.score_threshold}")
    if args.out.suffix == ".engine":
        if args.batch is None or args.tile is None:
            raise SystemExit("sar-atd export: error: a TensorRT engine needs --batch and "
                             "--tile (static tile graph)")
        path = build_engine_file(args.checkpoint, args.out, batch=args.batch, tile=args.tile,
                                 precision=args.precision, bank=args.bank,
                                 score_threshold=args.score_threshold,
                                 box_voting_iou=args.box_voting_iou)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
        return 0
    path = export_checkpoint(args.checkpoint, args.out, fp16=args.fp16, opset=args.opset,
                             score_threshold=args.score_threshold, batch=args.batch,
                             tile=args.tile, box_voting_iou=args.box_voting_iou)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def register(subparsers: Any) -> None:
    """Add ``sar-atd export``."""
    p = subparsers.add_parser("export", help="export a checkpoint to ONNX or weights-only .pt",
                              description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, type=Path, help="trainer checkpoint (.pt)")
    p.add_argument("--out", required=True, type=Path,
                   help="model.onnx, model.pt or model.engine (TensorRT 10.x; needs "
                        "--batch/--tile)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16",
                   help="TensorRT engine precision (.engine only)")
    p.add_argument("--bank", type=Path, default=None,
                   help="signature bank for INT8 calibration tiles (overlay pipeline)")
    p.add_argument("--fp16", action="store_true", help="store weights as float16")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--score-threshold", type=float, default=0.01,
                   help="lowest score kept by the exported model")
    p.add_argument("--batch", type=int, default=None, metavar="B",
                   help="export the batched tile graph: B tiles per call (with --tile)")
    p.add_argument("--tile", type=int, default=None, metavar="T",
                   help="tile side of the batched graph (with --batch), e.g. 640")
    p.add_argument("--box-voting-iou", type=_voting_iou, default=DEFAULT_BOX_VOTING_IOU,
                   metavar="T", help=f"box voting after the graph's NMS at IoU T (default "
                   f"{DEFAULT_BOX_VOTING_IOU}; 0 or none: off); recorded in the file")
    p.set_defaults(func=_run)
