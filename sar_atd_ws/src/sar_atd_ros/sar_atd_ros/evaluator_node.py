"""``evaluator`` node: running AP of the detections against the bag's ground truth.

Joins ``detections`` and ``ground_truth`` of a scene by their header stamp (the player
restamps both identically); the ground truth carries the player's sequence number, so
gaps reveal scenes lost anywhere in the graph. Feeds
:class:`sar_atd.streaming.MetricAccumulator` (the same numbers as ``sar-atd eval``) and
publishes ``metrics`` (sar_atd_msgs/Metrics) every ``report.publish_period_s``: AP25/AP50/
AP70, precision/recall at the model's operating threshold (IoU 0.5), end-to-end latency
(scene stamp -> detections published, ``SceneDetections.published_stamp``; the arrival
time here when absent) p50/p99, scenes/s, megapixels/s, missing and malformed counts.
When ``stream_end`` arrives (the player's last sequence number) it waits until every scene
is accounted for, or ``report.drain_timeout_s``, writes the report (JSON + PR plot +
annotated example scenes) on shutdown, and exits when ``report.exit_on_stream_end`` is set.

Every scene the player sent ends in one outcome of the report's ``scenes_missing``
breakdown (:func:`sar_atd.scene_flow.account_scenes`, from the counters the detector side
publishes on ``/diagnostics`` and this node's own): dropped for overload (queue full,
stale, stopped, incomplete tile batches), rejected as malformed (detector side, or
malformed ground truth here), without ground truth (detections came, the bag had none),
lost in transport (never reached the detector side, or its detections never came here)
and lost inside a node (in flight when it died). A scene without ground truth and a
malformed ground truth (NaN, inverted, outside the image, wrong array length) are logged
once each and counted; the next scene is evaluated as usual.

Memory does not grow with the length of the stream: the metric state is bounded
(:class:`~sar_atd.streaming.MetricAccumulator`), messages waiting for their partner by
``report.max_unmatched``, the scenes remembered (to recognise re-sent copies and count
distinct scenes) by ``report.recent_keys`` (:class:`~sar_atd.scene_flow.RecentKeys`), and
latencies by :class:`~sar_atd.streaming.LatencyStats` (exact up to
``report.latency_exact_max``, then 1 % bins). ``SAR_ATD_MEMTRACE`` traces its memory
(:mod:`sar_atd_ros.memtrace`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.node import Node

from sar_atd.config import EvaluatorConfig
from sar_atd_ros.common import (
    STREAM_END_TOPIC,
    Diagnostics,
    check_unknown_parameters,
    declare_qos,
    declare_section,
    read_section,
    release_free_heap,
    run_node,
    stamp_ns,
)


@dataclasses.dataclass
class ReportConfig:
    """Reporting parameters of the evaluator (section ``report``).

    Attributes:
        dir: report folder written on shutdown ("" = no report files).
        publish_period_s: period of the ``metrics`` topic.
        exit_on_stream_end: stop once the replay ended and every scene is accounted for.
        drain_timeout_s: after ``stream_end``, wait at most this long for late detections.
        operating_threshold: score threshold for precision/recall (< 0 = the model's,
            carried in the detections).
        max_unmatched: detections/ground truth waiting for their partner, kept at most
            (the oldest detections past it are counted without ground truth).
        recent_keys: scenes (stamps, sequence numbers) remembered to recognise a copy
            re-sent to a restarted evaluator and to count distinct scenes; above the
            transient-local history depths of ``detections`` and ``ground_truth``.
        exact_max_predictions: predictions whose per-scene records are kept for exact
            metrics; past this many they fold into the score histogram
            (:class:`sar_atd.streaming.MetricAccumulator`; the report's ``ap_exact``).
            Each metrics update recomputes the exact metrics over every record (CPU and
            transient memory grow with them: seconds per update at 10,000 CFAR
            predictions on a loaded 2-core CPU), so a streaming node keeps this small;
            short runs (a few scenes) stay exact.
        latency_exact_max: latencies kept exactly; past this many, latency percentiles
            come from 1 % logarithmic bins (at most 0.5 % off;
            :class:`sar_atd.streaming.LatencyStats`).
        n_examples: annotated scenes in the report (the first ones; their pixels are the
            only scene data the evaluator keeps).
        settle_s: after ``stream_end``, the detector side's counters must be this much
            newer before the scenes still missing are put down as lost (a sample lost in
            transport is repaired within ~3 s).
        save_state: with ``dir`` set, save the evaluation state (compact per-scene
            records and counters) to ``dir/evaluator_state.pkl`` with each metrics update;
            a restarted evaluator resumes from it, and it is removed once the final report
            is written.
    """

    dir: str = ""
    publish_period_s: float = 1.0
    exit_on_stream_end: bool = True
    drain_timeout_s: float = 30.0
    operating_threshold: float = -1.0
    max_unmatched: int = 256
    recent_keys: int = 1024
    exact_max_predictions: int = 2_000
    latency_exact_max: int = 100_000
    n_examples: int = 3
    settle_s: float = 4.0
    save_state: bool = True

    def __post_init__(self) -> None:
        if not self.publish_period_s > 0:
            raise ValueError(f"publish_period_s must be > 0, got {self.publish_period_s}")
        if not self.drain_timeout_s >= 0:
            raise ValueError(f"drain_timeout_s must be >= 0, got {self.drain_timeout_s}")
        if self.n_examples < 0:
            raise ValueError(f"n_examples must be >= 0, got {self.n_examples}")
        if not self.settle_s >= 0:
            raise ValueError(f"settle_s must be >= 0, got {self.settle_s}")
        if self.max_unmatched < 1:
            raise ValueError(f"max_unmatched must be >= 1, got {self.max_unmatched}")
        if self.recent_keys < 1:
            raise ValueError(f"recent_keys must be >= 1, got {self.recent_keys}")
        if self.exact_max_predictions < 0:
            raise ValueError(f"exact_max_predictions must be >= 0, got "
                             f"{self.exact_max_predictions}")
        if self.latency_exact_max < 4:
            raise ValueError(f"latency_exact_max must be >= 4, got {self.latency_exact_max}")


def json_safe(x: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python, recursively (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


class EvaluatorNode(Node):
    """Streaming evaluation (module doc)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__("evaluator", **kw)
        from sar_atd_msgs.msg import GroundTruth, Metrics, SceneDetections
        from std_msgs.msg import UInt64

        from sar_atd.scene_flow import RecentKeys
        from sar_atd.streaming import LatencyStats, MetricAccumulator

        declare_section(self, EvaluatorConfig, "evaluator")
        declare_section(self, ReportConfig, "report")
        qos = declare_qos(self, ["scene", "detections", "ground_truth", "metrics",
                                STREAM_END_TOPIC])
        check_unknown_parameters(self)
        self.cfg = read_section(self, EvaluatorConfig, "evaluator")
        self.rcfg = read_section(self, ReportConfig, "report")
        self.acc = MetricAccumulator(self.cfg.iou_thresholds, self.cfg.method,
                                     exact_max_predictions=self.rcfg.exact_max_predictions)
        self._Metrics = Metrics
        self.pub = self.create_publisher(Metrics, "metrics", qos["metrics"])
        self.create_subscription(SceneDetections, "detections", self._on_dets,
                                 qos["detections"])
        self.create_subscription(GroundTruth, "ground_truth", self._on_gt, qos["ground_truth"])
        self.create_subscription(UInt64, STREAM_END_TOPIC, self._on_end, qos[STREAM_END_TOPIC])
        # counters of the detector side (scenes it rejected as malformed, NaN/inf scenes)
        # read from /diagnostics, so the report accounts for scenes refused upstream
        from diagnostic_msgs.msg import DiagnosticArray

        self.upstream: dict[str, dict[str, int]] = {}       # node -> latest counters
        self.upstream_base: dict[str, dict[str, int]] = {}  # counters of earlier processes
        self.upstream_t: dict[str, float] = {}  # node -> when its counters came (monotonic)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.examples: dict[int, dict[str, Any]] = {}  # stamp -> image, gt, boxes, scores
        self.example_sub = None
        if self.rcfg.dir and self.rcfg.n_examples:
            from sensor_msgs.msg import Image

            self.example_sub = self.create_subscription(Image, "scene", self._on_scene,
                                                        qos["scene"])
        # every per-scene structure is bounded: waiting messages by max_unmatched, the
        # scenes remembered by recent_keys, latencies by LatencyStats
        self.gts: OrderedDict[int, Any] = OrderedDict()      # stamp -> ground truth
        self.dets: OrderedDict[int, tuple[Any, float]] = OrderedDict()  # stamp -> (msg, t)
        n_keys = self.rcfg.recent_keys
        self.seen_seq = RecentKeys(n_keys)  # ground-truth sequence numbers (counted)
        # stamps of evaluated scenes: transient-local topics hand a restarted evaluator the
        # recent history again, which must not be counted twice
        self.evaluated = RecentKeys(n_keys)
        # stamps of scenes whose ground truth was refused (their detections are not
        # counted again as scenes without ground truth)
        self.rejected_gt = RecentKeys(n_keys)
        self.arrived = RecentKeys(n_keys)  # stamps of scenes whose detections came (counted)
        self.max_gt_stamp = 0
        self.max_seq = 0
        self.n_eval = self.n_malformed = self.n_without_gt = self.n_pixels = 0
        self.latency_ms = LatencyStats(self.rcfg.latency_exact_max)
        self.proc_ms = LatencyStats(self.rcfg.latency_exact_max)
        self.t_first: float | None = None  # earliest scene stamp (s, wall clock)
        self.t_last = 0.0                  # last detections arrival (s)
        self.t_first_arrival: float | None = None
        self.detector_info: dict[str, Any] = {}
        self.op_threshold = float("nan")
        self.end_seq: int | None = None
        self.end_at = 0.0
        self.done = False
        self.exit_code = 0
        self.last_error = ""
        self.resumed = 0
        self._resume()
        self.diag = Diagnostics(self, self._diag_values)
        self.create_timer(self.rcfg.publish_period_s, self._publish)
        self.create_timer(0.05, self._check_end)
        from sar_atd_ros.memtrace import maybe_trace

        self.memtrace = maybe_trace(self, self._sizes)

    # ---- inputs -------------------------------------------------------------------------
    def _on_gt(self, msg: Any) -> None:
        from sar_atd_ros.convert import gt_from_msg

        key = stamp_ns(msg.header.stamp)
        seq = int(msg.sequence)
        self.max_seq = max(self.max_seq, seq)
        if key in self.evaluated or key in self.rejected_gt:
            return
        self.max_gt_stamp = max(self.max_gt_stamp, key)
        self.seen_seq.add(seq)
        try:
            gt_from_msg(msg)
        except ValueError as err:
            self.rejected_gt.add(key)
            self.dets.pop(key, None)
            self._malformed(str(err))
            self._flush_without_gt()
            return
        if key in self.dets:
            det, t = self.dets.pop(key)
            self._evaluate(det, msg, t)
        else:
            self.gts[key] = msg
            while len(self.gts) > self.rcfg.max_unmatched:
                self.gts.popitem(last=False)
        self._flush_without_gt()

    def _on_dets(self, msg: Any) -> None:
        t = time.time()
        key = stamp_ns(msg.header.stamp)
        self.arrived.add(key)
        if key in self.evaluated or key in self.rejected_gt:
            return
        gt = self.gts.pop(key, None)
        if gt is None:
            self.dets[key] = (msg, t)
            while len(self.dets) > self.rcfg.max_unmatched:
                self._without_gt(*self.dets.popitem(last=False))
            self._flush_without_gt()
            return
        self._evaluate(msg, gt, t)

    def _flush_without_gt(self) -> None:
        """Detections older than the newest ground truth never get one: the player sends a
        scene's ground truth before the scene, in order, on a reliable topic."""
        while self.dets:
            key = next(iter(self.dets))
            if key >= self.max_gt_stamp:
                return
            self._without_gt(key, self.dets.pop(key))

    def _without_gt(self, key: int, item: tuple[Any, float]) -> None:
        self.n_without_gt += 1
        self.evaluated.add(key)  # a re-sent copy (transient-local) is not counted again
        self.get_logger().warning(
            f"scene stamped {key / 1e9:.3f} s (detector scene {int(item[0].sequence)}) has "
            f"no ground truth: not evaluated (scenes without ground truth: "
            f"{self.n_without_gt})")

    def _on_scene(self, msg: Any) -> None:
        """Keep an 8-bit rendering of the first scenes for the report's examples."""
        from sar_atd.config import TilerConfig
        from sar_atd.tiling import Tiler
        from sar_atd_ros.image import image_to_array

        try:
            img = Tiler(TilerConfig(device="cpu", amplitude_ref=0.0)).prepare(
                image_to_array(msg)).image.numpy()
        except (ValueError, Exception) as err:  # examples are optional: never fail on them
            self.get_logger().warning(f"example scene not kept: {err}")
            return
        self.examples[stamp_ns(msg.header.stamp)] = {"image": img}
        if len(self.examples) >= self.rcfg.n_examples and self.example_sub is not None:
            self.destroy_subscription(self.example_sub)
            self.example_sub = None

    CURVE_POINTS_LIVE = 1000
    CURVE_POINTS_REPORT = 20000
    """PR-curve points kept for the running figures / in the report (AP values come from
    the full curves: exact, or per score bin past the accumulator's exact limit, as the
    metrics' ``ap_exact`` and ``score_bins`` say)."""
    UPSTREAM_NODES = ("scene_detector", "detector", "tiler")
    UPSTREAM_COUNTERS = ("scenes_received", "scenes_published", "scenes_malformed",
                         "scenes_nonfinite", "scenes_dropped_queue_full",
                         "scenes_dropped_stale", "scenes_dropped_stopped", "scenes_incomplete",
                         "scene_queue_depth")
    DROP_COUNTERS = ("scenes_dropped_queue_full", "scenes_dropped_stale",
                     "scenes_dropped_stopped", "scenes_incomplete")

    def _on_diagnostics(self, msg: Any) -> None:
        ns = self.get_namespace().rstrip("/")
        for st in msg.status:
            head, _, node = st.name.rpartition("/")
            if head != ns or node not in self.UPSTREAM_NODES:
                continue
            vals = {kv.key: kv.value for kv in st.values}
            new = {k: int(vals[k]) for k in self.UPSTREAM_COUNTERS if str(vals.get(k, "")
                                                                         ).isdigit()}
            old = self.upstream.get(node, {})
            if new.get("scenes_received", 0) < old.get("scenes_received", 0):  # restarted
                base = self.upstream_base.setdefault(node, {})
                for k, v in old.items():
                    if k != "scene_queue_depth":  # a level, not a count
                        base[k] = base.get(k, 0) + v
            self.upstream[node] = new
            self.upstream_t[node] = time.monotonic()

    def _upstream(self, key: str, node: str | None = None) -> int:
        return sum(c.get(key, 0) for d in (self.upstream, self.upstream_base)
                   for n, c in d.items() if node is None or n == node)

    def flow(self) -> dict[str, int] | None:
        """Outcome of every scene sent (:func:`sar_atd.scene_flow.account_scenes`); None
        until the detector side's counters came (no reasons can be given without them)."""
        from sar_atd.scene_flow import account_scenes

        if not self.upstream:
            return None
        entry = "tiler" if "tiler" in self.upstream else "scene_detector"
        last = "detector" if "detector" in self.upstream else "scene_detector"
        return account_scenes(
            max(self.max_seq, self.end_seq or 0), self.n_eval,
            received=self._upstream("scenes_received", entry),
            dropped=sum(self._upstream(k) for k in self.DROP_COUNTERS),
            rejected=self._upstream("scenes_malformed"),
            node_published=self._upstream("scenes_published", last),
            evaluator_rejected=self.n_malformed, without_gt=self.n_without_gt + len(self.dets),
            arrived=self.arrived.n_distinct)

    def _on_end(self, msg: Any) -> None:
        if self.end_seq is None:
            self.end_seq = int(msg.data)
            self.end_at = time.monotonic()
            self.get_logger().info(f"stream ended at scene {self.end_seq}")

    def _malformed(self, why: str) -> None:
        self.n_malformed += 1
        self.last_error = why
        self.get_logger().error(f"rejected message: {why}")

    def _evaluate(self, det: Any, gt: Any, t_arrival: float) -> None:
        from sar_atd_ros.convert import detections_from_msg, gt_from_msg

        try:
            boxes, scores = detections_from_msg(det)
            self.acc.update((boxes, scores), gt_from_msg(gt))
        except ValueError as err:
            self._malformed(str(err))
            return
        self.n_eval += 1
        self.evaluated.add(stamp_ns(det.header.stamp))
        ex = self.examples.get(stamp_ns(det.header.stamp))
        if ex is not None:
            ex.update(gt=gt_from_msg(gt), boxes=boxes, scores=scores, name=gt.scene_name,
                      seq=int(gt.sequence))
        stamp_s = stamp_ns(det.header.stamp) / 1e9
        published = stamp_ns(det.published_stamp) / 1e9
        if published > 0:  # the detector's publish time: this node's own lag excluded
            t_arrival = published
        self.latency_ms.add((t_arrival - stamp_s) * 1e3)
        self.proc_ms.add(float(det.processing_ms))
        self.t_first = stamp_s if self.t_first is None else min(self.t_first, stamp_s)
        self.t_last = max(self.t_last, t_arrival)
        if self.t_first_arrival is None or t_arrival < self.t_first_arrival:
            self.t_first_arrival = t_arrival
        self.n_pixels += int(det.scene_height) * int(det.scene_width)
        self.op_threshold = float(det.operating_threshold)
        self.detector_info = {"detector": det.detector, "backend": det.backend,
                              "model_hash": det.model_hash}

    # ---- outputs ------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Every figure of the run so far (JSON-ready)."""
        m = self.acc.compute(self.CURVE_POINTS_LIVE) if self.n_eval else {}
        op = (self.rcfg.operating_threshold if self.rcfg.operating_threshold >= 0
              else self.op_threshold)
        prec = rec = float("nan")
        if m.get("n_pred") and math.isfinite(op):  # on the full curve
            prec, rec = self.acc.precision_recall_at(op, 0.5)
        span = self.t_last - self.t_first if self.t_first is not None else 0.0
        published = max(self.max_seq, self.end_seq or 0)
        return {
            "scenes_published": published,
            "scenes_evaluated": self.n_eval,
            "scenes_missing": max(0, published - self.n_eval),
            "ground_truth_lost": published - self.seen_seq.n_distinct,
            "scenes_malformed": self.n_malformed,
            "scenes_rejected_upstream": self._upstream("scenes_malformed"),
            "evaluator_restarts_resumed": self.resumed,
            "scenes_nonfinite_upstream": self._upstream("scenes_nonfinite"),
            "detections_without_gt": self.n_without_gt + len(self.dets),
            "scenes_missing_by_reason": self.flow(),
            "AP25": m.get("AP25", float("nan")), "AP50": m.get("AP50", float("nan")),
            "AP70": m.get("AP70", float("nan")), "ap_50_95": m.get("ap_50_95", float("nan")),
            "operating_threshold": op, "precision": prec, "recall": rec,
            "latency_p50_ms": self.latency_ms.percentile(50),
            "latency_p99_ms": self.latency_ms.percentile(99),
            # p50/p99 of each quarter of the scenes in arrival order: a growing backlog
            # shows as rising quarters
            "latency_quarters_p50_p99_ms": self.latency_ms.quarters(),
            "latency_exact": self.latency_ms.exact,
            "processing_p50_ms": self.proc_ms.percentile(50),
            "scenes_per_s": self.n_eval / span if span > 0 else float("nan"),
            "megapixels_per_s": self.n_pixels / 1e6 / span if span > 0 else float("nan"),
            # steady state: scenes after the first / time between first and last arrival
            "scenes_per_s_steady": ((self.n_eval - 1) / (self.t_last - self.t_first_arrival)
                                    if self.n_eval > 1 and self.t_first_arrival is not None
                                    and self.t_last > self.t_first_arrival else float("nan")),
            "n_gt": m.get("n_gt", 0), "n_pred": m.get("n_pred", 0),
            **self.detector_info,
        }

    # ---- state kept across a restart ---------------------------------------------------
    STATE_FIELDS = ("acc", "seen_seq", "evaluated", "rejected_gt", "arrived", "max_gt_stamp",
                    "max_seq",
                    "n_eval", "n_malformed", "n_without_gt", "n_pixels", "latency_ms",
                    "proc_ms", "t_first", "t_last",
                    "t_first_arrival", "detector_info", "op_threshold", "upstream",
                    "upstream_base", "resumed")

    def _state_path(self) -> Path | None:
        if not (self.rcfg.dir and self.rcfg.save_state):
            return None
        return Path(self.rcfg.dir) / "evaluator_state.pkl"

    def _save_state(self) -> None:
        import pickle

        from sar_atd.atomic import atomic_write_bytes

        path = self._state_path()
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, pickle.dumps({k: getattr(self, k) for k in self.STATE_FIELDS}))

    def _resume(self) -> None:
        """Continue from the state an earlier (crashed) evaluator of this run saved."""
        import pickle

        path = self._state_path()
        if path is None or not path.is_file():
            return
        try:
            state = pickle.loads(path.read_bytes())  # noqa: S301 - written by this node
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError) as err:
            self.get_logger().error(f"evaluator state {path} unreadable ({err}); starting "
                                    f"afresh")
            return
        for k in self.STATE_FIELDS:
            if k in state:
                setattr(self, k, self._bounded(k, state[k]))
        self.resumed += 1
        self.get_logger().warning(f"resumed from {path}: {self.n_eval} scene(s) already "
                                  f"evaluated")

    def _sizes(self) -> dict[str, int]:
        """Entries of every per-scene container (memory diagnosis, ``memtrace``)."""
        return {"gts": len(self.gts), "dets": len(self.dets), "seen_seq": len(self.seen_seq),
                "evaluated": len(self.evaluated), "rejected_gt": len(self.rejected_gt),
                "arrived": len(self.arrived), "latency_bytes": self.latency_ms.nbytes(),
                "examples": len(self.examples), "n_eval": self.n_eval,
                "max_seq": self.max_seq, "acc_bytes": self.acc.nbytes()}

    def _bounded(self, field: str, value: Any) -> Any:
        """A saved state's field in its bounded form (older states kept plain sets of
        stamps and lists of latencies)."""
        from sar_atd.scene_flow import RecentKeys
        from sar_atd.streaming import LatencyStats

        if field in ("seen_seq", "evaluated", "rejected_gt", "arrived") and not isinstance(
                value, RecentKeys):
            return RecentKeys.from_keys(value, self.rcfg.recent_keys)
        if field in ("latency_ms", "proc_ms") and not isinstance(value, LatencyStats):
            return LatencyStats.from_values(value, exact_max=self.rcfg.latency_exact_max)
        return value

    def _diag_values(self) -> dict[str, Any]:
        s = self.summary()
        flow = s.pop("scenes_missing_by_reason") or {}
        vals = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in s.items()}
        vals.update({f"missing_{k}": v for k, v in flow.items() if k != "missing"})
        vals.update({"ground_truth_waiting": len(self.gts), "detections_waiting": len(self.dets),
                     "waiting_limit": self.rcfg.max_unmatched, "warn": self.last_error})
        return vals

    def _publish(self) -> None:
        s = self.summary()
        msg = self._Metrics()
        msg.header.stamp = self.get_clock().now().to_msg()
        for name, key in (("scenes_evaluated", "scenes_evaluated"),
                          ("scenes_published", "scenes_published"),
                          ("scenes_missing", "scenes_missing"),
                          ("scenes_malformed", "scenes_malformed"),
                          ("detections_without_gt", "detections_without_gt")):
            setattr(msg, name, int(s[key]))
        for name, key in (("ap25", "AP25"), ("ap50", "AP50"), ("ap70", "AP70"),
                          ("operating_threshold", "operating_threshold"),
                          ("precision", "precision"), ("recall", "recall"),
                          ("latency_p50_ms", "latency_p50_ms"),
                          ("latency_p99_ms", "latency_p99_ms"),
                          ("scenes_per_s", "scenes_per_s"),
                          ("megapixels_per_s", "megapixels_per_s")):
            setattr(msg, name, float(s[key]))
        self.pub.publish(msg)
        self._save_state()
        release_free_heap()  # the metrics and the saved state freed large temporaries

    def _check_end(self) -> None:
        if self.end_seq is None or self.done:
            return
        complete = self.n_eval + self.n_malformed >= self.end_seq or self._settled()
        if complete or time.monotonic() - self.end_at > self.rcfg.drain_timeout_s:
            if not complete:
                self.get_logger().warning(
                    f"{self.end_seq - self.n_eval} scene(s) not evaluated "
                    f"{self.rcfg.drain_timeout_s:g} s after the stream ended")
            flow = self.flow()
            if flow is not None and flow["missing"]:
                self.get_logger().info("scenes not evaluated: " + ", ".join(
                    f"{k} {v}" for k, v in flow.items() if v))
            self._publish()
            if self.rcfg.exit_on_stream_end:
                self.done = True

    def _settled(self) -> bool:
        """Every missing scene has its reason: the detector side's counters, newer than the
        end of the stream by ``settle_s``, show nothing waiting or in processing, and every
        scene it published detections for arrived here."""
        if not self.upstream or any(t < self.end_at + self.rcfg.settle_s
                                    for t in self.upstream_t.values()):
            return False
        f = self.flow()
        lost_after = (self._upstream("scenes_published", "detector" if "detector" in
                                     self.upstream else "scene_detector")
                      - self.arrived.n_distinct)
        return (f is not None and f["lost_in_node"] == 0 and f["unaccounted"] == 0
                and lost_after <= 0 and self._upstream("scene_queue_depth") == 0)

    def finish(self) -> None:
        """Write the report (``report.json``, ``pr_curves.png``) when ``report.dir`` is set."""
        if self.memtrace is not None:
            self.memtrace.write("finish")
        if not self.rcfg.dir:
            return
        from sar_atd.atomic import atomic_write_json

        out = Path(self.rcfg.dir)
        out.mkdir(parents=True, exist_ok=True)
        summary = self.summary()
        metrics = self.acc.compute(self.CURVE_POINTS_REPORT) if self.n_eval else {}
        atomic_write_json(out / "report.json", json_safe({
            "summary": summary, "metrics": metrics, "config": dataclasses.asdict(self.cfg)}))
        if self.n_eval:
            from sar_atd.plots import plot_pr_curves

            name = summary.get("detector") or "detector"
            plot_pr_curves({name: metrics}, out / "pr_curves.png",
                           iou_thresholds=tuple(t for t in self.cfg.iou_thresholds
                                                if t in (0.25, 0.5, 0.7)) or (0.5,))
            self._write_examples(out, summary)
        state = self._state_path()
        if state is not None and state.is_file():  # the run is complete: nothing to resume
            state.unlink()
        self.get_logger().info(f"report written to {out}")
        if self.memtrace is not None:
            self.memtrace.write("report written")

    def _write_examples(self, out: Path, summary: dict[str, Any]) -> None:
        from sar_atd.detectors.base import Detections
        from sar_atd.plots import plot_detections

        op = summary.get("operating_threshold")
        for ex in self.examples.values():
            if "gt" not in ex:
                continue
            name = ex.get("name") or f"scene_{ex['seq']:05d}"
            plot_detections(ex["image"], ex["gt"], Detections(ex["boxes"], ex["scores"]),
                            out / f"example_{ex['seq']:05d}.png",
                            score_threshold=op if op is not None and math.isfinite(op)
                            else None, title=f"{name}: {summary.get('detector', '')}")


def main(args: list[str] | None = None) -> int:
    return run_node("evaluator", EvaluatorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
