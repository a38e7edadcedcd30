"""Messages <-> arrays: scene detections, tile batches, ground truth, vision_msgs.

Flat message arrays are row-major: ``boxes_px`` of N detections is (N, 4) float32
``[x0, y0, x1, y1]`` scene pixels (pixel edges), ``offsets`` of B tiles is (B, 2) int32
``[x0, y0]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sar_atd_ros.errors import ImageEncodingError
from sar_atd_ros.image import byte_array

__all__ = ["fill_detections", "detections_from_msg", "fill_tile_batch", "tile_batch_from_msg",
           "gt_from_msg", "VISION_MSGS_DEFINITIONS", "to_detection2d_array"]


def fill_detections(msg: Any, header: Any, seq: int, dets: Any,
                    spacing: tuple[float, float] | None, detector: str, backend: str,
                    model_hash: str, operating_threshold: float, class_id: int = 1) -> Any:
    """Fill a ``SceneDetections`` message from :class:`sar_atd.scene.SceneDetections`.

    Args:
        spacing: (row, column) metres per pixel for ``boxes_m`` (None: left empty).
        operating_threshold: boxes scoring below it are flagged ``below_threshold`` (NaN:
            unknown, nothing flagged).
    """
    boxes = np.ascontiguousarray(dets.boxes, np.float32).reshape(-1, 4)
    scores = np.ascontiguousarray(dets.scores, np.float32).reshape(-1)
    msg.header = header
    msg.sequence = int(seq)
    h, w = dets.scene_hw
    msg.scene_height, msg.scene_width = int(h), int(w)
    msg.detector, msg.backend, msg.model_hash = detector, backend, model_hash
    msg.operating_threshold = float(operating_threshold)
    msg.n_tiles, msg.n_nonfinite = int(dets.n_tiles), int(dets.n_nonfinite)
    msg.boxes_px = boxes.reshape(-1)
    if spacing is not None and all(v > 0 for v in spacing):
        sy, sx = spacing
        msg.pixel_spacing_range_m, msg.pixel_spacing_cross_m = float(sy), float(sx)
        msg.boxes_m = (boxes * np.array([sx, sy, sx, sy], np.float32)).reshape(-1)
    msg.scores = scores
    msg.class_ids = np.full(len(scores), class_id, np.uint16)
    msg.tile_index = np.asarray(dets.tile_index, np.int32).reshape(-1)
    msg.below_threshold = [bool(s < operating_threshold) for s in scores]
    return msg


def detections_from_msg(msg: Any) -> tuple[np.ndarray, np.ndarray]:
    """(boxes (N, 4) float32 scene px, scores (N,) float32) of a ``SceneDetections``.

    Raises:
        ValueError: box and score counts disagree.
    """
    boxes = np.asarray(msg.boxes_px, np.float32)
    scores = np.asarray(msg.scores, np.float32)
    if boxes.size != 4 * scores.size:
        raise ValueError(f"detections message has {boxes.size} box values for "
                         f"{scores.size} scores (expected 4 per score)")
    return boxes.reshape(-1, 4), scores


def gt_from_msg(msg: Any) -> np.ndarray:
    """(M, 4) float32 boxes of a ``GroundTruth`` message.

    Raises:
        ValueError: not a multiple of 4 values, non-finite or inverted boxes, or boxes
            outside the scene (``scene_height`` x ``scene_width`` when given, 1 px slack).
    """
    boxes = np.asarray(msg.boxes_px, np.float32)
    where = f"ground truth of scene {msg.sequence}"
    if boxes.size % 4:
        raise ValueError(f"{where} has {boxes.size} values (not a multiple of 4)")
    boxes = boxes.reshape(-1, 4)
    if not np.all(np.isfinite(boxes)):
        raise ValueError(f"{where} has non-finite boxes (NaN/inf)")
    bad = np.flatnonzero(np.any(boxes[:, 2:] < boxes[:, :2], axis=1))
    if bad.size:
        raise ValueError(f"{where} has inverted boxes (x1 < x0 or y1 < y0): "
                         f"{boxes[bad[0]].tolist()}")
    h, w = int(msg.scene_height), int(msg.scene_width)
    if h > 0 and w > 0 and boxes.size:
        out = np.flatnonzero((boxes[:, 0] < -1) | (boxes[:, 1] < -1) | (boxes[:, 2] > w + 1)
                             | (boxes[:, 3] > h + 1))
        if out.size:
            raise ValueError(f"{where} has boxes outside the {h}x{w} scene: "
                             f"{boxes[out[0]].tolist()}")
    return boxes


def fill_tile_batch(msg: Any, header: Any, seq: int, batch: Any, batch_index: int,
                    batch_count: int, spacing: tuple[float, float] = (0.0, 0.0)) -> Any:
    """Fill a ``TileBatch`` message from a :class:`sar_atd.tiling.TileBatch`.

    The tiler's tiles are 8-bit renderings (integral values), sent as ``mono8``.
    """
    import torch

    tiles = batch.tiles
    b, _, th, tw = (int(v) for v in tiles.shape)
    u8 = tiles.detach().to("cpu").clamp(0, 255).round().to(dtype=torch.uint8)
    msg.header = header
    msg.sequence = int(seq)
    msg.batch_index, msg.batch_count = int(batch_index), int(batch_count)
    msg.scene_height, msg.scene_width = (int(v) for v in batch.scene_hw)
    msg.n_nonfinite = int(batch.n_nonfinite)
    msg.pixel_spacing_range_m, msg.pixel_spacing_cross_m = (float(v) for v in spacing)
    msg.tile_height, msg.tile_width, msg.n_tiles = th, tw, b
    msg.offsets = np.asarray(batch.offsets, np.int32).reshape(-1)
    msg.encoding = "mono8"
    msg.data = byte_array(u8.numpy())
    msg.tile_index_first = int(batch.tile_index[0]) if len(batch.tile_index) else 0
    msg.scene_tiles = int(batch.n_tiles)
    return msg


def tile_batch_from_msg(msg: Any, device: Any = "cpu") -> Any:
    """:class:`sar_atd.tiling.TileBatch` (float32 8-bit units on ``device``) of a message.

    Raises:
        ImageEncodingError: unknown encoding or a data size that does not match.
    """
    import torch

    from sar_atd.tiling import TileBatch

    b, th, tw = int(msg.n_tiles), int(msg.tile_height), int(msg.tile_width)
    enc = {"mono8": np.uint8, "32FC1": np.dtype("<f4")}.get(msg.encoding)
    if enc is None:
        raise ImageEncodingError(f"tile batch encoding {msg.encoding!r} is not mono8 or 32FC1")
    buf = np.frombuffer(msg.data, np.uint8) if not isinstance(msg.data, np.ndarray) else \
        msg.data.view(np.uint8)
    need = b * th * tw * np.dtype(enc).itemsize
    if b < 1 or buf.size != need or len(msg.offsets) != 2 * b:
        raise ImageEncodingError(f"tile batch of {b} tiles of {th}x{tw} {msg.encoding} needs "
                                 f"{need} bytes and {2 * b} offsets, got {buf.size} and "
                                 f"{len(msg.offsets)}")
    arr = buf.view(enc).reshape(b, 1, th, tw)
    tiles = torch.from_numpy(arr.astype(np.float32)).to(device)
    first = int(msg.tile_index_first)
    return TileBatch(tiles=tiles, offsets=np.asarray(msg.offsets, np.int64).reshape(b, 2),
                     scene_hw=(int(msg.scene_height), int(msg.scene_width)),
                     tile_index=np.arange(first, first + b, dtype=np.int64),
                     n_tiles=int(msg.scene_tiles), n_nonfinite=int(msg.n_nonfinite))


VISION_MSGS_DEFINITIONS: dict[str, str] = {
    "vision_msgs/msg/Point2D": "float64 x\nfloat64 y\n",
    "vision_msgs/msg/Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "vision_msgs/msg/BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\n"
                                     "float64 size_y\n",
    "vision_msgs/msg/ObjectHypothesis": "string class_id\nfloat64 score\n",
    "vision_msgs/msg/ObjectHypothesisWithPose":
        "vision_msgs/ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n",
    "vision_msgs/msg/Detection2D": "std_msgs/Header header\n"
                                   "vision_msgs/ObjectHypothesisWithPose[] results\n"
                                   "vision_msgs/BoundingBox2D bbox\nstring id\n",
    "vision_msgs/msg/Detection2DArray": "std_msgs/Header header\n"
                                        "vision_msgs/Detection2D[] detections\n",
}
"""vision_msgs 4.x (ROS 2 Humble and later) definitions used by :func:`to_detection2d_array`
(vision_msgs is not always installed; tests register these in a ``rosbags`` typestore)."""


def to_detection2d_array(types: Any, header: Any, boxes: np.ndarray, scores: np.ndarray,
                         class_names: list[str] | None = None) -> Any:
    """A vision_msgs/Detection2DArray of scene-pixel boxes (for RViz/Foxglove overlays).

    Args:
        types: callable ``name -> message class`` (e.g. ``lambda n: getattr(vision_msgs.msg,
            n.split('/')[-1])`` with geometry_msgs, or a rosbags ``typestore.types.__getitem__``)
            taking full names like ``vision_msgs/msg/Detection2D``.
        header: the scene header (copied to the array and each detection).
        boxes: (N, 4) float32 xyxy scene pixels; scores: (N,).
        class_names: (N,) class id strings (default ``"target"``).

    Every field is given explicitly, so generated classes without defaults work too.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    s = np.asarray(scores, np.float64).reshape(-1)
    names = class_names or ["target"] * len(s)
    T = types
    dets = []
    for i, (x0, y0, x1, y1) in enumerate(b):
        pose = T("geometry_msgs/msg/PoseWithCovariance")(
            pose=T("geometry_msgs/msg/Pose")(
                position=T("geometry_msgs/msg/Point")(x=0.0, y=0.0, z=0.0),
                orientation=T("geometry_msgs/msg/Quaternion")(x=0.0, y=0.0, z=0.0, w=1.0)),
            covariance=np.zeros(36, np.float64))
        hyp = T("vision_msgs/msg/ObjectHypothesisWithPose")(
            hypothesis=T("vision_msgs/msg/ObjectHypothesis")(class_id=str(names[i]),
                                                             score=float(s[i])),
            pose=pose)
        bbox = T("vision_msgs/msg/BoundingBox2D")(
            center=T("vision_msgs/msg/Pose2D")(
                position=T("vision_msgs/msg/Point2D")(x=float((x0 + x1) / 2),
                                                      y=float((y0 + y1) / 2)),
                theta=0.0),
            size_x=float(x1 - x0), size_y=float(y1 - y0))
        dets.append(T("vision_msgs/msg/Detection2D")(header=header, results=[hyp], bbox=bbox,
                                                     id=str(i)))
    return T("vision_msgs/msg/Detection2DArray")(header=header, detections=dets)


def from_detection2d_array(msg: Any) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(boxes (N, 4) float32 xyxy, scores (N,), class ids) of a Detection2DArray."""
    boxes, scores, names = [], [], []
    for d in msg.detections:
        cx, cy = d.bbox.center.position.x, d.bbox.center.position.y
        hw, hh = d.bbox.size_x / 2, d.bbox.size_y / 2
        boxes.append([cx - hw, cy - hh, cx + hw, cy + hh])
        best = max(d.results, key=lambda r: r.hypothesis.score) if d.results else None
        scores.append(best.hypothesis.score if best else 0.0)
        names.append(best.hypothesis.class_id if best else "")
    return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
            names)
