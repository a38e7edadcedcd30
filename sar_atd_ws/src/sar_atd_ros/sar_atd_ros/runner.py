"""Local runner of the node graph (``sar-atd run``): the nodes as separate processes over DDS.

Starts the same node executables with the same parameter file as the launch file
(``python -m sar_atd_ros.<node> --ros-args -r __ns:=/sar --params-file P``), in the order
evaluator, detector side, [recorder], player; the player waits until the detector side
published its ``detections`` topic (model loaded) and the evaluator subscribed. Discovery
stays on this host (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``) on a fresh
``ROS_DOMAIN_ID`` per run, so parallel runs never cross.

When the evaluator has accounted for every scene it writes its report and exits; the
runner then stops the other nodes with SIGINT (SIGKILL after a grace period). A node that
exits with an error before that ends the run: the others are stopped and
:class:`~sar_atd_ros.errors.GraphError` names the node and its last error line.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sar_atd.config import _deep_merge, load_yaml
from sar_atd_ros.errors import BAG_ERROR_EXIT, GraphError

__all__ = ["DEFAULT_PARAMS", "NODE_MODULES", "GraphOptions", "run_graph", "ros_env",
           "stop_processes", "node_command", "format_summary", "node_params",
           "offline_scene_detector"]

DEFAULT_PARAMS = Path(__file__).resolve().parents[1] / "params" / "default.yaml"
"""The default parameter file installed with the package."""

NODE_MODULES: dict[str, str] = {
    "scene_player": "sar_atd_ros.scene_player",
    "scene_detector": "sar_atd_ros.scene_detector",
    "tiler": "sar_atd_ros.tiler_node",
    "detector": "sar_atd_ros.detector",
    "evaluator": "sar_atd_ros.evaluator_node",
    "recorder": "sar_atd_ros.recorder",
}
"""Node name -> module run with ``python -m`` (same executables as the setup.py entries)."""

SOURCE_ROOT = Path(__file__).resolve().parents[4]
"""Repository root of a source checkout (relative model paths of the default parameter
file, e.g. ``models/default.pt``, are looked up there when absent from the working folder)."""

LAYOUTS = {"scene_detector": ["scene_detector"], "split": ["tiler", "detector"]}
RESTARTABLE = ("scene_detector", "tiler", "detector", "evaluator")
"""Nodes ``sar-atd run`` restarts when they die mid-stream (the evaluator resumes from its
saved state); the launch file respawns the same nodes (``respawn:=true``)."""
STOP_GRACE_S = 30.0
"""Seconds a node has to exit after SIGINT at the end of a run before it is killed."""
RESTART_DELAY_S = 2.0
"""Seconds before a dead node is started again (the launch file's ``RESPAWN_DELAY_S``)."""


@dataclass
class GraphOptions:
    """What ``sar-atd run`` asks for (None = keep the parameter file's value).

    Attributes:
        bag: bag to replay.
        params: parameter file (default: the package's ``params/default.yaml``).
        detector: detector spec (``cfar``, ``cfar-os``, model file).
        backend: ``torch`` | ``onnxruntime`` | ``tensorrt`` ("" = by suffix).
        device: ``auto`` | ``cpu`` | ``cuda[:N]``.
        mode: player mode (``lossless``, ``realtime``, ``speed``, ``max_rate``).
        speed: speed factor for ``speed`` mode.
        report: report folder of the evaluator.
        record: output bag of detections and metrics.
        wait_for_model: keep the detector waiting for a missing model file.
        layout: ``scene_detector`` (one process) or ``split`` (tiler + detector).
        namespace: ROS namespace of the graph.
        timeout_s: stop everything after this long (error).
        overrides: extra ``{node: {section: {key: value}}}`` parameters.
        restarts: times a tiler/detector process that dies mid-stream is restarted (and
            configured + activated again); 0 = a crash ends the run.
        log_dir: where node logs go (default: a temporary folder).
    """

    bag: Path
    params: Path | None = None
    detector: str | None = None
    backend: str | None = None
    device: str | None = None
    mode: str | None = None
    speed: float | None = None
    report: Path | None = None
    record: Path | None = None
    wait_for_model: bool = False
    layout: str = "scene_detector"
    namespace: str = "/sar"
    timeout_s: float = 1800.0
    overrides: dict[str, Any] = field(default_factory=dict)
    restarts: int = 3
    log_dir: Path | None = None


def ros_env(domain_id: int | None = None) -> dict[str, str]:
    """Environment for nodes: host-only discovery on a fresh (random) domain id.

    Fast DDS accepts domain ids 0-232 (its port arithmetic); 1-232 at random keeps two
    concurrent runs apart with a probability of ~99.6 %."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id if domain_id is not None
                               else random.SystemRandom().randint(1, 232))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def node_command(name: str, params_file: Path, namespace: str = "/sar") -> list[str]:
    """Command line of one node process."""
    return [sys.executable, "-m", NODE_MODULES[name], "--ros-args", "-r",
            f"__ns:={namespace}", "--params-file", str(params_file)]


def effective_params(opts: GraphOptions, nodes: list[str], report_dir: Path) -> dict[str, Any]:
    """The parameter file's blocks with the command-line choices applied."""
    data: dict[str, Any] = {}
    for key, block in load_yaml(opts.params or DEFAULT_PARAMS).items():
        name = node_key(key)
        data[name] = _deep_merge(data.get(name, {}), block or {})

    def put(node: str, section: str, key: str, value: Any) -> None:
        if value is None:
            return
        block = data.setdefault(node, {}).setdefault("ros__parameters", {})
        block.setdefault(section, {})[key] = value

    det_nodes = [n for n in nodes if n in ("scene_detector", "detector")]
    put("scene_player", "player", "bag", str(opts.bag))
    put("scene_player", "player", "mode", opts.mode)
    put("scene_player", "player", "speed", opts.speed)
    put("scene_player", "player", "wait_subscribers", 1)
    put("scene_player", "player", "wait_ground_truth_subscribers", 1)
    put("scene_player", "player", "wait_detections_publishers", 1)
    for n in det_nodes:
        put(n, "detector", "model", opts.detector)
        put(n, "detector", "backend", opts.backend)
        put(n, "detector", "device", opts.device)
        put(n, "tiler", "device", opts.device)  # tiles live on the detector's device
        put(n, "node", "autostart", False)  # lifecycle transitions driven by the runner
    if opts.device is not None and "tiler" in nodes:
        put("tiler", "tiler", "device", opts.device)
    put("evaluator", "report", "dir", str(report_dir))
    put("evaluator", "report", "exit_on_stream_end", True)
    if opts.record is not None:
        put("recorder", "recorder", "out", str(opts.record))
    for node, block in opts.overrides.items():
        cur = data.setdefault(node, {}).setdefault("ros__parameters", {})
        data[node]["ros__parameters"] = _deep_merge(cur, block)
    for n in det_nodes:  # a relative model path of the default file names a repository file
        det = data.get(n, {}).get("ros__parameters", {}).get("detector", {})
        model = det.get("model")
        if isinstance(model, str) and model not in ("", "cfar", "cfar-os"):
            p = Path(model)
            if not p.is_absolute() and not p.exists() and (SOURCE_ROOT / p).exists():
                det["model"] = str(SOURCE_ROOT / p)
    return {f"/**/{k}": v for k, v in data.items() if k in nodes}


def node_params(path: str | Path, node: str) -> dict[str, Any]:
    """The ``ros__parameters`` of ``node`` in a parameter file (every block whose key names
    it: ``node``, ``/ns/node``, ``/**/node``), for building the typed configs offline."""
    out: dict[str, Any] = {}
    for key, block in load_yaml(path).items():
        if node_key(key) == node:
            out = _deep_merge(out, (block or {}).get("ros__parameters", {}) or {})
    return out


def node_key(key: str) -> str:
    """Node name of a parameter-file key (``scene_player``, ``/sar/scene_player``,
    ``/**/scene_player``)."""
    return key.rstrip("/").split("/")[-1]


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def last_error(self) -> str:
        try:
            lines = [ln.strip() for ln in self.log.read_text(errors="replace").splitlines()
                     if ln.strip()]
        except OSError:
            return ""
        for ln in reversed(lines):
            if "error" in ln.lower():
                return ln
        return lines[-1] if lines else ""


def stop_processes(popens: list[subprocess.Popen], grace_s: float = 10.0) -> None:
    """SIGINT (a node's clean shutdown) to each running process, SIGKILL after ``grace_s``."""
    for p in popens:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    t_end = time.monotonic() + grace_s
    for p in popens:
        try:
            p.wait(timeout=max(0.1, t_end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _stop(procs: list[_Proc], grace_s: float = 10.0) -> None:
    stop_processes([p.popen for p in procs], grace_s)


def _bring_up_detector_side(procs: list[_Proc], opts: GraphOptions, domain_id: int,
                            check: Any, timeout_s: float) -> None:
    """configure + activate the managed detector nodes (model load happens here).

    Raises:
        GraphError: a node refused a transition (named, with its last error line).
    """
    from sar_atd_ros.lifecycle import LifecycleClient, LifecycleError, bring_up

    managed = [p for p in procs if p.name in ("scene_detector", "detector")]
    ns = opts.namespace.rstrip("/")
    with LifecycleClient(domain_id, name="sar_atd_run") as client:
        for p in managed:
            try:
                bring_up(client, [f"{ns}/{p.name}"], wait_for_model=opts.wait_for_model,
                         check=check, timeout_s=max(timeout_s, 1.0))
            except LifecycleError as err:
                check()
                raise GraphError(f"node '{p.name}' failed: {err}: {p.last_error()} "
                                 f"(log: {p.log})") from None
            except TimeoutError as err:
                raise GraphError(f"node '{p.name}': {err} (log: {p.log})") from None


def run_graph(opts: GraphOptions, domain_id: int | None = None) -> dict[str, Any]:
    """Run the graph on ``opts.bag`` until the evaluator is done; return its summary.

    Raises:
        GraphError: a node failed to start or crashed (named), or the run timed out.
        FileNotFoundError: missing bag or parameter file.
    """
    if not Path(opts.bag).exists():
        raise FileNotFoundError(f"bag not found: {opts.bag}")
    if opts.params is not None and not Path(opts.params).is_file():
        raise FileNotFoundError(f"parameter file not found: {opts.params}")
    if opts.layout not in LAYOUTS:
        raise GraphError(f"unknown layout {opts.layout!r}: expected one of {list(LAYOUTS)}")
    if opts.record is not None and Path(opts.record).exists():
        raise FileExistsError(f"record bag {opts.record} already exists")
    work = Path(tempfile.mkdtemp(prefix="sar_atd_run_"))
    report_dir = Path(opts.report) if opts.report else work / "report"
    log_dir = Path(opts.log_dir) if opts.log_dir else work / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    nodes = ["evaluator", *LAYOUTS[opts.layout], *(["recorder"] if opts.record else []),
             "scene_player"]
    params_file = work / "params.yaml"
    params_file.write_text(yaml.safe_dump(effective_params(opts, nodes, report_dir),
                                          sort_keys=False))
    env = ros_env(domain_id)
    procs: list[_Proc] = []
    restarts: dict[str, int] = {}
    t0 = time.monotonic()
    try:
        for name in nodes:
            log = log_dir / f"{name}.log"
            fh = open(log, "wb")  # noqa: SIM115 - closed with the process below
            popen = subprocess.Popen(node_command(name, params_file, opts.namespace),
                                     env=env, stdout=fh, stderr=subprocess.STDOUT)
            fh.close()
            procs.append(_Proc(name, popen, log))
        by_name = {p.name: p for p in procs}

        def check() -> None:
            for p in procs:
                rc = p.popen.poll()
                if p.name == "scene_player" and rc == BAG_ERROR_EXIT:
                    continue  # damaged bag: the stream was ended, the rest completes
                if rc not in (None, 0):
                    raise GraphError(f"node '{p.name}' failed (exit code {rc}): "
                                     f"{p.last_error()} (log: {p.log})")

        _bring_up_detector_side(procs, opts, int(env["ROS_DOMAIN_ID"]), check,
                                opts.timeout_s - (time.monotonic() - t0))
        while True:
            for p in procs:  # restart a detector side that died mid-stream
                rc = p.popen.poll()
                if (rc in (None, 0) or p.name not in RESTARTABLE
                        or restarts.get(p.name, 0) >= opts.restarts):
                    continue
                restarts[p.name] = restarts.get(p.name, 0) + 1
                print(f"sar-atd run: node '{p.name}' died (exit code {rc}): "
                      f"{p.last_error()}; restart {restarts[p.name]}/{opts.restarts} in "
                      f"{RESTART_DELAY_S:g} s", file=sys.stderr, flush=True)
                time.sleep(RESTART_DELAY_S)
                with open(p.log, "ab") as fh:
                    p.popen = subprocess.Popen(node_command(p.name, params_file,
                                                            opts.namespace),
                                               env=env, stdout=fh, stderr=subprocess.STDOUT)
                _bring_up_detector_side([p], opts, int(env["ROS_DOMAIN_ID"]), check,
                                        opts.timeout_s - (time.monotonic() - t0))
            check()
            if by_name["evaluator"].popen.poll() == 0:
                break
            if time.monotonic() - t0 > opts.timeout_s:
                raise GraphError(f"run timed out after {opts.timeout_s:g} s (logs: {log_dir})")
            time.sleep(0.1)
    finally:
        # a loaded machine can take seconds to unwind a node (rclpy shutdown, torch)
        _stop([p for p in procs if p.name != "evaluator"], STOP_GRACE_S)
        _stop([p for p in procs if p.name == "evaluator"], STOP_GRACE_S)
    for p in procs:
        if p.popen.returncode not in (0, -signal.SIGINT) and p.name != "scene_player":
            raise GraphError(f"node '{p.name}' failed at shutdown (exit code "
                             f"{p.popen.returncode}): {p.last_error()} (log: {p.log})")
    report = report_dir / "report.json"
    if not report.is_file():
        raise GraphError(f"node 'evaluator' wrote no report ({report}); logs: {log_dir}")
    out = json.loads(report.read_text())
    out["wall_s"] = time.monotonic() - t0
    out["restarts"] = restarts
    out["report_dir"] = str(report_dir)
    out["log_dir"] = str(log_dir)
    player = by_name["scene_player"]
    if player.popen.returncode == BAG_ERROR_EXIT:
        out["player_error"] = player.last_error()
    return out


def _f(v: Any, fmt: str = ".3f") -> str:
    return "n/a" if v is None else format(v, fmt)


def format_summary(result: dict[str, Any]) -> str:
    """The evaluator's summary as a few lines."""
    s = result["summary"]
    return "\n".join([
        f"detector {s.get('detector', '?')} ({s.get('backend', '?')}), model hash "
        f"{(s.get('model_hash') or '-')[:12]}",
        f"scenes: {s['scenes_evaluated']} evaluated / {s['scenes_published']} published, "
        f"missing {s['scenes_missing']}, malformed {s['scenes_malformed']}"
        + (" (" + ", ".join(f"{k} {v}" for k, v in (s.get("scenes_missing_by_reason") or {}
                                                   ).items() if v and k != "missing") + ")"
           if s["scenes_missing"] else ""),
        f"throughput: {_f(s['scenes_per_s'], '.2f')} scenes/s, "
        f"{_f(s['megapixels_per_s'], '.2f')} MP/s",
        f"latency (scene stamp -> detections): p50 {_f(s['latency_p50_ms'], '.0f')} ms, "
        f"p99 {_f(s['latency_p99_ms'], '.0f')} ms",
        f"AP25 {_f(s['AP25'])}  AP50 {_f(s['AP50'])}  AP70 {_f(s['AP70'])}  "
        f"(precision {_f(s['precision'])}, recall {_f(s['recall'])} at score "
        f"{_f(s['operating_threshold'], '.3g')})",
        *([f"restarted: {result['restarts']}"] if result.get("restarts") else []),
        *([f"bag replayed only in part: {result['player_error']}"]
          if result.get("player_error") else []),
        f"report: {result['report_dir']}",
    ])


def offline_scene_detector(params: str | Path | None = None, node: str = "scene_detector",
                           detector: str | None = None) -> Any:
    """The :class:`sar_atd.scene.SceneDetector` a detector node builds from ``params``, in
    this process (for comparing the graph with the same library calls in-process)."""
    from sar_atd.config import DetectorRuntimeConfig, SceneDetectorConfig, TilerConfig
    from sar_atd.runtime import resolve_detector
    from sar_atd.scene import SceneDetector

    p = node_params(params or DEFAULT_PARAMS, node)
    dcfg = DetectorRuntimeConfig.from_params(p)
    det, _ = resolve_detector(detector or dcfg.model, device=dcfg.device,
                              score_threshold=dcfg.score_threshold,
                              backend=dcfg.backend or None,
                              box_voting_iou=dcfg.box_voting_iou, tta=dcfg.tta,
                              verifier=dcfg.verifier)
    return SceneDetector(det, TilerConfig.from_params(p), SceneDetectorConfig.from_params(p))
