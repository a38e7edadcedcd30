"""``tiler`` node (split layouts): ``scene`` (sensor_msgs/Image) -> ``tiles`` (TileBatch).

Wraps :class:`sar_atd.tiling.Tiler` (the tiler of the one-process ``scene_detector`` and of
``sar-atd eval --tile``): the scene is rendered to 8 bits on the device (GPU when present)
and cut into overlapping tiles; each batch goes out with the scene's header, its offsets
and the batch count, so the ``detector`` node can merge the scene back. Scenes are tiled
in their own geometry (the pixel-spacing resampling of ``scene_detector`` is not applied).

Scenes go through a bounded queue processed by a worker thread, as in ``scene_detector``
(:mod:`sar_atd_ros.queued`); ``/diagnostics`` carries every counter, the queue depths and
the processing time.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from rclpy.node import Node

from sar_atd.config import TilerConfig
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
from sar_atd_ros.queued import QueuedSceneInput


@dataclasses.dataclass
class TilerNodeConfig:
    """Node-level parameters of the tiler (section ``node``).

    Attributes:
        max_scene_pixels: scenes above this many pixels are refused before conversion.
        pixel_spacing_m: (row, column) metres per pixel carried in the batches (0 = unknown).
        queue_depth: scenes waiting for tiling (the oldest is dropped when full).
        max_queue_age_s: a scene that waited longer is dropped as stale (0 = no limit).
    """

    max_scene_pixels: int = DEFAULT_MAX_PIXELS
    pixel_spacing_m: tuple[float, float] = (0.0, 0.0)
    queue_depth: int = 2
    max_queue_age_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_scene_pixels < 1:
            raise ValueError(f"max_scene_pixels must be >= 1, got {self.max_scene_pixels}")
        if self.queue_depth < 1:
            raise ValueError(f"queue_depth must be >= 1, got {self.queue_depth}")
        if not self.max_queue_age_s >= 0:
            raise ValueError(f"max_queue_age_s must be >= 0, got {self.max_queue_age_s}")
        if any(v < 0 for v in self.pixel_spacing_m):
            raise ValueError(f"pixel_spacing_m must be >= 0, got {self.pixel_spacing_m}")


class TilerNode(QueuedSceneInput, Node):
    """Scenes in, tile batches out (module doc)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__("tiler", **kw)
        from sar_atd_msgs.msg import TileBatch
        from sensor_msgs.msg import Image

        from sar_atd.tiling import Tiler

        declare_section(self, TilerConfig, "tiler")
        declare_section(self, TilerNodeConfig, "node")
        self.qos = qos = declare_qos(self, ["scene", "tiles"])
        check_unknown_parameters(self)
        self.cfg = read_section(self, TilerConfig, "tiler")
        self.node_cfg = read_section(self, TilerNodeConfig, "node")
        self.tiler = Tiler(self.cfg)
        self._Msg = TileBatch
        self.pub = self.create_publisher(TileBatch, "tiles", qos["tiles"])
        self.n_in = self.n_malformed = self.n_batches = self.n_out = 0
        self.last_error = ""
        self.done, self.exit_code = False, 0
        self.proc_ms: list[float] = []
        self._init_queue(self.node_cfg.queue_depth, self.node_cfg.max_queue_age_s)
        self._start_worker()
        self.create_subscription(Image, "scene", self._enqueue, qos["scene"])
        self.diag = Diagnostics(self, self._diag_values)
        self.get_logger().info(f"tiler: {self.cfg.tile_size} px tiles, overlap "
                               f"{self.cfg.overlap}, batch {self.cfg.batch_size}, device "
                               f"{self.tiler.device}")

    def _diag_values(self) -> dict[str, Any]:
        ms = sorted(self.proc_ms[-200:])
        return {"scenes_received": self.n_in, "scenes_published": self.n_out,
                "scenes_malformed": self.n_malformed, "batches_published": self.n_batches,
                "processing_ms_p50": f"{ms[len(ms) // 2]:.1f}" if ms else "",
                "scene_qos_depth": self.qos["scene"].depth,
                "tiles_qos_depth": self.qos["tiles"].depth, **self._queue_values(),
                "device": str(self.tiler.device), "warn": self.last_error}

    def finish(self) -> None:
        """Stop the worker before the node is destroyed."""
        self._stop_worker()

    def _process(self, seq: int, msg: Any, t_in: float) -> None:
        from sar_atd_ros.convert import fill_tile_batch
        from sar_atd_ros.image import image_to_array

        t0 = time.perf_counter()
        try:
            scene = image_to_array(msg, self.node_cfg.max_scene_pixels)
            prepared = self.tiler.prepare(scene)
        except (SarAtdError, ValueError) as err:
            self.n_malformed += 1
            self.last_error = f"scene {seq}: {err}"
            self.get_logger().error(f"rejected scene {seq}: {err}")
            return
        h, w = prepared.hw
        n_batches = -(-len(self.tiler.grid(h, w)) // self.cfg.batch_size)
        for i, batch in enumerate(self.tiler.batches(prepared)):
            out = fill_tile_batch(self._Msg(), msg.header, seq, batch, i, n_batches,
                                  tuple(self.node_cfg.pixel_spacing_m))
            self.pub.publish(out)
            self.n_batches += 1
        self.n_out += 1
        self.proc_ms.append((time.perf_counter() - t0) * 1e3)
        del self.proc_ms[:-1000]


def main(args: list[str] | None = None) -> int:
    return run_node("tiler", TilerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
