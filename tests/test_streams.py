"""Several SAR streams through one detector (``multi_scene_detector``).

* the cross-stream batcher (tiles of several scenes in shared inference batches) gives each
  scene exactly the detections of ``SceneDetector.detect`` on it alone, with its own
  stream's geometry (pixel spacing, radar side), or refuses that scene alone;
* over DDS, two streams (namespaces) into one live node: each stream's detections come
  back on its own topic and equal the in-process ones of its own scene.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 Python wheels not installed (make install)")
pytest.importorskip("sar_atd_msgs", reason="sar_atd_msgs not built (make install)")


def _scenes() -> list[np.ndarray]:
    """Three float32 scenes of different sizes (one and several tiles), distinct targets."""
    rng = np.random.default_rng(5)
    out = []
    for i, (h, w) in enumerate(((200, 300), (700, 500), (256, 256))):
        a = rng.rayleigh(1.0, (h, w)).astype(np.float32)
        for k in range(3):
            y, x = 20 + 60 * k + 7 * i, 30 + 50 * k + 11 * i
            a[y:y + 12, x:x + 25] *= 8.0
        out.append(a)
    return out


def _scene_detector(batch_size: int) -> Any:
    from sar_atd.config import SceneDetectorConfig, TilerConfig
    from sar_atd.runtime import resolve_detector
    from sar_atd.scene import SceneDetector

    det, _ = resolve_detector("cfar", device="cpu")
    return SceneDetector(det, TilerConfig(tile_size=320, overlap=64, batch_size=batch_size,
                                          device="cpu", amplitude_ref=0.0),
                         SceneDetectorConfig())


@pytest.mark.parametrize("batch_size", [1, 8])
def test_cross_stream_batches_equal_one_scene_at_a_time(batch_size: int) -> None:
    """Per scene: same boxes, scores, tiles and counts as SceneDetector.detect alone."""
    from sar_atd_ros.multistream import CrossStreamBatcher

    sd = _scene_detector(batch_size)
    scenes = _scenes()
    together = CrossStreamBatcher(sd).detect(scenes)
    assert len(together) == len(scenes)
    for scene, got in zip(scenes, together):
        want = sd.detect(scene)
        assert len(want) > 0
        np.testing.assert_array_equal(got.boxes, want.boxes)
        np.testing.assert_array_equal(got.scores, want.scores)
        np.testing.assert_array_equal(got.tile_index, want.tile_index)
        assert (got.n_tiles, got.n_raw, got.scene_hw) == (want.n_tiles, want.n_raw,
                                                          want.scene_hw)


def test_cross_stream_batches_keep_each_streams_geometry() -> None:
    """Scenes of different pixel spacings and radar sides in one batch: each gets the
    detections ``SceneDetector.detect`` gives it with its own geometry (resampled/rotated
    to the model's record and back), and a geometry out of reach is refused for that
    scene alone, before any tile joins the batch."""
    from sar_atd.scene import GeometryError
    from sar_atd_ros.multistream import CrossStreamBatcher

    sd = _scene_detector(8)
    model_sp = tuple(getattr(sd.info, "pixel_spacing_m", (0.2021, 0.2031)))
    scenes = _scenes()
    geoms = [((2 * model_sp[0], 2 * model_sp[1]), None),  # coarser: resampled up
             (None, "left"),                               # rotated a quarter turn
             ((0.5 * model_sp[0], model_sp[1]), "top")]    # both
    batcher = CrossStreamBatcher(sd)
    together = batcher.detect(scenes, geoms)
    for scene, (sp, orient), got in zip(scenes, geoms, together):
        want = sd.detect(scene, sp, orient)
        assert len(want) > 0 and got.scene_hw == scene.shape
        np.testing.assert_array_equal(got.boxes, want.boxes)
        np.testing.assert_array_equal(got.scores, want.scores)
    # CFAR finds the same boxes in a rotated scene, but in other tiles: it was rotated
    np.testing.assert_array_equal(together[1].tile_index, sd.detect(scenes[1], None,
                                                                     "left").tile_index)
    assert not np.array_equal(together[1].tile_index, sd.detect(scenes[1]).tile_index)
    with pytest.raises(GeometryError, match="too far from the model's"):
        batcher.prepare(scenes[0], (100 * model_sp[0], model_sp[1]), None)


def test_streams_config_geometry_per_stream() -> None:
    from sar_atd_ros.multistream import StreamsConfig

    cfg = StreamsConfig(namespaces=("/a", "/b"), pixel_spacing_m=(0.3, 0.3, 0.0, 0.0),
                        orientations=("left", ""))
    assert cfg.geometry(0, (None, None)) == ((0.3, 0.3), "left")
    assert cfg.geometry(1, ((0.1, 0.1), "top")) == (None, None)  # 0, 0 / "" = the model's
    assert StreamsConfig(namespaces=("/a",)).geometry(0, ((0.1, 0.1), "top")) == (
        (0.1, 0.1), "top")  # node-level values when no per-stream lists
    with pytest.raises(ValueError, match="two values .* per stream"):
        StreamsConfig(namespaces=("/a", "/b"), pixel_spacing_m=(0.3, 0.3))
    with pytest.raises(ValueError, match="one per stream"):
        StreamsConfig(namespaces=("/a", "/b"), orientations=("left",))
    with pytest.raises(ValueError, match="orientations must be"):
        StreamsConfig(namespaces=("/a",), orientations=("up",))


@pytest.mark.slow
def test_two_streams_share_one_detector_over_dds(tmp_path: Path) -> None:
    """/s1 and /s2 scenes into one multi_scene_detector: each stream's detections on its
    own topic, equal to the in-process detections of its own scene."""
    import os

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sar_atd_msgs.msg import SceneDetections
    from sensor_msgs.msg import Image

    from sar_atd_ros.image import fill_image
    from sar_atd_ros.runner import ros_env, stop_processes

    env = ros_env()
    log = tmp_path / "multi.log"
    params = tmp_path / "params.yaml"
    params.write_text(
        "/**/multi_scene_detector:\n  ros__parameters:\n"
        "    tiler: {tile_size: 320, overlap: 64, batch_size: 4, device: cpu,"
        " amplitude_ref: 0.0}\n"
        "    detector: {model: cfar, device: cpu}\n"
        "    streams: {namespaces: [/s1, /s2], max_queue: 2}\n")
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "sar_atd_ros.multistream",
                                 "--ros-args", "--params-file", str(params)],
                                env=env, stdout=fh, stderr=subprocess.STDOUT)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=int(env["ROS_DOMAIN_ID"]))
    node = rclpy.create_node("streams_probe", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    got: dict[str, list[Any]] = {"/s1": [], "/s2": []}
    for ns in got:
        node.create_subscription(SceneDetections, f"{ns}/detections", got[ns].append, 10)
    pubs = {ns: node.create_publisher(Image, f"{ns}/scene", 10) for ns in got}

    def spin_until(cond: Any, timeout_s: float) -> bool:
        t_end = time.monotonic() + timeout_s
        while time.monotonic() < t_end and not cond():
            ex.spin_once(timeout_sec=0.05)
        return bool(cond())

    scenes = _scenes()
    try:
        assert spin_until(lambda: all(node.count_publishers(f"{ns}/detections") == 1
                                      for ns in got), 60), log.read_text()
        pubs["/s1"].publish(fill_image(Image(), scenes[0]))
        pubs["/s2"].publish(fill_image(Image(), scenes[1]))
        pubs["/s1"].publish(fill_image(Image(), scenes[2]))
        assert spin_until(lambda: len(got["/s1"]) == 2 and len(got["/s2"]) == 1, 60), \
            log.read_text()[-2000:]
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        stop_processes([proc], 30)
    sd = _scene_detector(4)
    for msg, scene in ((got["/s1"][0], scenes[0]), (got["/s2"][0], scenes[1]),
                       (got["/s1"][1], scenes[2])):
        want = sd.detect(scene)
        assert (msg.scene_height, msg.scene_width) == scene.shape
        np.testing.assert_allclose(np.asarray(msg.boxes_px).reshape(-1, 4), want.boxes,
                                   atol=1e-3)
    assert "Traceback" not in log.read_text()
