"""ROS 2 launch file of the SAR-ATD node graph (the same graph ``sar-atd run`` starts).

Replay a bag (player -> detector side -> evaluator, ends when the evaluator has written its
report)::

    ros2 launch sar_atd_ros sar_atd.launch.py bag:=demo_bag model:=models/default.pt

Live sensor (no bag, no evaluator): the detector side listens to ``scene_topic``::

    ros2 launch sar_atd_ros sar_atd.launch.py scene_topic:=/radar/image deployment:=jetson_orin

Several live streams through one detector (tiles batched across streams; each stream
publishes ``<ns>/scene`` and gets ``<ns>/detections``)::

    ros2 launch sar_atd_ros sar_atd.launch.py streams:=/sar1,/sar2

Arguments (empty = keep the parameter file's value):

==================  =======================================================================
``bag``             rosbag2 folder/file to replay; empty: live input on ``scene_topic``
``scene_topic``     live scene topic the detector side subscribes to (remaps ``scene``)
``model``           ``cfar`` | ``cfar-os`` | model file (``.pt``, ``.onnx``, ``.engine``)
``backend``         ``torch`` | ``onnxruntime`` | ``tensorrt`` (empty: by file suffix)
``device``          ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` (detector and tiler)
``deployment``      parameter file of the package: ``default`` | ``cpu`` | ``desktop_gpu`` |
                    ``jetson_orin`` (default: ``$SAR_ATD_DEPLOYMENT``, else ``default``)
``params_file``     any parameter file (overrides ``deployment``)
``namespace``       namespace of the graph (default ``/sar``; one per stream)
``layout``          ``scene_detector`` (tiler + detector in one process) or ``split``
``streams``         comma-separated stream namespaces sharing one ``multi_scene_detector``
                    (live input; replaces ``layout``, ``namespace`` and ``bag``)
``respawn``         restart the long-running nodes when they die (``true``/``false``): the
                    detector side and the evaluator, ``RESPAWN_DELAY_S`` later
``report_dir``      evaluator report folder (empty: no report files)
``mode``            player mode: ``realtime`` | ``speed`` | ``max_rate`` | ``lossless``
``wait_for_model``  retry the detector's configure until its model file appears
``discovery_range`` ``LOCALHOST`` (default: nothing leaves the host) | ``SUBNET`` | ...
==================  =======================================================================

The detector side (``scene_detector``, or ``detector`` in the split layout) is a managed
lifecycle node started with ``node.autostart: false``: this file configures it when its
process starts (model load), activates it once configured, and on a failed configure
either retries every 2 s (``wait_for_model:=true``) or stops the launch. A respawned
process is configured and activated again the same way.

Respawn (``respawn:=true``, the default) covers the nodes that run for the whole
graph, the same set ``sar-atd run --restarts`` restarts (``runner.RESTARTABLE``), with the
same delay: the detector side (``scene_detector``, or ``tiler`` + ``detector``, or
``multi_scene_detector``) and the evaluator, which resumes from the state it saved with
its last metrics update. An evaluator that exits cleanly (the replay is accounted for)
ends the launch; one that dies is respawned. The player is not respawned: it would
replay the bag from its start.

Uses only ``launch``/``launch_ros`` APIs present from ROS 2 Humble on. Node names,
executables, parameter names and topics are those of ``sar_atd_ros.runner`` (checked by
``tests/test_launch.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from launch import LaunchContext, LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    EmitEvent,
    LogInfo,
    OpaqueFunction,
    RegisterEventHandler,
    SetEnvironmentVariable,
    TimerAction,
)
from launch.event_handlers import OnProcessExit, OnProcessStart
from launch.events import Shutdown, matches_action
from launch.substitutions import EnvironmentVariable, LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

PACKAGE = "sar_atd_ros"
# The package's parameter files: beside this file's real location (source tree, top-level
# link, or the installed share folder alike).
PARAMS_DIR = Path(__file__).resolve().parents[1] / "params"
LAYOUTS = {"scene_detector": ("scene_detector",), "split": ("tiler", "detector")}
TRUE = ("true", "1", "yes", "on")
RESPAWN_DELAY_S = 2.0
"""Seconds before a dead node is started again (``runner.RESTART_DELAY_S`` is the same)."""

ARGUMENTS: list[tuple[str, Any, str]] = [
    ("bag", "", "rosbag2 folder/file to replay; empty: live input on scene_topic"),
    ("scene_topic", "", "live scene topic of the detector side (remaps 'scene')"),
    ("model", "", "cfar | cfar-os | model file (.pt, .onnx, .engine); empty: params file"),
    ("backend", "", "torch | onnxruntime | tensorrt; empty: by file suffix / params file"),
    ("device", "", "auto | cpu | cuda | cuda:N; empty: params file"),
    ("deployment", EnvironmentVariable("SAR_ATD_DEPLOYMENT", default_value="default"),
     "parameter file of the package: default | cpu | desktop_gpu | jetson_orin"),
    ("params_file", "", "parameter file (overrides deployment)"),
    ("namespace", "/sar", "namespace of the graph (one per stream)"),
    ("layout", "scene_detector", "scene_detector (one process) | split (tiler + detector)"),
    ("streams", "", "comma-separated namespaces of live streams sharing one detector"),
    ("respawn", "true", "restart the detector side and the evaluator when they die"),
    ("report_dir", "", "evaluator report folder (empty: no report files)"),
    ("mode", "", "player mode: realtime | speed | max_rate | lossless; empty: params file"),
    ("wait_for_model", "false", "retry the detector's configure until its model file exists"),
    ("discovery_range", "LOCALHOST",
     "DDS discovery: LOCALHOST (this host only) | SUBNET | SYSTEM_DEFAULT"),
]


def _arg(context: LaunchContext, name: str) -> str:
    return LaunchConfiguration(name).perform(context).strip()


def _params_file(context: LaunchContext) -> str:
    explicit = _arg(context, "params_file")
    if explicit:
        path = Path(explicit).expanduser()
    else:
        path = PARAMS_DIR / f"{_arg(context, 'deployment') or 'default'}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
        raise RuntimeError(f"parameter file not found: {path} (deployments: {known})")
    return str(path)


def _graph(context: LaunchContext) -> list[Any]:
    """The node actions for the resolved arguments (parameter file + overrides)."""
    params = _params_file(context)
    namespace = _arg(context, "namespace") or "/sar"
    layout = _arg(context, "layout")
    if layout not in LAYOUTS:
        raise RuntimeError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
    bag = _arg(context, "bag")
    scene_topic = _arg(context, "scene_topic")
    respawn = _arg(context, "respawn").lower() in TRUE
    model, backend, device = (_arg(context, n) for n in ("model", "backend", "device"))
    report_dir, mode = _arg(context, "report_dir"), _arg(context, "mode")

    wait_for_model = _arg(context, "wait_for_model").lower() in TRUE
    detector_over: dict[str, Any] = {"node.autostart": False}  # transitions driven below
    if model:
        detector_over["detector.model"] = model
    if backend:
        detector_over["detector.backend"] = backend
    if device:  # tiles live on the detector's device
        detector_over["detector.device"] = device
        detector_over["tiler.device"] = device
    tiler_over: dict[str, Any] = {}
    if device:
        tiler_over["tiler.device"] = device
    remap = [("scene", scene_topic)] if scene_topic and not bag else []

    def node(executable: str, overrides: dict[str, Any], **kw: Any) -> Node:
        return Node(package=PACKAGE, executable=executable, name=executable,
                    namespace=namespace, parameters=[params, overrides], output="screen",
                    emulate_tty=True, **kw)

    def managed(executable: str, overrides: dict[str, Any], **kw: Any) -> list[Any]:
        """The lifecycle node and the events that configure and activate it."""
        det = LifecycleNode(package=PACKAGE, executable=executable, name=executable,
                            namespace=namespace, parameters=[params, overrides],
                            output="screen", emulate_tty=True, **kw)

        def transition(transition_id: int) -> EmitEvent:
            return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(det),
                                               transition_id=transition_id))

        on_failure: list[Any] = (
            [TimerAction(period=2.0, actions=[transition(Transition.TRANSITION_CONFIGURE)])]
            if wait_for_model else
            [LogInfo(msg=f"{executable}: configure failed (see its error line); stopping"),
             EmitEvent(event=Shutdown(reason=f"{executable} failed to configure"))])
        return [
            det,
            RegisterEventHandler(OnProcessStart(
                target_action=det, on_start=[transition(Transition.TRANSITION_CONFIGURE)])),
            RegisterEventHandler(OnStateTransition(
                target_lifecycle_node=det, start_state="configuring", goal_state="inactive",
                entities=[transition(Transition.TRANSITION_ACTIVATE)])),
            RegisterEventHandler(OnStateTransition(
                target_lifecycle_node=det, start_state="configuring",
                goal_state="unconfigured", entities=on_failure)),
        ]

    discovery = _arg(context, "discovery_range") or "LOCALHOST"
    actions: list[Any] = [
        # Jazzy and later read the range; Humble reads ROS_LOCALHOST_ONLY
        SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", discovery),
        SetEnvironmentVariable("ROS_LOCALHOST_ONLY", "1" if discovery == "LOCALHOST" else "0"),
        LogInfo(msg=f"SAR-ATD graph: params {params}, namespace {namespace}, layout "
                    f"{layout}, {'bag ' + bag if bag else 'live input'}"),
    ]
    streams = [s.strip() for s in _arg(context, "streams").split(",") if s.strip()]
    if streams:  # several live streams, one detector batching across them
        if bag:
            raise RuntimeError("streams:= serves live streams; replay a bag per namespace "
                               "with one launch each instead")
        multi_over = {**detector_over, "streams.namespaces": streams}
        return [*actions, *managed("multi_scene_detector", multi_over, respawn=respawn,
                                   respawn_delay=RESPAWN_DELAY_S)]
    if layout == "scene_detector":
        actions += managed("scene_detector", detector_over, remappings=remap, respawn=respawn,
                           respawn_delay=RESPAWN_DELAY_S)
    else:
        actions.append(node("tiler", tiler_over, remappings=remap, respawn=respawn,
                            respawn_delay=RESPAWN_DELAY_S))
        actions += managed("detector", detector_over, respawn=respawn,
                           respawn_delay=RESPAWN_DELAY_S)
    if bag:
        evaluator_over: dict[str, Any] = {"report.exit_on_stream_end": True}
        if report_dir:
            evaluator_over["report.dir"] = report_dir
        evaluator = node("evaluator", evaluator_over, respawn=respawn,
                         respawn_delay=RESPAWN_DELAY_S)

        def evaluator_exit(event: Any, _context: LaunchContext) -> list[Any]:
            """A clean exit ends the replay; a crash is respawned (when asked)."""
            if event.returncode == 0 or not respawn:
                return [EmitEvent(event=Shutdown(reason="evaluator finished"))]
            return [LogInfo(msg=f"evaluator died (exit code {event.returncode}); respawned "
                                f"in {RESPAWN_DELAY_S:g} s, resuming from its saved state")]

        player_over: dict[str, Any] = {"player.bag": bag, "player.wait_subscribers": 1,
                                       "player.wait_ground_truth_subscribers": 1,
                                       "player.wait_detections_publishers": 1}
        if mode:
            player_over["player.mode"] = mode
        actions += [
            evaluator,
            node("scene_player", player_over),
            # the replay is over once the evaluator has accounted for every scene
            RegisterEventHandler(OnProcessExit(target_action=evaluator,
                                               on_exit=evaluator_exit)),
        ]
    return actions


def generate_launch_description() -> LaunchDescription:
    """Arguments (module doc) and the graph built from them at launch time."""
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=doc)
          for name, default, doc in ARGUMENTS),
        OpaqueFunction(function=_graph),
    ])

