"""Several SAR streams through one detector: ``multi_scene_detector``.

One process subscribes to ``<stream>/scene`` of every stream in ``streams.namespaces``
(e.g. ``/sar1``, ``/sar2``) and publishes each scene's detections on that stream's
``<stream>/detections``. Scenes waiting in different streams are processed together: their
tiles (rendered by the same tiler) are batched across streams, so one inference call
serves several streams, then each scene's boxes are merged across its own seams exactly as
:meth:`sar_atd.scene.SceneDetector.detect_batches` does (the same code runs).

Each stream keeps at most ``streams.max_queue`` scenes waiting; a scene arriving at a full
queue pushes the oldest out, which is counted per stream (``dropped_<stream>`` on
``/diagnostics``) and logged.

Geometry per stream, with the contract of ``scene_detector``: ``streams.pixel_spacing_m``
(two values per stream, row then column metres; 0, 0 = the model's) and
``streams.orientations`` (the radar side per stream; "" = the model's) bring each scene to
the model's record (rotated, resampled) before its tiles join the shared batches, and its
boxes back to its own pixels; a scene whose geometry is out of reach is refused, logged
and counted (``rejected_<stream>``, ``scenes_rejected_geometry``). Without the per-stream
lists, the node's ``node.pixel_spacing_m``/``node.orientation`` apply to every stream.

It is a managed lifecycle node like ``scene_detector`` (:mod:`sar_atd_ros.lifecycle`).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections import deque
from typing import Any

import numpy as np
import torch

from sar_atd.detectors.base import Detections, detect_tiles
from sar_atd.errors import SarAtdError
from sar_atd_ros.common import run_node
from sar_atd_ros.detector_node import _DetectorBase

__all__ = ["CrossStreamBatcher", "MultiStreamDetectorNode", "StreamsConfig", "main"]


class _Replay:
    """A detector that hands out per-batch results computed elsewhere, in order."""

    def __init__(self, results: list[list[Detections]]) -> None:
        self._results = iter(results)

    def detect_batch(self, tiles: torch.Tensor) -> list[Detections]:
        out = next(self._results)
        if len(out) != int(tiles.shape[0]):
            raise RuntimeError(f"cross-stream batch mismatch: {len(out)} results for "
                               f"{int(tiles.shape[0])} tiles")
        return out


Geometry = tuple[tuple[float, float] | None, str | None]
"""(pixel spacing (row, column) m or None, radar side or None) of one scene."""


class CrossStreamBatcher:
    """Detect several scenes at once, their tiles batched together.

    Args:
        scene_detector: the :class:`sar_atd.scene.SceneDetector` (its tiler, detector and
            merge settings are used as they are).
    """

    def __init__(self, scene_detector: Any) -> None:
        self.sd = scene_detector

    def prepare(self, scene: np.ndarray, pixel_spacing_m: Any = None,
                orientation: str | None = None) -> tuple[Any, Any, int, tuple[float, float]]:
        """Render one scene and bring it to the model's geometry (as
        ``SceneDetector.detect`` does): (prepared scene, scene in model geometry, quarter
        turns, (sy, sx) scale).

        Raises:
            SceneInputError: a malformed scene; GeometryError: geometry out of reach.
        """
        prepared = self.sd.tiler.prepare(scene)
        model_scene, k, scale = self.sd._geometry(prepared, pixel_spacing_m, orientation)
        return prepared, model_scene, k, scale

    def detect(self, scenes: list[np.ndarray],
               geometries: list[Geometry] | None = None) -> list[Any]:
        """Detections of each scene (the same as ``SceneDetector.detect`` on each, with its
        geometry; None = the model's for every scene).

        Raises:
            SceneInputError: a malformed scene (no other scene is processed then).
        """
        geoms = geometries or [(None, None)] * len(scenes)
        return self.detect_prepared([self.prepare(s, *g) for s, g in zip(scenes, geoms,
                                                                         strict=True)])

    @torch.inference_mode()
    def detect_prepared(self, prepped: list[tuple[Any, Any, int, tuple[float, float]]]
                        ) -> list[Any]:
        """Detections of scenes from :meth:`prepare`, their tiles inferred together."""
        sd = self.sd
        batches = [list(sd.tiler.batches(m)) for _p, m, _k, _s in prepped]
        # tiles of every (scene, batch), grouped by tile shape, inferred batch_size at once
        flat = [(si, bi) for si, bs in enumerate(batches) for bi in range(len(bs))]
        results: dict[tuple[int, int], list[Detections]] = {}
        by_shape: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for key in flat:
            tiles = batches[key[0]][key[1]].tiles
            by_shape.setdefault((int(tiles.shape[2]), int(tiles.shape[3])), []).append(key)
        bs = sd.tiler.cfg.batch_size
        for keys in by_shape.values():
            tiles = torch.cat([batches[si][bi].tiles for si, bi in keys])
            owners = [k for k in keys for _ in range(int(batches[k[0]][k[1]].tiles.shape[0]))]
            dets: list[Detections] = []
            for start in range(0, len(tiles), bs):
                dets.extend(detect_tiles(sd.detector, tiles[start:start + bs]))
            for key in keys:
                results[key] = [d for d, o in zip(dets, owners) if o == key]
        out = []
        for si, ((p, _m, k, scale), bl) in enumerate(zip(prepped, batches)):
            replay = copy.copy(sd)
            replay.detector = _Replay([results[(si, bi)] for bi in range(len(bl))])
            out.append(sd.to_scene_frame(replay.detect_batches(bl), p, k, scale))
        return out


@dataclasses.dataclass
class StreamsConfig:
    """Streams of the multi-stream detector (section ``streams``).

    Attributes:
        namespaces: one namespace per stream (absolute, e.g. ``/sar1``).
        max_queue: scenes kept waiting per stream (the oldest is dropped and counted).
        period_s: how often waiting scenes are collected into one cross-stream batch.
        pixel_spacing_m: (row, column) metres per pixel of each stream, flattened: two
            values per namespace (0, 0 = the model's); empty = ``node.pixel_spacing_m``
            for every stream.
        orientations: radar side of each stream's scenes (``bottom`` | ``left`` | ``top``
            | ``right``; "" = the model's); empty = ``node.orientation`` for every stream.
    """

    namespaces: tuple[str, ...] = ("/sar1", "/sar2")
    max_queue: int = 2
    period_s: float = 0.005
    pixel_spacing_m: tuple[float, ...] = ()
    orientations: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.namespaces or not all(n.startswith("/") for n in self.namespaces):
            raise ValueError(f"namespaces must be absolute (/name), got {self.namespaces}")
        if len(set(self.namespaces)) != len(self.namespaces):
            raise ValueError(f"namespaces must differ, got {self.namespaces}")
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {self.max_queue}")
        if not self.period_s > 0:
            raise ValueError(f"period_s must be > 0, got {self.period_s}")
        n = len(self.namespaces)
        if self.pixel_spacing_m and len(self.pixel_spacing_m) != 2 * n:
            raise ValueError(f"pixel_spacing_m needs two values (row, column m) per stream: "
                             f"{2 * n} for {n} streams, got {len(self.pixel_spacing_m)}")
        if any(not v >= 0 for v in self.pixel_spacing_m):
            raise ValueError(f"pixel_spacing_m must be >= 0, got {self.pixel_spacing_m}")
        if self.orientations and len(self.orientations) != n:
            raise ValueError(f"orientations needs one per stream ({n}), got "
                             f"{len(self.orientations)}")
        bad = [o for o in self.orientations if o not in ("", "bottom", "left", "top", "right")]
        if bad:
            raise ValueError(f"orientations must be '', bottom, left, top or right, got {bad}")

    def geometry(self, i: int, default: Geometry) -> Geometry:
        """(spacing or None, orientation or None) of stream ``i`` (``default`` where the
        per-stream lists are empty)."""
        sp, orient = default
        if self.pixel_spacing_m:
            pair = (float(self.pixel_spacing_m[2 * i]), float(self.pixel_spacing_m[2 * i + 1]))
            sp = pair if all(v > 0 for v in pair) else None
        if self.orientations:
            orient = self.orientations[i] or None
        return sp, orient


class MultiStreamDetectorNode(_DetectorBase):
    """``<stream>/scene`` of every stream -> one detector -> ``<stream>/detections``."""

    INPUT = "scene"
    EXTRA_SECTIONS = ((StreamsConfig, "streams"),)

    def __init__(self, name: str = "multi_scene_detector", **kw: Any) -> None:
        super().__init__(name, **kw)
        from sar_atd_ros.common import read_section

        self.streams = read_section(self, StreamsConfig, "streams")
        ns = self.streams.namespaces
        default = (self._spacing(), self.node_cfg.orientation or None)
        self.geometries = {n: self.streams.geometry(i, default) for i, n in enumerate(ns)}
        self.rejected = dict.fromkeys(ns, 0)
        self.queues: dict[str, deque] = {n: deque() for n in ns}
        self.dropped = dict.fromkeys(ns, 0)
        self.received = dict.fromkeys(ns, 0)
        self.published = dict.fromkeys(ns, 0)
        self.subs: list[Any] = []
        self.pubs: dict[str, Any] = {}
        self.batches_run = 0
        self.timer = self.create_timer(self.streams.period_s, self._process)
        self._start()

    def _start_processing(self) -> None:
        from sensor_msgs.msg import Image

        for n in self.streams.namespaces:
            self.subs.append(self.create_subscription(
                Image, f"{n}/scene", lambda m, n=n: self._on_scene(n, m), self.qos["scene"]))
            self.pubs[n] = self.create_publisher(self._Msg, f"{n}/detections",
                                                 self.qos["detections"])
        self.pub = self.pubs[self.streams.namespaces[0]]  # marks the node as publishing

    def _stop_processing(self) -> None:
        for s in self.subs:
            self.destroy_subscription(s)
        for p in self.pubs.values():
            self.destroy_publisher(p)
        self.subs, self.pubs, self.pub = [], {}, None
        for q in getattr(self, "queues", {}).values():
            q.clear()

    def _on_scene(self, stream: str, msg: Any) -> None:
        q = self.queues[stream]
        self.received[stream] += 1
        if len(q) >= self.streams.max_queue:
            q.popleft()
            self.dropped[stream] += 1
            self.get_logger().warning(f"{stream}: queue full ({self.streams.max_queue}), "
                                      f"oldest scene dropped")
        q.append((msg, time.perf_counter()))

    def _process(self) -> None:
        from sar_atd_ros.image import image_to_array

        if self.scene_detector is None or not self.pubs:
            return
        taken = [(n, *self.queues[n].popleft()) for n in self.streams.namespaces
                 if self.queues[n]]
        if not taken:
            return
        batcher = CrossStreamBatcher(self.scene_detector)
        good, prepped = [], []
        for n, msg, t0 in taken:
            self.n_in += 1
            try:
                scene = image_to_array(msg, self.node_cfg.max_scene_pixels)
                prepped.append(batcher.prepare(scene, *self.geometries[n]))
                good.append((n, msg, t0))
            except (SarAtdError, ValueError) as err:
                self.rejected[n] += 1
                self._reject(f"{n} scene", err)
        if not prepped:
            return
        try:
            dets: list[Any] = batcher.detect_prepared(prepped)
        except (SarAtdError, ValueError):  # a scene the tiler refuses: one by one then
            dets = []
            for (n, _m, _t), p in zip(good, prepped):
                try:
                    dets.append(batcher.detect_prepared([p])[0])
                except (SarAtdError, ValueError) as err:
                    self.rejected[n] += 1
                    self._reject(f"{n} scene", err)
                    dets.append(None)
        self.batches_run += 1
        for (n, msg, t0), d in zip(good, dets):
            if d is None:
                continue
            self.published[n] += 1
            self.publish(msg.header, d, self.published[n], t0, pub=self.pubs[n])

    def _diag_values(self) -> dict[str, Any]:
        vals = super()._diag_values()
        for n in self.streams.namespaces:
            s = n.strip("/")
            vals[f"received_{s}"] = self.received[n]
            vals[f"published_{s}"] = self.published[n]
            vals[f"dropped_{s}"] = self.dropped[n]
            vals[f"rejected_{s}"] = self.rejected[n]
            vals[f"queue_{s}"] = len(self.queues[n])
        vals["cross_stream_batches"] = self.batches_run
        return vals


def main(args: list[str] | None = None) -> int:
    return run_node("multi_scene_detector", MultiStreamDetectorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
