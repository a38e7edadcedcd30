"""``recorder`` node: writes topics of the graph to a rosbag2 file with ``rosbags``.

``ros2 bag record`` is not available everywhere (e.g. a pip-only install); this node
subscribes to the topics named in ``recorder.topics`` (relative to its namespace) in raw
(serialized) form and writes the CDR bytes unchanged, with their message definitions, to
``recorder.out`` (a new rosbag2 folder, written beside and renamed on shutdown).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rclpy.node import Node

from sar_atd_ros.common import check_unknown_parameters, declare_section, read_section, run_node
from sar_atd_ros.errors import BagError

TOPIC_TYPES: dict[str, tuple[str, str]] = {
    "detections": ("sar_atd_msgs/msg/SceneDetections", "sar_atd_msgs.msg:SceneDetections"),
    "metrics": ("sar_atd_msgs/msg/Metrics", "sar_atd_msgs.msg:Metrics"),
    "ground_truth": ("sar_atd_msgs/msg/GroundTruth", "sar_atd_msgs.msg:GroundTruth"),
    "scene": ("sensor_msgs/msg/Image", "sensor_msgs.msg:Image"),
}
"""Recordable topics -> (bag type name, Python class)."""


@dataclasses.dataclass
class RecorderConfig:
    """Parameters of the recorder (section ``recorder``).

    Attributes:
        out: the new bag folder (must not exist).
        topics: relative topic names to record (see :data:`TOPIC_TYPES`).
        storage: ``mcap`` or ``sqlite3``.
    """

    out: str = ""
    topics: tuple[str, ...] = ("detections", "metrics")
    storage: str = "mcap"

    def __post_init__(self) -> None:
        unknown = [t for t in self.topics if t not in TOPIC_TYPES]
        if unknown:
            raise ValueError(f"topics {unknown} cannot be recorded; known: {sorted(TOPIC_TYPES)}")
        if self.storage not in ("mcap", "sqlite3"):
            raise ValueError(f"storage must be mcap or sqlite3, got {self.storage!r}")


class Recorder(Node):
    """Raw subscriptions -> rosbags writer (module doc)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__("recorder", **kw)
        import importlib

        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from rosbags.rosbag2 import StoragePlugin, Writer

        from sar_atd_ros.bag import typestore
        from sar_atd_ros.common import TRANSIENT_TOPICS

        declare_section(self, RecorderConfig, "recorder")
        check_unknown_parameters(self)
        self.cfg = read_section(self, RecorderConfig, "recorder")
        if not self.cfg.out:
            raise BagError("recorder: parameter recorder.out is empty")
        self.out = Path(self.cfg.out)
        if self.out.exists():
            raise FileExistsError(f"recorder: output bag {self.out} already exists")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", dir=self.out.parent))
        store = typestore()
        plugin = StoragePlugin.MCAP if self.cfg.storage == "mcap" else StoragePlugin.SQLITE3
        self.writer = Writer(self.tmp / self.out.name, version=9, storage_plugin=plugin)
        self.writer.open()
        self.count = 0
        for topic in self.cfg.topics:
            bag_type, py = TOPIC_TYPES[topic]
            mod, cls = py.split(":")
            msg_cls = getattr(importlib.import_module(mod), cls)
            name = f"{self.get_namespace().rstrip('/')}/{topic}"
            conn = self.writer.add_connection(name, bag_type, typestore=store)
            self.create_subscription(msg_cls, topic, self._writer_for(conn),
                                     QoSProfile(depth=100,
                                                reliability=ReliabilityPolicy.RELIABLE,
                                                durability=(DurabilityPolicy.TRANSIENT_LOCAL
                                                            if topic in TRANSIENT_TOPICS else
                                                            DurabilityPolicy.VOLATILE)),
                                     raw=True)

    def _writer_for(self, conn: Any) -> Any:
        def write(raw: bytes) -> None:
            self.writer.write(conn, time.time_ns(), bytes(raw))
            self.count += 1
        return write

    def finish(self) -> None:
        """Close the bag and move it to ``recorder.out``."""
        self.writer.close()
        shutil.move(str(self.tmp / self.out.name), self.out)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.get_logger().info(f"recorded {self.count} messages to {self.out}")


def main(args: list[str] | None = None) -> int:
    return run_node("recorder", Recorder, args)


if __name__ == "__main__":
    raise SystemExit(main())
