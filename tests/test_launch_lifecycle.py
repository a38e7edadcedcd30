"""The detector as a managed lifecycle node, driven over DDS like the launch file and
``sar-atd run`` drive it: a real ``scene_detector`` process (rclpy, Fast DDS, host-only
discovery, fresh domain id) and a real lifecycle client in this process.

Checked: configure fails cleanly on a missing model file and on a corrupt one (one error
line each, the node keeps running, still *unconfigured*) and succeeds once a valid file is
there; only an active node
advertises ``detections`` and processes scenes; deactivate stops processing; cleanup
releases the model; the transition labels are those the launch file reacts to.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 Python wheels not installed (make install)")
pytest.importorskip("sar_atd_msgs", reason="sar_atd_msgs not built (make install)")

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "sar_atd_ws" / "src" / "sar_atd_ros" / "launch" / "sar_atd.launch.py"
NODE = "/sar/scene_detector"


def _spin_until(client, cond, timeout_s: float) -> bool:  # noqa: ANN001
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        if cond():
            return True
        client.executor.spin_once(timeout_sec=0.1)
    return cond()


def _launch_state_labels() -> set[str]:
    """Lifecycle state labels the launch file's OnStateTransition handlers wait for."""
    tree = ast.parse(LAUNCH.read_text())
    return {kw.value.value for c in ast.walk(tree) if isinstance(c, ast.Call)
            and getattr(c.func, "id", "") == "OnStateTransition" for kw in c.keywords
            if kw.arg in ("start_state", "goal_state")}


@pytest.mark.slow
def test_detector_lifecycle_over_dds(tmp_path: Path) -> None:
    """configure fails on a missing and on a corrupt model and succeeds once a valid file
    is there; activate, deactivate and cleanup start, stop and release as documented."""
    from diagnostic_msgs.msg import DiagnosticArray
    from lifecycle_msgs.msg import TransitionEvent
    from sar_atd_msgs.msg import SceneDetections
    from sensor_msgs.msg import Image

    from sar_atd_ros.image import fill_image
    from sar_atd_ros.lifecycle import LifecycleClient
    from sar_atd_ros.runner import ros_env, stop_processes

    model = tmp_path / "models" / "detector.pt"
    env = ros_env()
    log = tmp_path / "node.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sar_atd_ros.scene_detector", "--ros-args", "-r",
             "__ns:=/sar", "-p", "node.autostart:=false", "-p", f"detector.model:={model}",
             "-p", "detector.device:=cpu", "-p", "tiler.device:=cpu",
             "-p", "tiler.batch_size:=1"],
            env=env, stdout=fh, stderr=subprocess.STDOUT)
    client = LifecycleClient(int(env["ROS_DOMAIN_ID"]), name="lifecycle_test")
    node = client.node
    events: list[tuple[str, str]] = []
    dets: list[SceneDetections] = []
    diags: list[dict[str, str]] = []
    node.create_subscription(TransitionEvent, f"{NODE}/transition_event",
                             lambda m: events.append((m.start_state.label,
                                                      m.goal_state.label)), 10)
    node.create_subscription(SceneDetections, "/sar/detections", dets.append, 10)
    node.create_subscription(
        DiagnosticArray, "/diagnostics",
        lambda m: diags.extend({kv.key: kv.value for kv in s.values} | {"message": s.message}
                               for s in m.status if s.name.endswith("scene_detector")), 10)
    scene_pub = node.create_publisher(Image, "/sar/scene", 2)
    try:
        assert client.wait_for(NODE, 60), f"node never came up: {log.read_text()}"
        assert client.get_state(NODE) == "unconfigured"

        # missing model: configure fails, node alive and unconfigured, reported once
        assert client.change(NODE, "configure") is False
        assert proc.poll() is None, log.read_text()
        assert client.get_state(NODE) == "unconfigured"
        assert _spin_until(client, lambda: any("configure failed" in d.get("message", "")
                                               for d in diags), 10), diags[-3:]

        # a corrupt file: configure fails the same way
        model.parent.mkdir(parents=True)
        model.write_bytes(b"not a torch checkpoint" * 64)
        assert client.change(NODE, "configure") is False
        assert proc.poll() is None and client.get_state(NODE) == "unconfigured"

        # a valid file: configure succeeds; inactive = no detections publisher yet
        shutil.copy(ROOT / "models" / "default.pt", model)
        assert client.change(NODE, "configure") is True
        assert client.get_state(NODE) == "inactive"
        assert node.count_publishers("/sar/detections") == 0
        assert node.count_subscribers("/sar/scene") == 0

        # active: advertises detections, processes a scene
        assert client.change(NODE, "activate") is True
        assert _spin_until(client, lambda: node.count_subscribers("/sar/scene") == 1
                           and node.count_publishers("/sar/detections") == 1, 15)
        rng = np.random.default_rng(0)
        scene = rng.rayleigh(1.0, (256, 256)).astype(np.float32)
        scene[100:112, 80:105] *= 8.0
        msg = fill_image(Image(), scene)
        scene_pub.publish(msg)
        assert _spin_until(client, lambda: len(dets) == 1, 60), log.read_text()[-2000:]
        assert dets[0].backend == "torch" and len(dets[0].model_hash) > 0

        # inactive: processing stopped (subscription and publisher gone)
        assert client.change(NODE, "deactivate") is True
        assert _spin_until(client, lambda: node.count_subscribers("/sar/scene") == 0
                           and node.count_publishers("/sar/detections") == 0, 15)
        scene_pub.publish(msg)
        _spin_until(client, lambda: False, 1.0)
        assert len(dets) == 1

        # cleanup: model released, back to unconfigured; diagnostics say so
        assert client.change(NODE, "cleanup") is True
        assert client.get_state(NODE) == "unconfigured"
        n_diag = len(diags)
        assert _spin_until(client, lambda: any(d.get("lifecycle_state") == "unconfigured"
                                               for d in diags[n_diag:]), 10)
        assert proc.poll() is None
        _spin_until(client, lambda: len(events) >= 8, 5)
    finally:
        client.close()
        stop_processes([proc], 30)
    text = log.read_text()
    assert proc.returncode == 0, text[-2000:]
    failures = [ln for ln in text.splitlines() if "configure failed" in ln]
    assert len(failures) == 2, text
    assert "model file not found" in failures[0] and str(model) in failures[1], failures
    assert "Traceback" not in text
    assert "cleaned up: model released" in text
    # the launch file reacts to transitions with these labels: they are the real ones
    assert ("configuring", "unconfigured") in events and ("configuring", "inactive") in events
    assert _launch_state_labels() <= {label for e in events for label in e}
