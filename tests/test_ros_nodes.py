"""The node graph for real: rclpy nodes in separate processes over Fast DDS (host-only
discovery, fresh domain id), on a small bag made in ``tmp_path``.

* player -> tiler -> detector -> evaluator (split layout, CFAR): every scene evaluated, the
  recorded detections equal the same library calls in-process, the report's AP equals
  ``sar_atd.metrics.evaluate`` on them;
* ``sar-atd run`` with a missing model exits 1 naming the node;
* every node refuses bad parameter values at start-up with one clear line (exit 2).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="ROS 2 Python wheels not installed (make install)")
pytest.importorskip("sar_atd_msgs", reason="sar_atd_msgs not built (make install)")

from sar_atd_ros.bag import BagScene, read_bag_detections, read_bag_scenes, write_bag  # noqa: E402
from sar_atd_ros.runner import GraphOptions, offline_scene_detector, ros_env, run_graph  # noqa: E402


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 320 x 700 float32 amplitude scenes (Rayleigh clutter, bright 12 x 25 px
    targets, some across the tile seam at x = 512) and their boxes."""
    rng = np.random.default_rng(0)
    scenes = []
    for i in range(3):
        a = rng.rayleigh(0.0118, (320, 700)).astype(np.float32)  # renders at ~30
        boxes = []
        for x, y in ((60 + 30 * i, 40), (500, 150), (300, 250 - 10 * i)):
            a[y:y + 12, x:x + 25] *= 8.0
            boxes.append([x, y, x + 25, y + 12])
        scenes.append(BagScene(f"scene{i}", a, np.array(boxes, np.float32)))
    out = tmp_path_factory.mktemp("bag") / "small"
    write_bag(scenes, out, storage="mcap", rate_hz=5.0)
    return out


@pytest.mark.slow
def test_split_graph_over_dds_equals_in_process(small_bag: Path, tmp_path: Path) -> None:
    """player -> tiler -> detector -> evaluator: all 3 scenes evaluated, detections equal the
    in-process SceneDetector's (boxes within 1e-3 px), report AP equal to evaluate()."""
    from sar_atd.metrics import evaluate

    result = run_graph(GraphOptions(bag=small_bag, detector="cfar", mode="lossless",
                                    layout="split", report=tmp_path / "report",
                                    record=tmp_path / "rec", device="cpu", timeout_s=240,
                                    overrides={n: {"tiler": {"device": "cpu"}}
                                               for n in ("tiler", "detector")}))
    s = result["summary"]
    assert s["scenes_evaluated"] == 3 and s["scenes_missing"] == 0
    assert s["scenes_malformed"] == 0 and s["latency_p50_ms"] > 0
    graph = read_bag_detections(tmp_path / "rec")
    sd = offline_scene_detector(node="detector", detector="cfar")
    sd.tiler.device = __import__("torch").device("cpu")
    scenes = read_bag_scenes(small_bag)
    offline = [sd.detect(img) for img, _b, _n in scenes]
    assert len(graph) == len(offline) == 3
    for (gb, gs), off in zip(graph, offline):
        assert gb.shape == off.boxes.shape
        assert np.allclose(gb, off.boxes, atol=1e-3) and np.allclose(gs, off.scores, atol=1e-5)
    ref = evaluate([o.to_detections() for o in offline], [b for _i, b, _n in scenes],
                   iou_thresholds=(0.25, 0.5, 0.7))
    for key in ("AP25", "AP50", "AP70"):
        assert abs(s[key] - ref[key]) < 1e-9
    assert s["AP25"] > 0.9  # the bright targets are found
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["summary"]["scenes_evaluated"] == 3
    assert (tmp_path / "report" / "pr_curves.png").is_file()


def test_run_with_missing_model_names_the_node(small_bag: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    from sar_atd_training.cli import main

    rc = main(["run", "--bag", str(small_bag), "--detector", str(tmp_path / "nope.pt"),
               "--timeout", "120"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "node 'scene_detector' failed" in err and "model file not found" in err


BAD_PARAMS = [
    ("scene_detector", "tiler.tile_size:=8", "tile_size must be >= 32"),
    ("scene_detector", "tiler.bogus:=1", "unknown parameter(s) ['tiler.bogus']"),
    ("detector", "detector.backend:=caffe", "backend must be"),
    ("tiler", "tiler.overlap:=700", "overlap must be in [0, tile_size)"),
    ("evaluator", "evaluator.iou_thresholds:=[0.5,1.5]", "iou_thresholds must be"),
    ("scene_player", "player.mode:=fast", "mode must be one of"),
    ("scene_player", "qos.scene.reliability:=sometimes", "reliability must be"),
]


def test_nodes_refuse_bad_parameters_at_start_up(tmp_path: Path) -> None:
    """Each node exits 2 with one line naming the bad parameter (no traceback)."""
    from sar_atd_ros.runner import NODE_MODULES

    env = ros_env()
    procs = []
    for node, param, _match in BAD_PARAMS:
        cmd = [sys.executable, "-m", NODE_MODULES[node], "--ros-args", "-r", "__ns:=/sar",
               "-p", param]
        if "detector" in node:
            cmd += ["-p", "detector.model:=cfar"]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    for (node, param, match), p in zip(BAD_PARAMS, procs):
        out, err = p.communicate(timeout=120)
        assert p.returncode == 2, f"{node} {param}: rc {p.returncode}\n{err}\n{out}"
        assert match in err, f"{node} {param}: {err}"
        assert "Traceback" not in err
