"""Detector nodes: ``scene_detector`` (tiler + detector in one process, the default) and
``detector`` (tile batches from a separate ``tiler`` node: split layouts).

Both wrap :class:`sar_atd.scene.SceneDetector` (the code of ``sar-atd eval --tile``): the
detector comes from :func:`sar_atd.runtime.resolve_detector` (``detector.model``: ``cfar``,
``cfar-os``, ``.pt``, ``.onnx``, ``.engine``; ``detector.backend`` "" = by file suffix),
and each scene yields one ``detections`` message (sar_atd_msgs/SceneDetections) with the
scene's header stamp unchanged. Every box is published, those under the model's operating
threshold flagged ``below_threshold`` (average precision needs them).

Both are managed lifecycle nodes (:mod:`sar_atd_ros.lifecycle`): the model loads in
``configure``, is released in ``cleanup``, and ``activate``/``deactivate`` start and stop
processing. With ``node.autostart`` (default) the node configures and activates itself;
``sar-atd run`` and the launch file set it false and drive the transitions. A missing
model file fails configure (at start-up with autostart: exit 1, one line naming the file)
unless ``node.wait_for_model`` is true: then configure is retried until the file appears;
a driven node stays unconfigured and recoverable. A malformed
scene (encoding, size, NaN policy, absurd dimensions) is logged, counted on
``/diagnostics`` and skipped; the node keeps running.

``scene_detector`` takes scenes through a bounded queue processed by a worker thread
(:mod:`sar_atd_ros.queued`): a detector slower than its input drops the oldest waiting
scene, counted with its reason, and the wait before processing stays bounded.
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from rclpy.lifecycle import LifecycleNode

from sar_atd.config import DetectorRuntimeConfig, SceneDetectorConfig, TilerConfig
from sar_atd.errors import SarAtdError
from sar_atd_ros.common import (
    Diagnostics,
    check_unknown_parameters,
    declare_qos,
    declare_section,
    read_section,
    run_node,
)
from sar_atd_ros.image import DEFAULT_MAX_PIXELS
from sar_atd_ros.lifecycle import ManagedProcessing
from sar_atd_ros.queued import QueuedSceneInput


@dataclasses.dataclass
class DetectorNodeConfig:
    """Node-level parameters of the detector nodes (section ``node``).

    Attributes:
        autostart: configure + activate at start-up (false: wait for a lifecycle manager).
        wait_for_model: retry configure while the model file is missing instead of failing.
        wait_poll_s: how often to retry configure while waiting.
        pixel_spacing_m: (row, column) metres per scene pixel; [0, 0] = the model's own
            (scenes are resampled to the model's spacing when they differ by > 5 %).
        orientation: side of the scene the radar is on ("" = the model's convention).
        max_scene_pixels: scenes above this many pixels are refused before conversion.
        vision_msgs: also publish vision_msgs/Detection2DArray on ``detections_vision``
            (RViz/Foxglove overlays) where vision_msgs is installed (a warning otherwise).
        max_pending_scenes: (``detector`` only) scenes with incomplete tile batches kept
            before the oldest is dropped and counted.
        queue_depth: (``scene_detector``) scenes waiting for processing; a scene arriving
            at a full queue drops the oldest (counted ``scenes_dropped_queue_full``).
        max_queue_age_s: (``scene_detector``) a scene that waited longer than this is
            dropped (``scenes_dropped_stale``, e.g. after a stall); 0 = no limit.
    """

    autostart: bool = True
    wait_for_model: bool = False
    wait_poll_s: float = 1.0
    pixel_spacing_m: tuple[float, float] = (0.0, 0.0)
    orientation: str = ""
    max_scene_pixels: int = DEFAULT_MAX_PIXELS
    max_pending_scenes: int = 4
    queue_depth: int = 2
    max_queue_age_s: float = 30.0
    vision_msgs: bool = False

    def __post_init__(self) -> None:
        if not self.wait_poll_s > 0:
            raise ValueError(f"wait_poll_s must be > 0, got {self.wait_poll_s}")
        if any(v < 0 for v in self.pixel_spacing_m):
            raise ValueError(f"pixel_spacing_m must be >= 0, got {self.pixel_spacing_m}")
        if self.orientation not in ("", "bottom", "left", "top", "right"):
            raise ValueError(f"orientation must be '', bottom, left, top or right, got "
                             f"{self.orientation!r}")
        if self.max_scene_pixels < 1 or self.max_pending_scenes < 1 or self.queue_depth < 1:
            raise ValueError("max_scene_pixels, max_pending_scenes and queue_depth must be "
                             ">= 1")
        if not self.max_queue_age_s >= 0:
            raise ValueError(f"max_queue_age_s must be >= 0 (0 = no limit), got "
                             f"{self.max_queue_age_s}")


class _DetectorBase(ManagedProcessing, LifecycleNode):
    """Shared set-up: parameters, lifecycle (model load/release, processing on/off),
    publisher, diagnostics. Subclasses create their input subscription in ``_subscribe``
    and call ``_start()`` at the end of ``__init__``."""

    INPUT = "scene"
    EXTRA_SECTIONS: tuple[tuple[type, str], ...] = ()  # (config class, section) of subclasses

    def __init__(self, name: str, **kw: Any) -> None:
        super().__init__(name, **kw)
        from sar_atd_msgs.msg import SceneDetections

        declare_section(self, TilerConfig, "tiler")
        declare_section(self, DetectorRuntimeConfig, "detector")
        declare_section(self, SceneDetectorConfig, "scene")
        declare_section(self, DetectorNodeConfig, "node")
        for cls, section in self.EXTRA_SECTIONS:
            declare_section(self, cls, section)
        self.qos = declare_qos(self, [self.INPUT, "detections"])
        check_unknown_parameters(self)
        self.tiler_cfg = read_section(self, TilerConfig, "tiler")
        self.det_cfg = read_section(self, DetectorRuntimeConfig, "detector")
        self.scene_cfg = read_section(self, SceneDetectorConfig, "scene")
        self.node_cfg = read_section(self, DetectorNodeConfig, "node")
        self.scene_detector: Any = None
        self.desc: dict[str, Any] = {}
        self.operating_threshold = float("nan")
        self.model_hash = ""
        self.pub: Any = None
        self.sub: Any = None
        self.vision_pub: Any = None
        self._Msg = SceneDetections
        self.n_in = self.n_out = self.n_malformed = self.n_boxes = self.n_nonfinite = 0
        self.n_geometry = 0  # of the malformed: geometry out of the model's reach
        self.last_error = ""
        self.proc_ms: list[float] = []
        self.done = False
        self.exit_code = 0
        self.diag = Diagnostics(self, self._diag_values)

    def _start(self) -> None:
        """Configure + activate now when ``node.autostart`` (else a manager will)."""
        if self.node_cfg.autostart:
            self.autostart(self.node_cfg.wait_poll_s if self.node_cfg.wait_for_model else None)

    def _subscribe(self) -> Any:
        raise NotImplementedError

    def _configure_resources(self) -> None:
        self.scene_detector = self._load()
        info = self.scene_detector.info
        op = getattr(info, "operating_threshold", None)
        # NaN when the model stores none (CFAR): no box is flagged, no precision/recall
        self.operating_threshold = float(op) if op is not None else float("nan")
        self.model_hash = str(getattr(info, "model_hash", "") or "")

    def _release_resources(self) -> None:
        self.scene_detector = None

    def _start_processing(self) -> None:
        # subscription first: once ``detections`` is advertised (the player waits for
        # it), scenes are received
        if self.sub is None:
            self.sub = self._subscribe()
        if self.pub is None:
            self.pub = self.create_publisher(self._Msg, "detections", self.qos["detections"])
        if self.vision_pub is None and self.node_cfg.vision_msgs:
            try:
                from vision_msgs.msg import Detection2DArray
            except ImportError:
                self.get_logger().warning("node.vision_msgs is set but vision_msgs is not "
                                          "installed: no detections_vision output")
            else:
                self.vision_pub = self.create_publisher(Detection2DArray, "detections_vision",
                                                        self.qos["detections"])

    def _stop_processing(self) -> None:
        if self.sub is not None:
            self.destroy_subscription(self.sub)
            self.sub = None
        if self.pub is not None:
            self.destroy_publisher(self.pub)
            self.pub = None
        if self.vision_pub is not None:
            self.destroy_publisher(self.vision_pub)
            self.vision_pub = None

    def _load(self) -> Any:
        from sar_atd.runtime import is_neural_spec, resolve_detector
        from sar_atd.scene import SceneDetector

        cfg = self.det_cfg
        if is_neural_spec(cfg.model) and not Path(cfg.model).is_file():
            raise FileNotFoundError(f"model file not found: {cfg.model}")
        kw: dict[str, Any] = {}
        if cfg.threads:
            kw["threads"] = cfg.threads
        det, desc = resolve_detector(cfg.model, device=cfg.device,
                                     score_threshold=cfg.score_threshold,
                                     backend=cfg.backend or None,
                                     box_voting_iou=cfg.box_voting_iou, tta=cfg.tta,
                                     verifier=cfg.verifier, **kw)
        self.desc = desc
        self.get_logger().info(f"detector {cfg.model}: backend {desc.get('backend')}, device "
                               f"{desc.get('device', 'cpu')}")
        return SceneDetector(det, self.tiler_cfg, self.scene_cfg)

    def _diag_values(self) -> dict[str, Any]:
        ms = sorted(self.proc_ms[-200:])
        return {"scenes_received": self.n_in, "scenes_published": self.n_out,
                "scenes_malformed": self.n_malformed, "boxes_published": self.n_boxes,
                "scenes_nonfinite": self.n_nonfinite,
                "scenes_rejected_geometry": self.n_geometry,
                "processing_ms_p50": f"{ms[len(ms) // 2]:.1f}" if ms else "",
                "lifecycle_state": self.state_label,
                f"{self.INPUT}_qos_depth": self.qos[self.INPUT].depth,
                "model": self.det_cfg.model, "backend": self.desc.get("backend", ""),
                "device": self.desc.get("device", "cpu"), "model_hash": self.model_hash,
                "warn": self.last_error}

    def _reject(self, what: str, err: Exception) -> None:
        from sar_atd.scene import GeometryError

        self.n_malformed += 1
        self.n_geometry += isinstance(err, GeometryError)
        self.last_error = f"{what}: {err}"
        self.get_logger().error(f"rejected {what}: {err}")

    def _spacing(self) -> tuple[float, float] | None:
        sp = self.node_cfg.pixel_spacing_m
        return (float(sp[0]), float(sp[1])) if all(v > 0 for v in sp) else None

    def publish(self, header: Any, dets: Any, seq: int, t0: float, pub: Any = None) -> None:
        """Publish one scene's detections (``sar_atd.scene.SceneDetections``) on ``pub``
        (default: the node's ``detections`` publisher)."""
        from sar_atd_ros.convert import fill_detections

        pub = pub if pub is not None else self.pub
        if pub is None:  # deactivated meanwhile
            return
        if getattr(dets, "n_nonfinite", 0):  # processed with those pixels set to 0
            self.n_nonfinite += 1
            self.get_logger().warning(f"scene {seq}: {dets.n_nonfinite} NaN/inf pixels set "
                                      f"to 0 before detection")
        sp = self._spacing() or tuple(getattr(self.scene_detector.info, "pixel_spacing_m",
                                              (0.0, 0.0)))
        msg = fill_detections(self._Msg(), header, seq, dets, spacing=sp,
                              detector=self.det_cfg.model,
                              backend=str(self.desc.get("backend", "")),
                              model_hash=self.model_hash,
                              operating_threshold=self.operating_threshold)
        ms = (time.perf_counter() - t0) * 1e3
        msg.processing_ms = float(ms)
        msg.published_stamp = self.get_clock().now().to_msg()
        self.proc_ms.append(ms)
        del self.proc_ms[:-1000]
        pub.publish(msg)
        if self.vision_pub is not None:
            self.vision_pub.publish(_vision_array(header, dets))
        self.n_out += 1
        self.n_boxes += len(dets)


def _vision_array(header: Any, dets: Any) -> Any:
    """vision_msgs/Detection2DArray of scene detections (rclpy classes)."""
    import importlib

    from sar_atd_ros.convert import to_detection2d_array

    def types(name: str) -> Any:
        pkg, _, cls = name.split("/")
        return getattr(importlib.import_module(f"{pkg}.msg"), cls)

    return to_detection2d_array(types, header, dets.boxes, dets.scores)


class SceneDetectorNode(QueuedSceneInput, _DetectorBase):
    """``scene`` (sensor_msgs/Image) -> bounded queue -> tiler + detector in-process ->
    ``detections``."""

    INPUT = "scene"

    def __init__(self, name: str = "scene_detector", **kw: Any) -> None:
        super().__init__(name, **kw)
        self._init_queue(self.node_cfg.queue_depth, self.node_cfg.max_queue_age_s)
        self._start()

    def _subscribe(self) -> Any:
        from sensor_msgs.msg import Image

        return self.create_subscription(Image, "scene", self._enqueue, self.qos["scene"])

    def _start_processing(self) -> None:
        super()._start_processing()
        self._start_worker()

    def _stop_processing(self) -> None:
        if hasattr(self, "scene_queue"):
            self._stop_worker()
        super()._stop_processing()

    def _diag_values(self) -> dict[str, Any]:
        return {**super()._diag_values(), **self._queue_values()}

    def finish(self) -> None:
        """Stop the worker before the node is destroyed (shutdown of the process)."""
        self._stop_worker()

    def _process(self, seq: int, msg: Any, t_in: float) -> None:
        from sar_atd_ros.image import image_to_array

        t0 = time.perf_counter()  # processing time excludes the wait in the queue
        sd = self.scene_detector
        if sd is None:  # cleaned up meanwhile
            return
        try:
            scene = image_to_array(msg, self.node_cfg.max_scene_pixels)
            dets = sd.detect(scene, self._spacing(), self.node_cfg.orientation or None)
        except (SarAtdError, ValueError) as err:
            self._reject(f"scene {seq}", err)
            return
        self.publish(msg.header, dets, seq, t0)


class TileDetectorNode(_DetectorBase):
    """``tiles`` (sar_atd_msgs/TileBatch) -> detector -> merge -> ``detections``."""

    INPUT = "tiles"

    def __init__(self, name: str = "detector", **kw: Any) -> None:
        super().__init__(name, **kw)
        self.pending: OrderedDict[tuple[int, int], list[Any]] = OrderedDict()
        self.n_incomplete = 0
        self._start()

    def _subscribe(self) -> Any:
        from sar_atd_msgs.msg import TileBatch

        return self.create_subscription(TileBatch, "tiles", self._on_tiles, self.qos["tiles"])

    def _stop_processing(self) -> None:
        super()._stop_processing()
        self.n_incomplete += len(self.pending)  # partial scenes of a stopped run are lost
        self.pending.clear()

    def _diag_values(self) -> dict[str, Any]:
        return {**super()._diag_values(), "scenes_incomplete": self.n_incomplete,
                "scenes_pending": len(self.pending)}

    def _on_tiles(self, msg: Any) -> None:
        from sar_atd_ros.convert import tile_batch_from_msg

        t0 = time.perf_counter()
        key = (int(msg.header.stamp.sec), int(msg.header.stamp.nanosec))
        try:
            batch = tile_batch_from_msg(msg, self.scene_detector.tiler.device)
        except (SarAtdError, ValueError) as err:
            self._reject(f"tile batch {msg.batch_index} of scene {msg.sequence}", err)
            return
        parts = self.pending.setdefault(key, [])
        if not parts:
            self.n_in += 1
        parts.append((msg, batch))
        if len(parts) < msg.batch_count:
            while len(self.pending) > self.node_cfg.max_pending_scenes:
                self.pending.popitem(last=False)
                self.n_incomplete += 1
            return
        del self.pending[key]
        parts.sort(key=lambda p: p[0].batch_index)
        dets = self.scene_detector.detect_batches([b for _m, b in parts])
        self.publish(parts[0][0].header, dets, int(parts[0][0].sequence), t0)


def main(args: list[str] | None = None) -> int:
    return run_node("detector", TileDetectorNode, args)


def main_scene_detector(args: list[str] | None = None) -> int:
    return run_node("scene_detector", SceneDetectorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())


