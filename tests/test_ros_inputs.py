"""Bad ground truth and damaged bags sent to live nodes over DDS.

Real ``scene_detector`` and ``evaluator`` processes (rclpy, Fast DDS, host-only discovery,
fresh domain id) get scenes and ground truth from a test-side node acting as the player:
a scene with no ground truth, then ground truth with NaN boxes, inverted boxes, boxes
outside the image and an array whose length is not a multiple of 4, each followed by a
good scene. For each: the evaluator logs one line naming the problem, its counter on
``/diagnostics`` goes up by one, it keeps running and the next good scene is evaluated.
A truncated mcap bag replayed by ``sar-atd run``: the player says how far it got, ends the
stream, and the scenes it sent are evaluated and accounted for.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ros_probe import ProbeNode

pytest.importorskip("rclpy", reason="ROS 2 Python wheels not installed (make install)")
pytest.importorskip("sar_atd_msgs", reason="sar_atd_msgs not built (make install)")

H, W = 128, 160
GOOD_BOX = [70.0, 50.0, 95.0, 62.0]

# (name, boxes_px of the ground truth, text of the evaluator's one log line)
BAD_GT = [
    ("NaN box", [np.nan, 1.0, 5.0, 5.0], "has non-finite boxes (NaN/inf)"),
    ("x1 < x0", [50.0, 10.0, 20.0, 30.0], "has inverted boxes (x1 < x0 or y1 < y0)"),
    ("outside the image", [150.0, 100.0, 400.0, 300.0], f"boxes outside the {H}x{W} scene"),
    ("wrong array length", [1.0, 2.0, 3.0, 4.0, 5.0], "has 5 values (not a multiple of 4)"),
]


class _Player(ProbeNode):
    """Test-side node in the player's place: scenes + ground truth, evaluator diagnostics."""

    def __init__(self, domain_id: int) -> None:
        super().__init__(domain_id, "test_player")
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sar_atd_msgs.msg import GroundTruth, SceneDetections
        from sensor_msgs.msg import Image

        transient = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                               durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub_scene = self.node.create_publisher(Image, "/sar/scene", 10)
        self.pub_gt = self.node.create_publisher(GroundTruth, "/sar/ground_truth", transient)
        self.dets: list[Any] = []
        self.node.create_subscription(SceneDetections, "/sar/detections", self.dets.append,
                                      transient)
        self.diag: dict[str, str] = {}  # the evaluator's
        self.diags: dict[str, dict[str, str]] = {}  # every node's, by full name
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.seq = 0
        self._GroundTruth = GroundTruth

    def _on_diag(self, msg: Any) -> None:
        for st in msg.status:
            self.diags[st.name] = {kv.key: kv.value for kv in st.values} | {
                "message": st.message}
            if st.name == "/sar/evaluator":
                self.diag = self.diags[st.name]

    def send(self, boxes: list[float] | None, size: tuple[int, int] = (H, W),
             scene: bool = True) -> None:
        """One good scene with ``boxes`` as its ground truth (None: no ground truth);
        ``scene`` False sends only the ground truth (a scene lost in transport)."""
        from sensor_msgs.msg import Image

        from sar_atd_ros.image import fill_image

        self.seq += 1
        rng = np.random.default_rng(self.seq)
        a = rng.rayleigh(1.0, size).astype(np.float32)
        a[50:62, 70:95] *= 8.0
        img = fill_image(Image(), a)
        img.header.stamp = self.node.get_clock().now().to_msg()
        if boxes is not None:
            gt = self._GroundTruth(header=img.header, sequence=self.seq, scene_name=f"s{self.seq}",
                                   scene_height=size[0], scene_width=size[1])
            gt.boxes_px = [float(v) for v in boxes]
            gt.labels = ["target"] * (len(boxes) // 4)
            self.pub_gt.publish(gt)
        if scene:
            self.pub_scene.publish(img)

    def counter(self, key: str) -> int:
        return int(self.diag.get(key, -1))


def _start(module: str, params: list[str], log: Path, env: dict[str, str]) -> Any:
    args = [a for p in params for a in ("-p", p)]
    with open(log, "wb") as fh:
        return subprocess.Popen([sys.executable, "-m", module, "--ros-args", "-r",
                                 "__ns:=/sar", *args], env=env, stdout=fh,
                                stderr=subprocess.STDOUT)


def _graph(tmp_path: Path, queue_depth: int) -> tuple[list[Any], _Player, Any]:
    """scene_detector (CFAR, scene queue of ``queue_depth``) + evaluator on a fresh domain,
    and the test-side player: (processes, player, tail of both logs); the logs are
    ``scene_detector.log`` and ``evaluator.log`` in ``tmp_path``."""
    from sar_atd_ros.runner import ros_env

    env = ros_env()
    det_log, eval_log = tmp_path / "scene_detector.log", tmp_path / "evaluator.log"
    procs = [_start("sar_atd_ros.scene_detector",
                    ["detector.model:=cfar", "detector.device:=cpu", "tiler.device:=cpu",
                     "qos.scene.depth:=10", f"node.queue_depth:={queue_depth}"], det_log, env),
             _start("sar_atd_ros.evaluator_node",
                    ["report.exit_on_stream_end:=false", "report.publish_period_s:=0.2"],
                    eval_log, env)]

    def logs() -> str:
        return f"{det_log.read_text()[-1500:]}\n{eval_log.read_text()[-1500:]}"

    return procs, _Player(int(env["ROS_DOMAIN_ID"])), logs


@pytest.mark.slow
def test_missing_and_malformed_ground_truth_are_counted_logged_and_survived(
        tmp_path: Path) -> None:
    from sar_atd_ros.runner import stop_processes

    procs, player, logs = _graph(tmp_path, queue_depth=10)

    try:
        n = player.node
        assert player.spin_until(lambda: n.count_subscribers("/sar/scene") >= 1
                                 and n.count_subscribers("/sar/ground_truth") >= 1
                                 and n.count_publishers("/sar/detections") >= 1
                                 and "scenes_evaluated" in player.diag, 90), logs()
        player.send(GOOD_BOX)
        assert player.spin_until(lambda: player.counter("scenes_evaluated") == 1, 60), logs()

        # a scene with no ground truth, then a good one: counted once the next ground
        # truth shows none is coming, and the good one is evaluated
        player.send(None)
        player.send(GOOD_BOX)
        assert player.spin_until(lambda: player.counter("scenes_evaluated") == 2
                                 and player.counter("detections_without_gt") == 1, 60), \
            f"{player.diag}\n{logs()}"

        for k, (name, boxes, _line) in enumerate(BAD_GT, start=1):
            player.send(boxes)
            player.send(GOOD_BOX)
            assert player.spin_until(
                lambda k=k: player.counter("scenes_malformed") == k
                and player.counter("scenes_evaluated") == 2 + k, 60), \
                f"{name}: {player.diag}\n{logs()}"
            assert all(p.poll() is None for p in procs), f"{name}: a node died\n{logs()}"
        # nothing else was put down as missing ground truth or lost
        assert player.spin_until(lambda: player.counter("scenes_published") == player.seq, 10)
        assert player.counter("detections_without_gt") == 1, player.diag
        assert player.counter("missing_without_ground_truth") == 1, player.diag
        assert player.counter("missing_rejected_malformed") == len(BAD_GT), player.diag
        assert player.counter("missing_unaccounted") == 0, player.diag
        assert player.diag["waiting_limit"] == "256" and "ground_truth_waiting" in player.diag
        assert len(player.dets) == player.seq  # the detector processed every scene
    finally:
        player.close()
        stop_processes(procs, 30)
    text = (tmp_path / "evaluator.log").read_text()
    assert "Traceback" not in text
    assert text.count("has no ground truth: not evaluated") == 1, text
    for name, _boxes, line in BAD_GT:
        assert text.count(line) == 1, f"{name}: '{line}' logged {text.count(line)} times"


@pytest.mark.slow
def test_overload_drops_and_transport_losses_are_told_apart_and_add_up(
        tmp_path: Path) -> None:
    """A scene whose ground truth came but which never reached the detector is lost in
    transport; a burst of large scenes into a detector with a one-scene queue drops the
    oldest ones (counted, one log line); the evaluator's reasons add up to every scene."""
    from sar_atd_ros.runner import stop_processes

    procs, player, logs = _graph(tmp_path, queue_depth=1)

    try:
        n = player.node
        assert player.spin_until(lambda: n.count_subscribers("/sar/scene") >= 1
                                 and n.count_publishers("/sar/detections") >= 1
                                 and "scenes_evaluated" in player.diag, 90), logs()
        player.send(GOOD_BOX)
        assert player.spin_until(lambda: player.counter("scenes_evaluated") == 1, 60), logs()
        player.send(GOOD_BOX, scene=False)  # lost on the way to the detector
        for _ in range(6):
            player.send(GOOD_BOX, size=(1024, 1024))

        def settled() -> bool:  # the 7 scenes that reached the detector: done or dropped
            return (player.counter("scenes_published") == 8
                    and player.counter("scenes_evaluated")
                    + player.counter("missing_dropped_overload") == 7
                    and player.diag.get("missing_lost_in_node") == "0")

        assert player.spin_until(settled, 120), f"{player.diag}\n{logs()}"
        d = player.diag
        assert int(d["missing_lost_in_transport"]) == 1, d
        assert int(d["missing_dropped_overload"]) >= 1, d
        assert int(d["scenes_missing"]) == 1 + int(d["missing_dropped_overload"]), d
        assert d["missing_unaccounted"] == "0", d
        assert all(p.poll() is None for p in procs), logs()
    finally:
        player.close()
        stop_processes(procs, 30)
    text = (tmp_path / "scene_detector.log").read_text()
    assert "dropped (queue_full): queue full (depth 1)" in text
    assert "Traceback" not in text


@pytest.mark.slow
def test_tiler_diagnostics_carry_queues_and_every_counter(tmp_path: Path) -> None:
    """A live tiler: a good and a malformed scene; /diagnostics carries its counters, its
    queue (depth, limit, drops) and QoS depths, and the rejection as a warning."""
    from sar_atd_ros.runner import ros_env, stop_processes
    from tests.test_faults import _image

    env = ros_env()
    log = tmp_path / "tiler.log"
    proc = _start("sar_atd_ros.tiler_node", ["tiler.device:=cpu", "tiler.tile_size:=128",
                                             "tiler.overlap:=32", "node.queue_depth:=3"],
                  log, env)
    player = _Player(int(env["ROS_DOMAIN_ID"]))
    try:
        assert player.spin_until(lambda: player.node.count_subscribers("/sar/scene") >= 1,
                                 60), log.read_text()
        player.send(None)
        player.pub_scene.publish(_image(0, 16, "32FC1", 64, b""))  # zero size: refused
        assert player.spin_until(lambda: player.diags.get("/sar/tiler", {}).get(
            "scenes_received") == "2" and player.diags["/sar/tiler"].get(
            "scenes_malformed") == "1", 60), f"{player.diags}\n{log.read_text()}"
        d = player.diags["/sar/tiler"]
        assert d["scenes_published"] == "1" and int(d["batches_published"]) >= 1
        assert d["scene_queue_limit"] == "3" and d["scene_queue_depth"] == "0"
        for key in ("scene_queue_peak", "scene_queue_wait_max_ms", "scenes_dropped_queue_full",
                    "scenes_dropped_stale", "scenes_dropped_stopped", "scene_qos_depth",
                    "tiles_qos_depth", "processing_ms_p50", "device"):
            assert key in d, key
        assert "zero size" in d["message"]
    finally:
        player.close()
        stop_processes([proc], 30)
    assert "Traceback" not in log.read_text()


def _truncated_bag(path: Path, n: int, keep: float) -> None:
    """An mcap bag of ``n`` scenes cut to ``keep`` of its bytes (a recording that died)."""
    from sar_atd_ros.bag import BagScene, write_bag

    rng = np.random.default_rng(5)
    scenes = []
    for i in range(n):
        a = rng.rayleigh(1.0, (H, W)).astype(np.float32)
        a[40:52, 30 + i:55 + i] *= 8.0
        scenes.append(BagScene(f"s{i}", a, np.array([[30 + i, 40, 55 + i, 52]], np.float32)))
    write_bag(scenes, path, storage="mcap", rate_hz=2.0)
    f = next(path.glob("*.mcap"))
    data = f.read_bytes()
    f.write_bytes(data[:int(len(data) * keep)])


def test_truncated_mcap_is_read_up_to_the_damage(tmp_path: Path) -> None:
    from sar_atd_ros.bag import open_scene_stream
    from sar_atd_ros.errors import BagError

    bag = tmp_path / "bag"
    _truncated_bag(bag, 10, 0.6)
    stream = open_scene_stream(bag)
    assert stream.n_scenes is None
    kinds = []
    with pytest.raises(BagError, match=r"truncated or corrupt: read 6 of \? scenes before: "
                                       r".*cut at byte \d+"):
        for _t, kind, _raw in stream.messages():
            kinds.append(kind)
    assert kinds.count("scene") == 6 and kinds.count("gt") >= 6


@pytest.mark.slow
def test_truncated_bag_replays_what_it_holds_and_stops_cleanly(tmp_path: Path) -> None:
    """``sar-atd run`` on a cut mcap recording: the player logs how far it got and ends the
    stream; the scenes it sent are evaluated and every one is accounted for."""
    from sar_atd_ros.runner import GraphOptions, run_graph

    bag = tmp_path / "bag"
    _truncated_bag(bag, 10, 0.6)
    out = run_graph(GraphOptions(
        bag=bag, detector="cfar", device="cpu", mode="lossless", report=tmp_path / "report",
        log_dir=tmp_path / "logs", timeout_s=300,
        overrides={"evaluator": {"report": {"drain_timeout_s": 10.0, "n_examples": 0}}}))
    s = out["summary"]
    assert "read 6 of ? scenes before" in out["player_error"], out
    assert s["scenes_published"] == 6 and s["scenes_evaluated"] == 6, s
    assert s["scenes_missing_by_reason"]["unaccounted"] == 0
    log = (tmp_path / "logs" / "scene_player.log").read_text()
    assert "bag ended early: 6 scenes published" in log
    assert log.count("truncated or corrupt: read 6 of ? scenes before") == 1
    assert "Traceback" not in log
