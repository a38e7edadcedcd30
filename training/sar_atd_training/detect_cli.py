"""``sar-atd detect``: find vehicles in SAR scenes of any size through the scene detector.

Examples::

    sar-atd detect scene.npy --detector models/default.pt --out detections/
    sar-atd detect HB06158.016 big.png --detector cfar --out det/ --tile 640 --overlap 128
    sar-atd detect scene.npy --detector model_b8_t640.onnx --backend onnxruntime \\
        --pixel-spacing 0.3 0.3 --orientation left --out det/

Scenes: ``.npy`` (2-D complex, float amplitude, uint16 or uint8), PNG/JPEG/TIFF (8- or
16-bit grey) or original MSTAR files (anything else; complex image, pixel spacing and radar
side from the header). Non-8-bit scenes are rendered by the tiler's rule
(:class:`sar_atd.config.TilerConfig`), by default the one recorded in the model file.

Output folder (written atomically; an existing non-empty folder needs ``--overwrite``):

* ``<scene>.json``: scene, size, dtype, NaN/inf pixels, tiles, detector, threshold, time,
  detections (``box`` xyxy pixel-edge scene coordinates, ``score``, ``tile``);
* ``coco_results.json``: COCO results list (``image_id``, ``category_id`` 1, ``bbox``
  [x, y, w, h], ``score``); ``index.json`` maps image ids to scene files;
* ``<scene>.png``: the 8-bit scene with the detections drawn.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from sar_atd_training.cliutil import add_box_options

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "detect", help="detect vehicles in SAR scenes of any size (tiled, batched)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenes", nargs="+", type=Path, metavar="SCENE",
                   help=".npy, PNG/JPEG/TIFF or MSTAR scene files")
    p.add_argument("--detector", required=True, metavar="DET",
                   help="'cfar', 'cfar-os', or a model file (.pt, .onnx, .engine)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument("--tile", type=int, default=640, help="tile side in pixels (default 640)")
    p.add_argument("--overlap", type=int, default=128,
                   help="overlap of neighbouring tiles in pixels (default 128)")
    p.add_argument("--batch", type=int, default=8, help="tiles per inference call")
    p.add_argument("--backend", choices=("auto", "torch", "onnxruntime", "tensorrt"), default=None,
                   help="force a backend (default: from the model file suffix)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--score-threshold", type=float, default=None,
                   help="report detections scored at least this (default: the model's "
                        "operating threshold, 0.5 without one; CFAR: all)")
    p.add_argument("--pixel-spacing", type=float, nargs=2, default=None,
                   metavar=("ROW_M", "COL_M"),
                   help="scene pixel spacing in metres (default: from an MSTAR header, "
                        "else the model's)")
    p.add_argument("--orientation", choices=("bottom", "left", "top", "right"), default=None,
                   help="side of the scene the radar is on (default: from an MSTAR header, "
                        "else the model's: bottom)")
    p.add_argument("--amplitude-ref", type=float, default=None,
                   help="render non-8-bit scenes with the quarter-power LUT and this white "
                        "point (0 = content anchor) instead of the model's recorded rendering")
    add_box_options(p)
    p.add_argument("--no-png", action="store_true", help="skip the annotated PNGs")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=run_detect)


def read_scene(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read one scene file; returns (array, geometry hints ``pixel_spacing_m``,
    ``orientation`` when the file records them).

    Raises:
        ChipReadError / MstarFormatError / SceneInputError: naming the file.
    """
    from sar_atd.errors import ChipReadError
    from sar_atd.tiling import check_scene

    if not path.is_file():
        raise ChipReadError(f"scene not found: {path}")
    suffix = path.suffix.lower()
    hints: dict[str, Any] = {}
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise ChipReadError(f"cannot read scene {path}: {err}") from None
    elif suffix in IMAGE_SUFFIXES:
        import cv2

        from sar_atd.evalset import check_image_file_complete

        check_image_file_complete(path)
        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise ChipReadError(f"cannot decode scene image {path} (corrupt or not an image)")
        if arr.ndim == 3:
            if arr.shape[2] == 4:
                arr = arr[:, :, :3]
            if not (np.array_equal(arr[..., 0], arr[..., 1])
                    and np.array_equal(arr[..., 0], arr[..., 2])):
                raise ChipReadError(f"{path}: expected a single-channel SAR image, got "
                                    f"colour {arr.shape}")
            arr = np.ascontiguousarray(arr[..., 0])
    else:
        from sar_atd.sar.mstar import read_mstar

        mf = read_mstar(path)
        arr = mf.image
        h = mf.header
        if h.range_spacing_m and h.xrange_spacing_m:
            hints["pixel_spacing_m"] = (float(h.range_spacing_m), float(h.xrange_spacing_m))
        if h.radar_position:
            hints["orientation"] = str(h.radar_position).strip().lower()
    try:
        check_scene(arr)
    except ValueError as err:
        raise type(err)(f"{path}: {err}") from None
    return arr, hints


def _draw(image_u8: np.ndarray, boxes: np.ndarray, scores: np.ndarray, path: Path) -> None:
    """The scene with its detections (green boxes, scores), written atomically as PNG."""
    import cv2

    from sar_atd.atomic import atomic_path

    img = cv2.cvtColor(image_u8, cv2.COLOR_GRAY2BGR)
    thick = max(1, round(max(img.shape[:2]) / 800))
    for (x0, y0, x1, y1), s in zip(boxes.round().astype(int), scores, strict=True):
        cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), (0, 255, 0), thick)
        cv2.putText(img, f"{s:.2f}", (x0, max(10, y0 - 3)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.35 * thick, (0, 255, 0), 1, cv2.LINE_AA)
    with atomic_path(path) as tmp:
        if not cv2.imencode(".png", img)[0]:
            raise OSError(f"cannot encode {path}")
        tmp.write_bytes(cv2.imencode(".png", img)[1].tobytes())


def run_detect(args: argparse.Namespace) -> int:
    import sys

    from sar_atd.atomic import atomic_dir, atomic_write_json
    from sar_atd.config import SceneDetectorConfig, TilerConfig
    from sar_atd.runtime import is_neural_spec, resolve_detector, resolve_device_name
    from sar_atd.scene import SceneDetector

    def usage(msg: str) -> int:
        print(f"sar-atd detect: error: {msg}", file=sys.stderr)
        return 2

    neural = is_neural_spec(args.detector)
    thr = args.score_threshold
    if thr is not None and (thr < 0 or (neural and thr > 1)):
        return usage(f"--score-threshold {thr} is outside " + ("[0, 1] (model scores are "
                     "probabilities)" if neural else "[0, inf)"))
    if args.tile < 32 or not 0 <= args.overlap < args.tile or args.batch < 1:
        return usage(f"need --tile >= 32, 0 <= --overlap < --tile and --batch >= 1, got "
                     f"{args.tile}, {args.overlap}, {args.batch}")
    if args.out.exists() and not args.out.is_dir():
        return usage(f"--out {args.out} is a file")
    if args.out.is_dir() and any(args.out.iterdir()) and not args.overwrite:
        return usage(f"--out {args.out} exists and is not empty (use --overwrite)")
    device = resolve_device_name(args.device)
    det, desc = resolve_detector(args.detector, device=device, score_threshold=0.01,
                                 backend=args.backend, box_voting_iou=args.box_voting_iou,
                                 tta=args.tta)
    info = getattr(det, "model_info", None)
    render = {"render": "model"}
    if args.amplitude_ref is not None:  # an explicit LUT: the paper's quarter power
        render = {"render": "config", "gamma": 0.5, "amplitude_ref": args.amplitude_ref}
    tiler_cfg = TilerConfig(tile_size=args.tile, overlap=args.overlap, batch_size=args.batch,
                            device=device, **render)  # type: ignore[arg-type]
    if thr is None:
        op = info.operating_threshold if info is not None else None
        thr = (op if op is not None else 0.5) if neural else 0.0
    scene_det = SceneDetector(det, tiler_cfg, SceneDetectorConfig(score_threshold=thr))
    index, results = [], []
    with atomic_dir(args.out, overwrite=True) as tmp:
        stems: set[str] = set()
        for i, path in enumerate(args.scenes):
            arr, hints = read_scene(path)
            stem = path.stem if path.suffix else path.name
            while stem in stems:
                stem += "_"
            stems.add(stem)
            t0 = time.perf_counter()
            spacing = args.pixel_spacing or hints.get("pixel_spacing_m")
            orient = args.orientation or hints.get("orientation")
            out = scene_det.detect(arr, pixel_spacing_m=spacing, orientation=orient)
            ms = (time.perf_counter() - t0) * 1e3
            doc = {"scene": str(path), "height": int(arr.shape[0]), "width": int(arr.shape[1]),
                   "dtype": str(arr.dtype), "n_nonfinite": out.n_nonfinite,
                   "n_tiles": out.n_tiles, "n_before_merge": out.n_raw,
                   "pixel_spacing_m": list(spacing) if spacing else None,
                   "orientation": orient, "detector": desc, "score_threshold": thr,
                   "tiler": vars(scene_det.tiler.cfg), "milliseconds": round(ms, 1),
                   "detections": [{"box": [round(float(v), 3) for v in b],
                                   "score": float(s), "tile": int(t)}
                                  for b, s, t in zip(out.boxes, out.scores, out.tile_index,
                                                     strict=True)]}
            atomic_write_json(tmp / f"{stem}.json", doc)
            index.append({"id": i + 1, "scene": str(path), "json": f"{stem}.json",
                          "width": int(arr.shape[1]), "height": int(arr.shape[0])})
            for b, s in zip(out.boxes, out.scores, strict=True):
                results.append({"image_id": i + 1, "category_id": 1, "score": float(s),
                                "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]),
                                         float(b[3] - b[1])]})
            if not args.no_png:
                u8 = scene_det.tiler.prepare(arr).image.cpu().numpy()
                _draw(u8, out.boxes, out.scores, tmp / f"{stem}.png")
            print(f"{path}: {len(out)} detection(s) at score >= {thr:.3g} "
                  f"({out.n_tiles} tiles, {ms:.0f} ms"
                  + (f", {out.n_nonfinite} NaN/inf pixels set to 0" if out.n_nonfinite
                     else "") + ")")
            del arr
        atomic_write_json(tmp / "coco_results.json", results)
        atomic_write_json(tmp / "index.json", {"detector": desc, "images": index})
    print(f"wrote {args.out}")
    return 0
