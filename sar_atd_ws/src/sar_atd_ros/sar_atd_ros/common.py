"""What every SAR-ATD node shares: typed parameters, explicit QoS, diagnostics, start-up.

Parameters: each node declares its parameters from typed dataclasses (the core's
``TilerConfig``, ``DetectorRuntimeConfig``, ``SceneDetectorConfig``, ``EvaluatorConfig`` and
this package's node configs) as ``section.field`` with the dataclass defaults, reads them
back (from ``--ros-args --params-file YAML`` or ``-p``) and builds the typed config, so the
same validation applies as offline. A parameter the node does not know is an error.

QoS (every topic relative to the node's namespace, default ``/sar``), each overridable by
``qos.<topic>.reliability`` (``reliable`` | ``best_effort``) and ``qos.<topic>.depth``:

================  ============  =====  ==================================================
topic             reliability   depth  why
================  ============  =====  ==================================================
``scene``         reliable      2      large images; the node drains it at once into its
                                       own bounded queue (``node.queue_depth``), which
                                       drops the oldest scene when the detector is slower
                                       than the input and counts it with the reason;
                                       keep-last 2 here only bounds what a stalled
                                       executor leaves in DDS (a sequence gap: lost in
                                       transport)
``tiles``         reliable,     16     a scene's batches must all arrive to be merged
                  transient
``detections``    reliable,     50     small; the evaluator must see every one, even when
                  transient            its subscription matched after the first scenes
``ground_truth``  reliable,     100    small; published before its scene
                  transient
``metrics``       reliable      10     running figures
``stream_end``    reliable,     1      last sequence number of a replay; late joiners
                  transient                still get it
``/clock``        reliable      1      bag time for ``use_sim_time`` (compatible with
                                       best-effort subscribers)
================  ============  =====  ==================================================
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from sar_atd.config import ROS_STANDARD_PARAMETERS, from_dict
from sar_atd.errors import ConfigError, SarAtdError

T = TypeVar("T")

QOS_DEFAULTS: dict[str, tuple[str, int]] = {
    "scene": ("reliable", 2),
    "tiles": ("reliable", 16),
    "detections": ("reliable", 50),
    "ground_truth": ("reliable", 100),
    "metrics": ("reliable", 10),
    "stream_end": ("reliable", 1),
}
"""topic -> (reliability, depth) defaults (module doc)."""

STREAM_END_TOPIC = "stream_end"

TRANSIENT_TOPICS = frozenset({"tiles", "detections", "ground_truth", STREAM_END_TOPIC})
"""Topics whose publishers keep their last ``depth`` messages for subscriptions that match
late (transient-local durability), so no scene is lost while the graph is still wiring up;
volatile subscribers (e.g. ``ros2 topic echo``) still match them."""


def _ros_value(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, os.PathLike):
        return str(value)
    return value


def declare_section(node: Any, cls: type, section: str) -> list[str]:
    """Declare ``section.field`` parameters of dataclass ``cls`` with its defaults.

    Types are left dynamic so a wrong type reaches the typed config, which names it.
    """
    from rcl_interfaces.msg import ParameterDescriptor

    names = []
    inst = cls()
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        name = f"{section}.{f.name}"
        node.declare_parameter(name, _ros_value(getattr(inst, f.name)),
                               ParameterDescriptor(dynamic_typing=True,
                                                   description=f"{cls.__name__}.{f.name}"))
        names.append(name)
    return names


def read_section(node: Any, cls: type[T], section: str) -> T:
    """The typed config of ``section`` from the node's parameters.

    Raises:
        ConfigError: a value of the wrong type or out of range (names the parameter).
    """
    params = node.get_parameters_by_prefix(section)
    data = {k: p.value for k, p in params.items()}
    hints = typing.get_type_hints(cls)
    for k, v in list(data.items()):  # ROS has no tuples: lists back to the declared shape
        if isinstance(v, list) and typing.get_origin(hints.get(k)) is tuple:
            data[k] = tuple(v)
    return from_dict(cls, data, where=f"{node.get_name()}: parameter '{section}'")


def check_unknown_parameters(node: Any) -> None:
    """Refuse parameters given to the node (file or ``-p``) that it never declared.

    Raises:
        ConfigError: naming the unknown parameters and the known ones.
    """
    overrides = getattr(node, "_parameter_overrides", {}) or {}
    declared = {p for p in node._parameters}  # noqa: SLF001 - rclpy keeps them here
    unknown = sorted(n for n in overrides if n not in declared
                     and n.split(".")[0] not in ROS_STANDARD_PARAMETERS)
    if unknown:
        raise ConfigError(f"{node.get_name()}: unknown parameter(s) {unknown}; known: "
                          f"{sorted(declared)}")


@dataclasses.dataclass
class QosConfig:
    """Reliability and depth of one topic (see the module table)."""

    reliability: str = "reliable"
    depth: int = 10

    def __post_init__(self) -> None:
        if self.reliability not in ("reliable", "best_effort"):
            raise ValueError(f"reliability must be 'reliable' or 'best_effort', got "
                             f"{self.reliability!r}")
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth}")


def declare_qos(node: Any, topics: list[str]) -> dict[str, Any]:
    """Declare ``qos.<topic>.reliability|depth`` and return rclpy QoS profiles per topic.

    Raises:
        ConfigError: an invalid reliability or depth (names the topic).
    """
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    out = {}
    for topic in topics:
        rel, depth = QOS_DEFAULTS[topic]
        for key, default in (("reliability", rel), ("depth", depth)):
            node.declare_parameter(f"qos.{topic}.{key}", default,
                                   ParameterDescriptor(dynamic_typing=True))
        data = {k: p.value for k, p in node.get_parameters_by_prefix(f"qos.{topic}").items()}
        cfg = from_dict(QosConfig, data, where=f"{node.get_name()}: parameter 'qos.{topic}'")
        out[topic] = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=cfg.depth,
            reliability=(ReliabilityPolicy.RELIABLE if cfg.reliability == "reliable"
                         else ReliabilityPolicy.BEST_EFFORT),
            durability=(DurabilityPolicy.TRANSIENT_LOCAL if topic in TRANSIENT_TOPICS
                        else DurabilityPolicy.VOLATILE))
    return out


class Diagnostics:
    """Publishes the node's counters on ``/diagnostics`` (diagnostic_msgs) once a period.

    Args:
        node: the rclpy node.
        period_s: publishing period.
        values: callable returning the key/value pairs to publish (and the level: OK unless
            ``error`` is set, WARN when ``warn`` is set).
    """

    def __init__(self, node: Any, values: Callable[[], dict[str, Any]],
                 period_s: float = 1.0) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        self.node = node
        self.values = values
        self.pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.timer = node.create_timer(period_s, self.publish)

    def publish(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        vals = dict(self.values())
        level, message = DiagnosticStatus.OK, "ok"
        if vals.get("error"):
            level, message = DiagnosticStatus.ERROR, str(vals["error"])
        elif vals.get("warn"):
            level, message = DiagnosticStatus.WARN, str(vals["warn"])
        st = DiagnosticStatus(level=level, name=self.node.get_fully_qualified_name(),
                              message=message, hardware_id=os.uname().nodename,
                              values=[KeyValue(key=str(k), value=str(v))
                                      for k, v in vals.items() if k not in ("error", "warn")])
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.node.get_clock().now().to_msg()
        self.pub.publish(arr)


_LIBC: Any = None


def release_free_heap() -> None:
    """Return the pages freed inside the C heap to the system (glibc ``malloc_trim``; a
    no-op where it is absent).

    A node that allocates and frees large temporaries periodically (the evaluator's
    metrics and saved state, once a second) otherwise keeps the freed pages mapped between
    live blocks, which reads as resident memory growing with the stream.
    """
    global _LIBC
    if _LIBC is None:
        import ctypes

        try:
            _LIBC = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC(0)


def stamp_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def run_node(name: str, factory: Callable[[], Any], args: list[str] | None = None) -> int:
    """``rclpy.init`` -> build the node -> spin until shutdown or Ctrl-C -> clean up.

    A native crash (segmentation fault) dumps the Python stacks to stderr (``faulthandler``).

    A bad parameter, a missing model or unreadable bag at start-up is reported as ONE line
    on stderr (``<name>: error: ...``) and exit code 2 (configuration) or 1 (runtime); the
    node's own ``finish()`` (when defined) runs before shutdown (reports are written there).
    """
    import faulthandler

    import rclpy
    from rclpy.executors import ExternalShutdownException

    # a crash in native code (DDS, rcl) leaves the Python stack of every thread on stderr,
    # i.e. in the node's log, instead of a bare exit code
    faulthandler.enable()
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(levelname)s %(message)s")
    try:
        rclpy.init(args=args if args is not None else sys.argv)
    except Exception as err:  # rcl rejects malformed --ros-args; one line, not a traceback
        print(f"{name}: error: {str(err).splitlines()[0]}", file=sys.stderr, flush=True)
        return 2
    node = None
    code = 0
    try:
        try:
            node = factory()
        except ConfigError as err:
            print(f"{name}: error: {err}", file=sys.stderr, flush=True)
            return 2
        except (SarAtdError, FileNotFoundError, ValueError) as err:
            print(f"{name}: error: {err}", file=sys.stderr, flush=True)
            return 1
        try:
            while rclpy.ok() and not getattr(node, "done", False):
                rclpy.spin_once(node, timeout_sec=0.1)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        code = int(getattr(node, "exit_code", 0))
    finally:
        if node is not None:
            finish = getattr(node, "finish", None)
            if finish is not None:
                try:
                    finish()
                except Exception as err:  # report problems of the final write, once
                    print(f"{name}: error: while finishing: {err}", file=sys.stderr,
                          flush=True)
                    code = code or 1
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return code
