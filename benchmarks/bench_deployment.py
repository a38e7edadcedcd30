"""Deployment figures of the node graph: overload, fault run, soak.

    python -m benchmarks.bench_deployment [--parts overload faults soak] [--detector cfar]
        [--size 512] [--scenes 40] [--soak-s 600]

Every part runs the real graph (``sar-atd run``: separate rclpy processes over Fast DDS,
host-only discovery) on bags written to a temporary folder (``bench_streaming.make_bag``:
Rayleigh clutter, 8 bright targets; float32 amplitude scenes of ``--size`` px):

* **overload**: the sustainable rate R is measured first (lossless replay: one scene in
  flight); then ``--scenes`` scenes are sent at 2 R (fixed rate, keep-last QoS on
  ``scene``, bounded drop-oldest queue in the detector): share of scenes dropped, with
  the reasons the evaluator gives every scene not evaluated (dropped for overload,
  rejected, lost in transport...), latency p50/p99 of the processed ones (bounded: no
  backlog grows) and unaccounted scenes (missing scenes without a reason; must be 0);
* **faults**: the same good scenes with malformed scenes mixed in (wrong encoding, zero
  size, step x height != data, absurd dimensions, above ``max_scene_pixels``; each with
  ground truth so it counts as sent): every malformed one rejected (one log line each in
  the detector's log) and counted as not evaluated, and AP25/AP50 of the good ones equal
  to a clean run's;
* **soak**: a looped bag at ``--soak-load`` x R (default 1.5: sustained overload) for
  ``--soak-s`` seconds: the detector's and the evaluator's RSS after a 60 s warm-up vs at
  the end of the stream (the last sample while the player still ran; goal: growth <= 5 %)
  and, apart, the peak after it (the evaluator's final report: PR curves, plots), restarts
  (crashes), drops with their reasons, latency p50/p99 overall and per quarter of the run
  (a backlog shows as rising quarters), and unaccounted scenes; ``--soak-trace FILE``
  writes every RSS sample (JSON lines);
* **streams**: 1, 2 and 4 streams (namespaces) through one ``multi_scene_detector``
  (tiles batched across streams) vs one ``scene_detector`` process per stream: rounds of
  one scene per stream are published and timed until every stream's detections arrived
  (scenes/s over ``--rounds`` rounds after one warm-up round).

Figures are of this machine (CPU, no GPU here) and are printed, never assumed; the load
average of the machine while each part ran is printed beside them.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_streaming import make_bag

DETECTOR_MODULE = "sar_atd_ros.scene_detector"


def malformed_images(store: Any, header: Any) -> list[tuple[str, Any]]:
    """(kind, rosbags Image) of each malformed scene kind the detector must reject."""
    Image = store.types["sensor_msgs/msg/Image"]

    def img(h: int, w: int, enc: str, step: int, n_bytes: int) -> Any:
        return Image(header=header, height=h, width=w, encoding=enc, is_bigendian=0,
                     step=step, data=np.zeros(n_bytes, np.uint8))

    return [("wrong encoding", img(8, 8, "rgb8", 24, 192)),
            ("zero size", img(0, 16, "32FC1", 64, 0)),
            ("step x height != data", img(16, 16, "32FC1", 64, 64 * 15)),
            ("absurd dimensions", img(100000, 100000, "32FC1", 400000, 8)),
            ("above max_scene_pixels", img(2048, 2048, "mono8", 2048, 2048 * 2048))]


def write_fault_bag(clean: Path, out: Path, every: int = 3) -> int:
    """Copy ``clean`` to ``out`` with a malformed scene (with its ground truth) after every
    ``every`` good ones; returns how many malformed scenes were added."""
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import Writer

    from sar_atd_ros.bag import typestore

    store = typestore()
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    GroundTruth = store.types["sar_atd_msgs/msg/GroundTruth"]
    n_bad = n_good = 0
    with AnyReader([clean], default_typestore=store) as reader, \
            Writer(out, version=9) as writer:
        conns = {c.topic: writer.add_connection(c.topic, c.msgtype, typestore=store)
                 for c in reader.connections}
        gt_topic = next(t for t, c in conns.items() if c.msgtype.endswith("GroundTruth"))
        img_topic = next(t for t, c in conns.items() if c.msgtype.endswith("Image"))
        kinds: list[tuple[str, Any]] = []
        for conn, t, raw in reader.messages():
            writer.write(conns[conn.topic], t, raw)
            if conn.topic != img_topic:
                continue
            n_good += 1
            if n_good % every:
                continue
            tb = t + 500_000  # between this scene and the next
            header = Header(stamp=Time(sec=tb // 10**9, nanosec=tb % 10**9), frame_id="sar")
            if not kinds:
                kinds = malformed_images(store, header)
            _kind, bad = kinds.pop(0)
            bad.header = header
            gt = GroundTruth(header=header, sequence=0, bag_stamp=header.stamp,
                             scene_name=f"malformed{n_bad}", scene_height=0, scene_width=0,
                             boxes_px=np.zeros(0, np.float32), labels=[])
            writer.write(conns[gt_topic], tb, store.serialize_cdr(gt, conns[gt_topic].msgtype))
            writer.write(conns[img_topic], tb + 1,
                         store.serialize_cdr(bad, "sensor_msgs/msg/Image"))
            n_bad += 1
    return n_bad


def run(bag: Path, work: Path, detector: str, mode: str, tag: str,
        player: dict[str, Any] | None = None, evaluator: dict[str, Any] | None = None,
        node: dict[str, Any] | None = None, on_running: Any = None) -> dict[str, Any]:
    """One graph run; ``on_running(domain_id)`` is called in a thread while it runs."""
    from sar_atd_ros.runner import GraphOptions, run_graph

    overrides: dict[str, Any] = {"evaluator": {"report": {"drain_timeout_s": 20.0,
                                                          "n_examples": 0,
                                                          **(evaluator or {})}}}
    if player:
        overrides["scene_player"] = {"player": player}
    if node:
        overrides["scene_detector"] = {"node": node}
    opts = GraphOptions(bag=bag, detector=detector, device="cpu", mode=mode,
                        report=work / f"report_{tag}", log_dir=work / f"logs_{tag}",
                        timeout_s=3600, overrides=overrides)
    domain = random.SystemRandom().randint(101, 230)
    watcher = None
    if on_running is not None:
        watcher = threading.Thread(target=on_running, args=(domain,), daemon=True)
        watcher.start()
    out = run_graph(opts, domain_id=domain)
    if watcher is not None:
        watcher.join(timeout=30)
    return out


def accounted(s: dict[str, Any]) -> int:
    """Scenes neither evaluated nor given a reason for missing (must be 0)."""
    flow = s.get("scenes_missing_by_reason")
    if flow is None:  # no detector-side counters reached the evaluator: no reasons
        return int(s["scenes_missing"])
    return int(flow["unaccounted"]) + (int(s["scenes_published"]) - int(s["scenes_evaluated"])
                                       - int(s["scenes_missing"]))


def reasons(s: dict[str, Any]) -> str:
    """The evaluator's reasons for the scenes not evaluated, e.g. ``dropped_overload 8``."""
    flow = s.get("scenes_missing_by_reason") or {}
    return ", ".join(f"{k} {v}" for k, v in flow.items()
                     if v and k not in ("missing", "unaccounted")) or "-"


def load() -> str:
    """The machine's 1/5/15-minute load averages (other jobs share this CPU)."""
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def overload(work: Path, detector: str, size: int, n: int) -> float:
    """Prints the overload table; returns the sustainable rate (scenes/s)."""
    bag = work / "overload_bag"
    make_bag(bag, n, size)
    base = run(bag, work, detector, "lossless", "sustainable")["summary"]
    rate = float(base["scenes_per_s"])
    load0 = load()
    over = run(bag, work, detector, "realtime", "overload",
               player={"rate_hz": 2 * rate})["summary"]
    print(f"\noverload ({n} scenes of {size} x {size} float32, detector {detector}; load "
          f"average before/after the 2x run {load0} / {load()}, nproc {os.cpu_count()}):")
    print("| input | scenes/s in | processed | not evaluated (share) | reasons | "
          "latency p50 / p99 ms | unaccounted |")
    print("|---|---|---|---|---|---|---|")
    for name, s, r_in in (("lossless (sustainable)", base, rate), ("2x sustainable", over,
                                                                    2 * rate)):
        drop = s["scenes_missing"] / max(1, s["scenes_published"])
        print(f"| {name} | {r_in:.2f} | {s['scenes_evaluated']} | {s['scenes_missing']} "
              f"({drop:.0%}) | {reasons(s)} | {s['latency_p50_ms']:.0f} / "
              f"{s['latency_p99_ms']:.0f} | {accounted(s)} |")
    return rate


def faults(work: Path, detector: str, size: int, n: int) -> None:
    """Prints the fault-run comparison with a clean run of the same good scenes."""
    clean = work / "clean_bag"
    make_bag(clean, n, size, seed=1)
    bad = work / "fault_bag"
    n_bad = write_fault_bag(clean, bad)
    player = {"lossless_timeout_s": 2.0}
    c = run(clean, work, detector, "lossless", "clean", player=player)["summary"]
    f_out = run(bad, work, detector, "lossless", "faults", player=player,
                node={"max_scene_pixels": 2_000_000})
    f = f_out["summary"]
    log = Path(f_out["log_dir"]) / "scene_detector.log"
    rejected = sum("rejected scene" in ln for ln in log.read_text().splitlines())
    print(f"\nfault run ({n} good scenes + {n_bad} malformed, lossless, detector {detector}):")
    print("| bag | published | evaluated | not evaluated | rejected (detector log) | "
          "unaccounted | AP25 | AP50 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, s, rej in (("clean", c, 0), ("with malformed", f, rejected)):
        print(f"| {name} | {s['scenes_published']} | {s['scenes_evaluated']} | "
              f"{s['scenes_missing']} | {rej} | {accounted(s)} | {s['AP25']:.4f} | "
              f"{s['AP50']:.4f} |")
    same = abs(c["AP25"] - f["AP25"]) < 1e-9 and abs(c["AP50"] - f["AP50"]) < 1e-9
    ok = rejected == n_bad == f["scenes_missing"]
    print(f"every malformed scene rejected and counted: {ok}; good scenes' AP equal to the "
          f"clean run's: {same}")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def detector_pid(domain: int, module: str = DETECTOR_MODULE) -> int | None:
    """PID of the ``module`` node process of the run on ``domain`` (started by this run)."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
            env = (d / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if module.encode() in cmd and f"ROS_DOMAIN_ID={domain}".encode() in env:
            return int(d.name)
    return None


def stream_end_s(log: Path, wall0: float) -> float | None:
    """Seconds after ``wall0`` (epoch) at which the evaluator logged the end of the stream
    (its first ``stream ended`` line; rclpy stamps log lines with the epoch time)."""
    try:
        for line in log.read_text(errors="replace").splitlines():
            if "stream ended at scene" in line:
                return float(line.split("[")[2].split("]")[0]) - wall0
    except (OSError, IndexError, ValueError):
        return None
    return None


def soak(work: Path, detector: str, size: int, rate: float, soak_s: float,
         factor: float = 1.5, trace: Path | None = None,
         exact_max_predictions: int | None = None) -> None:
    """Prints RSS after warm-up vs at the end, restarts, drops, latency and unaccounted
    scenes of a looped bag sent at ``factor`` x the sustainable ``rate``."""
    bag = work / "soak_bag"
    make_bag(bag, 20, size, seed=2)
    rate_in = factor * rate
    n = int(rate_in * soak_s)
    modules = {"detector": DETECTOR_MODULE, "evaluator": "sar_atd_ros.evaluator_node",
               "player": "sar_atd_ros.scene_player"}
    samples: dict[str, list[tuple[float, int]]] = {k: [] for k in modules}
    loads: list[float] = []

    wall0: list[float] = []  # wall-clock time of the first sample

    def sample(domain: int) -> None:
        t0 = time.monotonic()
        wall0.append(time.time())
        pids: dict[str, int | None] = dict.fromkeys(modules)
        while time.monotonic() - t0 < soak_s + 120:
            t = time.monotonic() - t0
            row: dict[str, Any] = {"t_s": round(t, 1), "load": os.getloadavg()[0]}
            for k, mod in modules.items():
                pid = pids[k]
                pids[k] = pid = (pid if pid is not None and Path(f"/proc/{pid}").exists()
                                 else detector_pid(domain, mod))
                if pid is not None:
                    try:
                        row[k] = rss_kib(pid)
                        samples[k].append((t, row[k]))
                    except OSError:
                        pass
            loads.append(row["load"])
            if trace is not None:
                with trace.open("a") as f:
                    f.write(json.dumps(row) + "\n")
            time.sleep(5.0)

    out = run(bag, work, detector, "realtime", "soak",
              player={"rate_hz": rate_in, "loop": True, "max_scenes": n},
              node={"queue_depth": 2}, on_running=sample,
              evaluator=({} if exact_max_predictions is None else
                         {"exact_max_predictions": exact_max_predictions}))
    s = out["summary"]
    print(f"\nsoak ({n} scenes at {rate_in:.2f}/s = {factor:g} x sustainable, from a looped "
          f"20-scene bag, {out['wall_s']:.0f} s, detector {detector}; load average 1 min "
          f"over the run: mean {np.mean(loads) if loads else float('nan'):.1f}, max "
          f"{max(loads, default=float('nan')):.1f}, nproc {os.cpu_count()}):")
    # the stream ends when the evaluator gets the player's stream_end (its log line; the
    # player lingers a few seconds after it, while the evaluator drains and writes its
    # report); what comes after is shown apart from the growth over the stream
    t_end = stream_end_s(Path(out["log_dir"]) / "evaluator.log", wall0[0] if wall0 else 0.0)
    if t_end is None:  # no log line: the last sample while the player ran
        t_end = samples["player"][-1][0] if samples["player"] else math.inf
    for k, smp in samples.items():
        if k == "player":
            continue
        t_start = smp[0][0] if smp else 0.0
        warm = [r for t, r in smp if t - t_start >= 60.0 and t <= t_end and r > 0]
        after = [r for t, r in smp if t > t_end and r > 0]  # 0: process exiting
        if len(warm) < 2:
            print(f"{k}: too few RSS samples after the 60 s warm-up: growth not measured")
            continue
        growth = (warm[-1] - warm[0]) / warm[0]
        print(f"{k} RSS after warm-up {warm[0] / 1024:.1f} MiB, at the end of the stream "
              f"{warm[-1] / 1024:.1f} MiB, max {max(warm) / 1024:.1f} MiB: growth "
              f"{growth:+.1%} (goal <= 5 %); after the stream (drain, final report) peak "
              f"{max(after) / 1024 if after else float('nan'):.1f} MiB")
    quarters = " | ".join(f"{a:.0f}/{b:.0f}" for a, b in s.get("latency_quarters_p50_p99_ms")
                          or [])
    drop = s["scenes_missing"] / max(1, s["scenes_published"])
    print(f"restarts (crashes): {out.get('restarts') or 0}; published "
          f"{s['scenes_published']}, evaluated {s['scenes_evaluated']}, not evaluated "
          f"{s['scenes_missing']} ({drop:.0%}: {reasons(s)}), unaccounted {accounted(s)}")
    m = out.get("metrics") or {}
    print(f"metric state: {s['n_pred']} predictions, exact AP {m.get('ap_exact', '?')}, "
          f"score bins {m.get('score_bins', '?')}; latency percentiles exact "
          f"{s.get('latency_exact', '?')}")
    print(f"latency p50/p99 {s['latency_p50_ms']:.0f} / {s['latency_p99_ms']:.0f} ms "
          f"(processing p50 {s['processing_p50_ms']:.0f} ms); per quarter of the run "
          f"p50/p99 ms: {quarters}")


def _stream_rounds(domain: int, namespaces: list[str], scenes: list[np.ndarray],
                   rounds: int, procs: list[Any], timeout_s: float = 300.0) -> float:
    """Scenes/s of ``rounds`` rounds (one scene per stream each, after a warm-up round)."""
    import os

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sar_atd_msgs.msg import SceneDetections
    from sensor_msgs.msg import Image

    from sar_atd_ros.image import fill_image

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("bench_streams", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    counts = dict.fromkeys(namespaces, 0)
    for ns in namespaces:
        node.create_subscription(SceneDetections, f"{ns}/detections",
                                 lambda _m, ns=ns: counts.__setitem__(ns, counts[ns] + 1), 10)
    pubs = [node.create_publisher(Image, f"{ns}/scene", 10) for ns in namespaces]
    msgs = [fill_image(Image(), s) for s in scenes]
    t_end = time.monotonic() + timeout_s

    def spin_until(cond: Any) -> None:
        while not cond():
            if time.monotonic() > t_end:
                raise TimeoutError(f"streams {namespaces}: detections did not arrive")
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"streams {namespaces}: a detector process exited")
            ex.spin_once(timeout_sec=0.01)

    try:
        spin_until(lambda: all(node.count_publishers(f"{ns}/detections") >= 1
                               and node.count_subscribers(f"{ns}/scene") >= 1
                               for ns in namespaces))
        t0 = 0.0
        for r in range(rounds + 1):
            if r == 1:
                t0 = time.perf_counter()
            for i, pub in enumerate(pubs):
                pub.publish(msgs[(r + i) % len(msgs)])
            spin_until(lambda r=r: all(c >= r + 1 for c in counts.values()))
        return len(namespaces) * rounds / (time.perf_counter() - t0)
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def streams(work: Path, detector: str, size: int, rounds: int) -> None:
    """Prints throughput of 1, 2, 4 streams: one shared detector vs one per stream."""
    import subprocess
    import sys

    import yaml

    from sar_atd_ros.bag import read_bag_scenes
    from sar_atd_ros.runner import node_command, ros_env, stop_processes

    bag = work / "streams_bag"
    make_bag(bag, 4, size, seed=3)
    scenes = [img for img, _b, _n in read_bag_scenes(bag)]
    block = {"tiler": {"tile_size": 640, "overlap": 128, "batch_size": 8, "device": "cpu",
                       "amplitude_ref": 0.0},
             "detector": {"model": detector, "device": "cpu"}}
    print(f"\nseveral streams ({size} x {size} float32 scenes, detector {detector}, "
          f"{rounds} rounds of one scene per stream):")
    print("| streams | one shared detector (scenes/s) | one detector per stream (scenes/s) |")
    print("|---|---|---|")
    for n in (1, 2, 4):
        namespaces = [f"/s{i + 1}" for i in range(n)]
        params = work / f"streams_{n}.yaml"
        params.write_text(yaml.safe_dump({  # copies: rcl parameter files take no aliases
            "/**/multi_scene_detector": {"ros__parameters": {
                **copy.deepcopy(block), "streams": {"namespaces": namespaces, "max_queue": 2}}},
            "/**/scene_detector": {"ros__parameters": copy.deepcopy(block)}}))
        rates = []
        for shared in (True, False):
            env = ros_env()
            cmds = ([[sys.executable, "-m", "sar_atd_ros.multistream", "--ros-args",
                      "--params-file", str(params)]] if shared else
                    [node_command("scene_detector", params, ns) for ns in namespaces])
            procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL) for c in cmds]
            try:
                rates.append(_stream_rounds(int(env["ROS_DOMAIN_ID"]), namespaces, scenes,
                                            rounds, procs))
            finally:
                stop_processes(procs, 30)
        print(f"| {n} | {rates[0]:.2f} | {rates[1]:.2f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_deployment",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", choices=("overload", "faults", "soak", "streams"),
                    default=["overload", "faults", "streams"])
    ap.add_argument("--detector", default="cfar", help="cfar | model file")
    ap.add_argument("--size", type=int, default=512, help="scene side (px)")
    ap.add_argument("--scenes", type=int, default=40, help="scenes of the overload/fault runs")
    ap.add_argument("--soak-s", type=float, default=600.0, help="soak duration (s)")
    ap.add_argument("--soak-load", type=float, default=1.5,
                    help="soak input rate as a multiple of the sustainable rate")
    ap.add_argument("--soak-trace", type=Path, default=None,
                    help="append every soak RSS sample (KiB) to this JSON-lines file")
    ap.add_argument("--soak-exact-max", type=int, default=None,
                    help="soak: the evaluator's report.exact_max_predictions (default: "
                    "the node's)")
    ap.add_argument("--rounds", type=int, default=8, help="rounds of the streams part")
    args = ap.parse_args(argv)
    print("machine: this project's 2-core CPU (no GPU), shared with other jobs")
    with tempfile.TemporaryDirectory(prefix="bench_deployment_") as tmp:
        work = Path(tmp)
        rate = None
        if "overload" in args.parts:
            rate = overload(work, args.detector, args.size, args.scenes)
        if "faults" in args.parts:
            faults(work, args.detector, args.size, args.scenes)
        if "soak" in args.parts:
            if rate is None:
                rate = overload(work, args.detector, args.size, args.scenes)
            soak(work, args.detector, args.size, rate, args.soak_s, args.soak_load,
                 args.soak_trace, args.soak_exact_max)
        if "streams" in args.parts:
            streams(work, args.detector, args.size, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
