"""``scene_player`` node: replays a SAR bag (rosbag2, mcap or sqlite3) onto the live topics.

Publishes ``scene`` (sensor_msgs/Image), ``ground_truth`` (sar_atd_msgs/GroundTruth, just
before its scene), ``/clock`` (bag time, for ``use_sim_time``) and at the end ``stream_end``
(std_msgs/UInt64: the last sequence number). Each scene and its ground truth are restamped
with the publish time (the stamp identifies the scene end to end) and numbered 1, 2, ...
(gaps seen downstream reveal scenes lost anywhere in the graph); the bag time is kept in
``GroundTruth.bag_stamp``.

Pacing (``player.mode``): ``realtime`` (bag timing), ``speed`` (bag timing / ``speed``),
``max_rate`` (as fast as possible) or ``lossless`` (the next scene goes out when the
detections of the previous one arrived, so every scene is processed). ``rate_hz`` > 0
replaces the bag timing by a fixed rate. Bags recorded by ``ros2 bag record`` with an
Image topic replay too (ground truth optional; a scene without one is logged and counted).

A bag that turns out truncated or corrupt mid-way (or an mcap recording cut short, read
record by record) is replayed up to the damage: the player logs how far it got (``read 7
of ? scenes before: <why>``), publishes ``stream_end`` so the scenes already sent are
processed and accounted for, and exits with code 3 (:data:`BAG_ERROR_EXIT`).
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from rclpy.node import Node

from sar_atd_ros.common import (
    STREAM_END_TOPIC,
    Diagnostics,
    check_unknown_parameters,
    declare_qos,
    declare_section,
    read_section,
    run_node,
    stamp_ns,
)
from sar_atd_ros.errors import BAG_ERROR_EXIT, BagError

MODES = ("realtime", "speed", "max_rate", "lossless")


@dataclasses.dataclass
class PlayerConfig:
    """Parameters of the scene player (section ``player``).

    Attributes:
        bag: rosbag2 folder or file to replay.
        mode: ``realtime`` | ``speed`` | ``max_rate`` | ``lossless`` (module doc).
        speed: playback speed factor of ``speed`` mode (> 0).
        rate_hz: fixed scene rate instead of the bag timing (0 = bag timing).
        loop: replay the bag again and again.
        max_scenes: stop after this many scenes (0 = all).
        scene_topic: bag topic of the scenes ("" = the only sensor_msgs/Image topic).
        ground_truth_topic: bag topic of the ground truth ("" = the only GroundTruth topic).
        wait_subscribers: subscribers of ``scene`` to wait for before the first scene.
        wait_ground_truth_subscribers: subscribers of ``ground_truth`` to wait for.
        wait_detections_publishers: publishers of ``detections`` to wait for (a detector
            creates it once its model is loaded).
        wait_timeout_s: give up waiting for subscribers after this long (error).
        lossless_timeout_s: in lossless mode, move on (counted) when no detections came
            this long (long: a CPU detector can take minutes on a large scene).
        linger_s: time kept alive after ``stream_end`` so reliable delivery completes (a
            sample lost in transport is repaired after the writer's next heartbeat, ~3 s
            in Fast DDS; the writer must still exist then).
        exit_at_end: stop the node when the bag ends (else keep ``stream_end`` available).
    """

    bag: str = ""
    mode: str = "realtime"
    speed: float = 1.0
    rate_hz: float = 0.0
    loop: bool = False
    max_scenes: int = 0
    scene_topic: str = ""
    ground_truth_topic: str = ""
    wait_subscribers: int = 1
    wait_ground_truth_subscribers: int = 0
    wait_detections_publishers: int = 0
    wait_timeout_s: float = 60.0
    lossless_timeout_s: float = 600.0
    linger_s: float = 5.0
    exit_at_end: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        if not self.speed > 0:
            raise ValueError(f"speed must be > 0, got {self.speed}")
        if self.rate_hz < 0:
            raise ValueError(f"rate_hz must be >= 0 (0 = bag timing), got {self.rate_hz}")
        for name in ("max_scenes", "wait_subscribers", "wait_ground_truth_subscribers",
                     "wait_detections_publishers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("wait_timeout_s", "lossless_timeout_s", "linger_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


class ScenePlayer(Node):
    """Replays scenes and ground truth from a bag (module doc)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__("scene_player", **kw)
        from rosgraph_msgs.msg import Clock
        from sar_atd_msgs.msg import GroundTruth, SceneDetections
        from sensor_msgs.msg import Image
        from std_msgs.msg import UInt64

        declare_section(self, PlayerConfig, "player")
        qos = declare_qos(self, ["scene", "ground_truth", "detections", STREAM_END_TOPIC])
        check_unknown_parameters(self)
        self.cfg = read_section(self, PlayerConfig, "player")
        if not self.cfg.bag:
            raise BagError("scene_player: parameter player.bag is empty (the bag to replay)")
        from sar_atd_ros.bag import open_scene_stream

        self.stream = open_scene_stream(Path(self.cfg.bag), self.cfg.scene_topic,
                                        self.cfg.ground_truth_topic)
        self._Image, self._GroundTruth, self._Clock = Image, GroundTruth, Clock
        self.pub_scene = self.create_publisher(Image, "scene", qos["scene"])
        self.pub_gt = self.create_publisher(GroundTruth, "ground_truth", qos["ground_truth"])
        self.pub_clock = self.create_publisher(Clock, "/clock", 1)
        self.pub_end = self.create_publisher(UInt64, STREAM_END_TOPIC, qos[STREAM_END_TOPIC])
        if self.cfg.mode == "lossless":
            self.create_subscription(SceneDetections, "detections", self._on_detections,
                                     qos["detections"])
        ns = self.get_namespace().rstrip("/")
        self._det_topic = f"{ns}/detections"
        self.seq = 0
        self.published_bytes = 0
        self.lossless_timeouts = 0
        self.gt_without_scene = 0
        self.scenes_without_gt = 0
        self.bag_error = ""
        self.done = False
        self.exit_code = 0
        self._awaiting: int | None = None  # stamp (ns) whose detections lossless mode awaits
        self._await_since = 0.0
        self._it = self._events()
        self._pending: tuple[float, Any] | None = None
        self._t_wait0 = time.monotonic()
        self._started = False
        self._t0_wall = 0.0
        self._t0_bag: int | None = None
        self._end_at: float | None = None
        self._stamp_map: OrderedDict[int, tuple[int, int]] = OrderedDict()
        self._gt_buffer: OrderedDict[int, Any] = OrderedDict()
        self.diag = Diagnostics(self, self._diag_values)
        # 10 ms: the pacing resolution (scenes come seconds apart); a faster tick costs a
        # quarter of a core in executor overhead, taken from the detector on small machines
        self.timer = self.create_timer(0.01, self._tick)
        n = self.stream.n_scenes
        self.get_logger().info(f"replaying {self.cfg.bag} ({'?' if n is None else n} scenes, "
                               f"mode {self.cfg.mode})")
        self.has_gt = bool(getattr(self.stream, "gt_conns", True))
        if not self.has_gt:
            self.get_logger().warning(f"{self.cfg.bag} has no ground-truth topic: scenes are "
                                      f"processed, none can be evaluated")
        elif getattr(self.stream, "open_error", ""):
            self.get_logger().warning(f"{self.cfg.bag}: {self.stream.open_error}; reading "
                                      f"its records up to where the recording stops")

    # ---- events -----------------------------------------------------------------------
    def _events(self) -> Any:
        """(bag time ns, kind, raw bytes) in bag order, looping when asked."""
        while True:
            yield from self.stream.messages()
            if not self.cfg.loop:
                return

    def _diag_values(self) -> dict[str, Any]:
        return {"scenes_published": self.seq, "bytes_published": self.published_bytes,
                "lossless_timeouts": self.lossless_timeouts, "mode": self.cfg.mode,
                "scenes_without_ground_truth": self.scenes_without_gt,
                "bag": self.cfg.bag, "bag_error": self.bag_error, "error": self.bag_error}

    def _on_detections(self, msg: Any) -> None:
        if self._awaiting is not None and stamp_ns(msg.header.stamp) == self._awaiting:
            self._awaiting = None

    # ---- main loop ----------------------------------------------------------------------
    def _ready(self) -> bool:
        cfg = self.cfg
        ok = (self.pub_scene.get_subscription_count() >= cfg.wait_subscribers
              and self.pub_gt.get_subscription_count() >= cfg.wait_ground_truth_subscribers
              and self.count_publishers(self._det_topic) >= cfg.wait_detections_publishers)
        if ok:
            return True
        if time.monotonic() - self._t_wait0 > cfg.wait_timeout_s:
            raise BagError(f"scene_player: no subscribers after {cfg.wait_timeout_s:g} s "
                           f"(scene: {self.pub_scene.get_subscription_count()}/"
                           f"{cfg.wait_subscribers}, ground_truth: "
                           f"{self.pub_gt.get_subscription_count()}/"
                           f"{cfg.wait_ground_truth_subscribers}, detections publishers: "
                           f"{self.count_publishers(self._det_topic)}/"
                           f"{cfg.wait_detections_publishers})")
        return False

    def _tick(self) -> None:
        try:
            self._step()
        except BagError as err:
            self.get_logger().error(str(err))
            if not self._started or self._end_at is not None:
                self.exit_code, self.done = 1, True
                return
            # damaged bag mid-way: end the stream so what was sent is accounted for
            self.bag_error, self.exit_code = str(err), BAG_ERROR_EXIT
            self._pending = None
            self._finish_stream()

    def _step(self) -> None:
        cfg = self.cfg
        now = time.monotonic()
        if self._end_at is not None:
            if now >= self._end_at and cfg.exit_at_end:
                self.done = True
            return
        if not self._started:
            if not self._ready():
                return
            self._started = True
            self._t0_wall = now + 1.0  # matched readers settle before the first sample
            return
        if self._awaiting is not None:
            if now - self._await_since < cfg.lossless_timeout_s:
                return
            self.lossless_timeouts += 1
            self.get_logger().warning(f"lossless: no detections for scene {self.seq} after "
                                      f"{cfg.lossless_timeout_s:g} s; moving on")
            self._awaiting = None
        while True:
            if self._pending is None:
                nxt = next(self._it, None)
                if nxt is None or (cfg.max_scenes and self.seq >= cfg.max_scenes):
                    self._finish_stream()
                    return
                t_bag, kind, raw = nxt
                if self._t0_bag is None:
                    self._t0_bag = t_bag
                self._pending = (self._due(t_bag, kind), (t_bag, kind, raw))
            due, (t_bag, kind, raw) = self._pending
            if now < due:
                return
            self._pending = None
            if kind == "gt":
                self._buffer_gt(raw)
                continue
            self._publish_scene(t_bag, raw)
            if cfg.mode == "lossless":
                return
            now = time.monotonic()

    def _due(self, t_bag: int, kind: str) -> float:
        cfg = self.cfg
        if cfg.mode in ("max_rate", "lossless"):
            return 0.0
        if cfg.rate_hz > 0:
            return self._t0_wall + (self.seq if kind == "scene" else 0) / cfg.rate_hz
        speed = cfg.speed if cfg.mode == "speed" else 1.0
        return self._t0_wall + (t_bag - (self._t0_bag or t_bag)) / 1e9 / speed

    def _buffer_gt(self, raw: bytes) -> None:
        from rclpy.serialization import deserialize_message

        gt = deserialize_message(raw, self._GroundTruth)
        self._gt_buffer[stamp_ns(gt.header.stamp)] = gt
        while len(self._gt_buffer) > 64:
            self._gt_buffer.popitem(last=False)
            self.gt_without_scene += 1

    def _publish_scene(self, t_bag: int, raw: bytes) -> None:
        from builtin_interfaces.msg import Time
        from rclpy.serialization import deserialize_message

        img = deserialize_message(raw, self._Image)
        orig = stamp_ns(img.header.stamp)
        self.seq += 1
        stamp = self.get_clock().now().to_msg()
        img.header.stamp = stamp
        gt = self._gt_buffer.pop(orig, None)
        if gt is not None:
            gt.header.stamp = stamp
            gt.header.frame_id = img.header.frame_id
            gt.sequence = self.seq
            gt.bag_stamp = Time(sec=t_bag // 1_000_000_000, nanosec=t_bag % 1_000_000_000)
            self.pub_gt.publish(gt)
        else:
            self.scenes_without_gt += 1
            if self.has_gt:
                self.get_logger().warning(f"scene {self.seq} (bag time {t_bag / 1e9:.3f} s) "
                                          f"has no ground truth in the bag: it is processed, "
                                          f"not evaluated")
        clock = self._Clock()
        clock.clock = Time(sec=t_bag // 1_000_000_000, nanosec=t_bag % 1_000_000_000)
        self.pub_clock.publish(clock)
        if self.cfg.mode == "lossless":
            self._awaiting = stamp_ns(stamp)
            self._await_since = time.monotonic()
        self.pub_scene.publish(img)
        self.published_bytes += len(raw)

    def _finish_stream(self) -> None:
        from std_msgs.msg import UInt64

        self.pub_end.publish(UInt64(data=self.seq))
        self.get_logger().info(f"bag ended{' early' if self.bag_error else ''}: {self.seq} "
                               f"scenes published")
        self._end_at = time.monotonic() + self.cfg.linger_s


def main(args: list[str] | None = None) -> int:
    return run_node("scene_player", ScenePlayer, args)


if __name__ == "__main__":
    raise SystemExit(main())
