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
* equality with ``sar-atd eval --tile`` (``--equality``): a COCO dataset of 928 x 928
  uint8 scenes (2 x 2 real patchworks when ``../shared/data`` is present, else synthetic)
  goes through ``bag make`` and the graph (lossless); the graph's detections are compared
  with the in-process scene detector of ``eval --tile`` (count per scene, boxes within
  1e-3 px) and its AP25/AP50 with the ``eval --tile`` report (within 0.005);
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
        # calibrated-like amplitude: Rayleigh clutter with median ~0.014 renders at 8-bit
        # level ~30 through the quarter-power LUT with white point 1 (MSTAR grass)
        a = rng.rayleigh(0.0118, (size, size)).astype(np.float32)
        boxes = []
        for _ in range(8):
            y, x = int(rng.integers(20, size - 40)), int(rng.integers(20, size - 60))
            a[y:y + 14, x:x + 30] *= 12.0
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


def equality_dataset(out: Path, n: int = 4, seed: int = 0) -> str:
    """COCO folder of ``n`` 928 x 928 uint8 scenes (2 x 2 real patchworks, or synthetic)."""
    from sar_atd.evalset import EvalImage, write_coco_dataset
    from sar_atd_training.paths import mstar_chips_dir

    chips = mstar_chips_dir()
    items = []
    if chips is not None:
        from sar_atd_training.evaluation.patchwork import build_patchworks

        pws = build_patchworks(chips, n=4 * n, seed=seed)
        for i in range(n):
            quad = pws[4 * i:4 * i + 4]
            h, w = quad[0].image.shape
            img = np.zeros((2 * h, 2 * w), np.uint8)
            boxes = []
            for k, pw in enumerate(quad):
                y0, x0 = (k // 2) * h, (k % 2) * w
                img[y0:y0 + h, x0:x0 + w] = pw.image
                boxes.append(pw.boxes + np.array([x0, y0, x0, y0], np.float32))
            items.append(EvalImage(f"quad_{i:03d}", img, np.concatenate(boxes)))
        desc = f"{n} scenes of 2 x 2 real patchworks ({2 * h} x {2 * w})"
    else:
        rng = np.random.default_rng(seed)
        for i in range(n):
            a = np.clip(rng.rayleigh(30.0, (928, 928)), 0, 255)
            boxes = []
            for _ in range(10):
                y, x = int(rng.integers(10, 890)), int(rng.integers(10, 870))
                a[y:y + 14, x:x + 30] = np.clip(a[y:y + 14, x:x + 30] * 4, 0, 255)
                boxes.append([x, y, x + 30, y + 14])
            items.append(EvalImage(f"synthetic_{i:03d}", a.astype(np.uint8),
                                   np.array(boxes, np.float32)))
        desc = f"{n} synthetic 928 x 928 scenes (no ../shared/data)"
    write_coco_dataset(items, out)
    return desc


def equality(work: Path, detectors: list[str], n: int) -> None:
    """Graph (lossless) vs ``sar-atd eval --tile 640 --overlap 128`` on the same dataset."""
    from sar_atd.runtime import resolve_detector
    from sar_atd_ros.bag import read_bag_scenes
    from sar_atd_training.cli import main as cli
    from sar_atd_training.evaluation.runner import tiled_detector

    coco = work / "eq_coco"
    desc = equality_dataset(coco, n)
    bag = work / "eq_bag"
    cli(["bag", "make", "--dataset", str(coco), "--out", str(bag)])
    print(f"\nequality with sar-atd eval --tile 640 --overlap 128 --batch 4 on {desc}:")
    print("| detector | scenes graph / eval | detections graph / eval | same count per scene | "
          "max box diff px | AP25 graph / eval | AP50 graph / eval |")
    print("|---|---|---|---|---|---|---|")
    scenes = read_bag_scenes(bag)
    for det in detectors:
        g = graph(bag, det, "scene_detector", work)
        out = work / f"eq_eval_{Path(det).stem}"
        cli(["eval", "--detector", det, "--dataset", str(coco), "--tile", "640", "--overlap",
             "128", "--batch", "4", "--out", str(out), "--examples", "0", "--no-progress"])
        ev = json.loads((out / "metrics.json").read_text())
        em = next(iter(ev["detectors"].values()))["metrics"]
        d, _ = resolve_detector(det, device="cpu", score_threshold=0.01)
        td = tiled_detector(d, 640, 128, 4)
        offline = [td.scene.detect(img) for img, _b, _n in scenes]
        same, diff = equal(g["detections"], offline)
        s = g["summary"]
        n_graph = sum(len(b) for b, _s in g["detections"])
        name = "CFAR" if det == "cfar" else Path(det).name
        print(f"| {name} | {s['scenes_evaluated']} / {ev['n_images']} | {n_graph} / "
              f"{em['n_pred']} | {same} | {diff:.2g} | {s['AP25']:.4f} / {em['AP25']:.4f} | "
              f"{s['AP50']:.4f} / {em['AP50']:.4f} |", flush=True)


def graph(bag: Path, detector: str, layout: str, work: Path) -> dict:
    from sar_atd_ros.bag import read_bag_detections
    from sar_atd_ros.runner import GraphOptions, run_graph

    tag = f"{bag.name}_{layout}_{Path(detector).stem}"
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
    ap.add_argument("--equality", type=int, default=4, metavar="N",
                    help="scenes of the eval --tile equality check (0 = skip)")
    ap.add_argument("--skip-throughput", action="store_true")
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
    for det in ([] if args.skip_throughput else detectors):
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
    if args.equality:
        equality(work, detectors, args.equality)
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
