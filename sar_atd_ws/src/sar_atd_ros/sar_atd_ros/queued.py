"""Scene input of a processing node: the subscription only enqueues, a worker processes.

The ``scene`` callback runs on the executor and returns at once: the scene goes into a
:class:`sar_atd.scene_flow.SceneQueue` (``node.queue_depth`` scenes, the oldest dropped
when full; ``node.max_queue_age_s``: a scene that waited longer is dropped as stale), so
the transport's buffer never backs up unseen and every drop is counted with its reason
(``scenes_dropped_queue_full|stale|stopped`` on ``/diagnostics``, one throttled log line).
A worker thread takes the scenes one by one and calls the node's ``_process``. An
unexpected error in the worker ends the node (exit code 1, the traceback in its log), as
one in a callback would, so ``sar-atd run``/``respawn`` restarts it.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any

from sar_atd.scene_flow import SceneQueue

__all__ = ["QueuedSceneInput"]


class QueuedSceneInput:
    """Mixin of a node with a bounded scene queue and a processing thread.

    The node sets ``n_in`` (scenes received) and implements ``_process(seq, msg, t0)``;
    it calls :meth:`_init_queue` once, :meth:`_start_worker` / :meth:`_stop_worker` when
    processing starts and stops, and uses :meth:`_enqueue` as the subscription callback.
    """

    scene_queue: SceneQueue
    n_in: int = 0
    DROP_LOG_PERIOD_S = 5.0

    def _init_queue(self, depth: int, max_age_s: float) -> None:
        self.scene_queue = SceneQueue(depth, max_age_s)
        self._worker: threading.Thread | None = None
        self._worker_stop = threading.Event()

    def _enqueue(self, msg: Any) -> None:
        self.n_in += 1
        for (seq, _m, _t), reason in self.scene_queue.put((self.n_in, msg, time.perf_counter())):
            self._log_drop(seq, reason)

    def _log_drop(self, seq: int, reason: str) -> None:
        q = self.scene_queue
        why = (f"queue full (depth {q.depth}): a newer scene arrived" if reason == "queue_full"
               else f"waited over node.max_queue_age_s = {q.max_age_s:g} s")
        self.get_logger().warning(  # type: ignore[attr-defined]
            f"scene {seq} dropped ({reason}): {why}; dropped so far "
            f"{sum(q.dropped.values())}", throttle_duration_sec=self.DROP_LOG_PERIOD_S)

    def _start_worker(self) -> None:
        if self._worker is not None and self._worker.is_alive():
            return
        self._worker_stop.clear()
        self.scene_queue.open()
        self._worker = threading.Thread(target=self._work, daemon=True,
                                        name=f"{self.get_name()}_worker")  # type: ignore
        self._worker.start()

    def _stop_worker(self, timeout_s: float = 60.0) -> None:
        """Stop the worker (after the scene in hand); waiting scenes count as ``stopped``."""
        self._worker_stop.set()
        self.scene_queue.close()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout_s)
        self._worker = None
        n = len(self.scene_queue.clear())
        if n:
            self.get_logger().warning(  # type: ignore[attr-defined]
                f"{n} waiting scene(s) dropped: processing stopped")

    def _work(self) -> None:
        q = self.scene_queue
        while not self._worker_stop.is_set():
            item, stale = q.take(timeout_s=0.2)
            for (seq, _m, _t), reason in stale:
                self._log_drop(seq, reason)
            if item is None or self._worker_stop.is_set():
                if item is not None:  # taken while stopping: counted with the waiting ones
                    q.dropped["stopped"] += 1
                continue
            try:
                self._process(*item)
            except Exception as err:  # noqa: BLE001 - a bug: end the node so it restarts
                traceback.print_exc()
                self.get_logger().error(  # type: ignore[attr-defined]
                    f"processing failed on scene {item[0]}: {type(err).__name__}: {err}")
                self.exit_code, self.done = 1, True
                return

    def _process(self, seq: int, msg: Any, t0: float) -> None:
        raise NotImplementedError

    def _queue_values(self) -> dict[str, Any]:
        """The queue's diagnostics (``scene_queue_*`` and drop counters)."""
        c = self.scene_queue.counters()
        return {"scene_queue_depth": c["queue_depth"],
                "scene_queue_limit": c["queue_depth_max"],
                "scene_queue_peak": c["queue_depth_peak"],
                "scene_queue_wait_max_ms": c["queue_wait_max_ms"],
                "scene_queue_max_age_s": self.scene_queue.max_age_s,
                **{k: v for k, v in c.items() if k.startswith("scenes_dropped_")}}
