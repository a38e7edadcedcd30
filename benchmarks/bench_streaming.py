"""Streaming overhead of the ROS 2 node graph vs the same library calls in one process.

    python -m benchmarks.bench_streaming [--scenes 4] [--size 2048] [--model models/default.pt]

Measured on one bag (default: ``--scenes`` float32 amplitude scenes of ``--size`` px,
Rayleigh clutter with bright targets, written to a temporary folder; or ``--bag``):

* throughput of the graph (``sar-atd run``, lossless replay, separate processes over Fast
  DDS) vs ``SceneDetector.detect`` in this process with the same parameters, for the
  default model and for CFAR (where the graph's own cost shows as added ms/scene), in both
  layouts (one-process ``scene_detector``; separate ``tiler`` + ``detector``);
* equality: the graph's recorded detections vs the in-process ones (same count per scene,
  boxes within 1e-3 px) and AP25/AP50 of both;
* transport: one-way latency of a 2048 x 2048 float32 Image and of a tile batch (4 tiles of
  640 x 640 mono8) between two processes.

Throughput of the graph is the evaluator's steady state: (scenes - 1) / (last - first
detections arrival), so start-up and the first scene's warm-up are excluded; in-process:
scenes / wall time of the detect loop after one warm-up scene.
Lossless replay is serial (one scene in flight), like the in-process loop.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_bag(path: Path, n: int, size: int, seed: int = 0) -> None:
    from sar_atd_ros.bag import BagScene, write_bag

    rng = np.random.default_rng(seed)
    scenes = []
    for i in range(n):
        a = rng.rayleigh(1.0, (size, size)).astype(np.float32)
        boxes = []
        for _ in range(8):
            y, x = int(rng.integers(20, size - 40)), int(rng.integers(20, size - 60))
            a[y:y + 14, x:x + 30] *= 6.0
            boxes.append([x, y, x + 30, y + 14])
        scenes.append(BagScene(f"s{i}", a, np.array(boxes, np.float32)))
    write_bag(scenes, path, rate_hz=1.0)


def in_process(bag: Path, detector: str, node: str) -> tuple[float, list, dict]:
    """(scenes/s, detections, metrics) of SceneDetector.detect on every scene of ``bag``."""
    from sar_atd.metrics import evaluate
    from sar_atd_ros.bag import read_bag_scenes
    from sar_atd_ros.runner import offline_scene_detector

    sd = offline_scene_detector(node=node, detector=detector)
    scenes = read_bag_scenes(bag)
    sd.detect(scenes[0][0])  # warm-up
    t0 = time.perf_counter()
    dets = [sd.detect(img) for img, _b, _n in scenes]
    dt = time.perf_counter() - t0
    m = evaluate([d.to_detections() for d in dets], [b for _i, b, _n in scenes],
                 iou_thresholds=(0.25, 0.5))
    return len(scenes) / dt, dets, m


def graph(bag: Path, detector: str, layout: str, work: Path) -> dict:
    from sar_atd_ros.bag import read_bag_detections
    from sar_atd_ros.runner import GraphOptions, run_graph

    tag = f"{layout}_{Path(detector).stem}"
    res = run_graph(GraphOptions(bag=bag, detector=detector, mode="lossless", layout=layout,
                                 report=work / f"report_{tag}", record=work / f"rec_{tag}",
                                 timeout_s=1800))
    res["detections"] = read_bag_detections(work / f"rec_{tag}")
    return res


def equal(graph_dets: list, offline: list) -> tuple[bool, float]:
    """(same count per scene, max box difference in px)."""
    if len(graph_dets) != len(offline):
        return False, float("inf")
    worst = 0.0
    for (gb, _gs), o in zip(graph_dets, offline):
        if gb.shape != o.boxes.shape:
            return False, float("inf")
        if len(gb):
            worst = max(worst, float(np.abs(gb - o.boxes).max()))
    return True, worst


SUBSCRIBER = textwrap.dedent("""
    import json, sys, time, rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    kind, n = sys.argv[1], int(sys.argv[2])
    if kind == "image":
        from sensor_msgs.msg import Image as T
    else:
        from sar_atd_msgs.msg import TileBatch as T
    rclpy.init()
    node = rclpy.create_node("bench_sub")
    lat = []
    def cb(msg):
        t = time.time_ns()
        s = msg.header.stamp
        lat.append((t - (s.sec * 1_000_000_000 + s.nanosec)) / 1e6)
    node.create_subscription(T, "bench", cb, QoSProfile(depth=2,
                             reliability=ReliabilityPolicy.RELIABLE))
    t_end = time.time() + 120
    while len(lat) < n and time.time() < t_end:
        rclpy.spin_once(node, timeout_sec=0.1)
    print(json.dumps(lat))
""")


def transport(kind: str, n: int = 10) -> list[float]:
    """One-way latencies (ms) of ``n`` messages published here, received by another process."""
    import rclpy
    from builtin_interfaces.msg import Time
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from sar_atd_ros.runner import ros_env

    env = ros_env()
    sub = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, kind, str(n)], env=env,
                           stdout=subprocess.PIPE, text=True)
    import os

    saved = {k: os.environ.get(k) for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")}
    os.environ.update({k: env[k] for k in saved})
    rclpy.init()
    try:
        node = rclpy.create_node("bench_pub")
        if kind == "image":
            from sensor_msgs.msg import Image

            from sar_atd_ros.image import fill_image

            msg = fill_image(Image(), np.random.default_rng(0).random((2048, 2048),
                                                                      dtype=np.float32))
            T = Image
        else:
            import torch
            from sar_atd_msgs.msg import TileBatch
            from std_msgs.msg import Header

            from sar_atd.tiling import TileBatch as TB
            from sar_atd_ros.convert import fill_tile_batch

            tb = TB(tiles=torch.randint(0, 255, (4, 1, 640, 640)).float(),
                    offsets=np.zeros((4, 2), np.int64), scene_hw=(2048, 2048))
            msg = fill_tile_batch(TileBatch(), Header(), 1, tb, 0, 1)
            T = TileBatch
        pub = node.create_publisher(T, "bench", QoSProfile(
            depth=2, reliability=ReliabilityPolicy.RELIABLE))
        t_end = time.time() + 60
        while pub.get_subscription_count() < 1 and time.time() < t_end:
            rclpy.spin_once(node, timeout_sec=0.1)
        time.sleep(1.0)
        for _ in range(n + 2):
            t = time.time_ns()
            msg.header.stamp = Time(sec=t // 1_000_000_000, nanosec=t % 1_000_000_000)
            pub.publish(msg)
            time.sleep(0.5)
        out, _ = sub.communicate(timeout=120)
    finally:
        rclpy.try_shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return json.loads(out.strip().splitlines()[-1]) if out.strip() else []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_streaming",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--bag", type=Path, help="bag to use (default: a generated one)")
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--model", default=str(REPO / "models" / "default.pt"))
    ap.add_argument("--layouts", nargs="+", default=["scene_detector", "split"],
                    choices=["scene_detector", "split"])
    ap.add_argument("--skip-model", action="store_true", help="CFAR only (quick)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_streaming_"))
    bag = args.bag
    if bag is None:
        bag = work / "bag"
        make_bag(bag, args.scenes, args.size)
    print(f"bag: {bag} ({args.scenes} scenes of {args.size} x {args.size} float32)"
          if args.bag is None else f"bag: {bag}")
    results: dict = {"bag": str(bag)}
    detectors = ["cfar"] + ([] if args.skip_model else [args.model])
    print("| detector | layout | in-process scenes/s | graph scenes/s | ratio | added ms/scene "
          "| same detections | max box diff px | AP25 graph / in-process | AP50 graph / "
          "in-process | latency p50 / p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for det in detectors:
        for layout in args.layouts:
            node = "scene_detector" if layout == "scene_detector" else "detector"
            ips, offline, m = in_process(bag, det, node)
            g = graph(bag, det, layout, work)
            s = g["summary"]
            gps = s.get("scenes_per_s_steady") or float("nan")
            same, diff = equal(g["detections"], offline)
            added = (1 / gps - 1 / ips) * 1e3
            name = "CFAR" if det == "cfar" else Path(det).name
            print(f"| {name} | {layout} | {ips:.3f} | {gps:.3f} | {gps / ips:.3f} | "
                  f"{added:.0f} | {same} | {diff:.2g} | {s['AP25']:.3f} / {m['AP25']:.3f} | "
                  f"{s['AP50']:.3f} / {m['AP50']:.3f} | {s['latency_p50_ms']:.0f} / "
                  f"{s['latency_p99_ms']:.0f} |", flush=True)
            results[f"{name}/{layout}"] = {
                "in_process_scenes_per_s": ips, "graph_scenes_per_s": gps,
                "ratio": gps / ips, "added_ms_per_scene": added, "same_detections": same,
                "max_box_diff_px": diff, "graph_AP25": s["AP25"], "graph_AP50": s["AP50"],
                "in_process_AP25": m["AP25"], "in_process_AP50": m["AP50"],
                "latency_p50_ms": s["latency_p50_ms"], "latency_p99_ms": s["latency_p99_ms"]}
    for kind, label in (("image", "2048x2048 float32 Image (16.8 MB)"),
                        ("tiles", "tile batch 4 x 640 x 640 mono8 (1.6 MB)")):
        lat = transport(kind)
        med = statistics.median(lat) if lat else float("nan")
        print(f"transport {label}: median {med:.1f} ms one way over {len(lat)} messages")
        results[f"transport_{kind}_ms"] = med
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
