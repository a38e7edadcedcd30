"""Scene flow of a streaming detector: a bounded queue that drops the oldest scene, and the
accounting that puts every scene sent into exactly one outcome.

:class:`SceneQueue` sits between a node's input (which only enqueues, so the transport's
own buffer never backs up) and its processing loop. It holds at most ``depth`` scenes; a
scene arriving at a full queue pushes the oldest one out (reason ``queue_full``), and a
scene that waited longer than ``max_age_s`` when its turn comes is dropped too (reason
``stale``: e.g. after the processing stalled). So the wait before processing is at most
``min(depth x processing time, max_age_s)`` and nothing grows with the length of the run.

:func:`account_scenes` splits the scenes a player sent into evaluated, dropped for
overload, rejected as malformed, without ground truth, lost in transport, and lost inside a
node, from counters each stage keeps (no per-scene state), and says whether they add up.

:class:`RecentKeys` is the bounded bookkeeping of a consumer that must recognise a scene it
saw already (a copy re-sent by a transient-local topic to a restarted subscriber) and count
the distinct scenes it saw, however long the stream runs.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["DROP_REASONS", "RecentKeys", "SceneQueue", "account_scenes"]

T = TypeVar("T")

DROP_REASONS = ("queue_full", "stale", "stopped")
"""Why :class:`SceneQueue` drops a scene (counters ``scenes_dropped_<reason>``): pushed out
by a newer scene, waited longer than ``max_age_s``, or still waiting when processing
stopped."""


class SceneQueue(Generic[T]):
    """Thread-safe FIFO of at most ``depth`` scenes; the oldest is dropped when full.

    Args:
        depth: scenes kept waiting (>= 1).
        max_age_s: a scene older than this (since :meth:`put`) when taken is dropped as
            ``stale``; 0 = no age limit.
        clock: monotonic seconds (a parameter so tests can drive time).

    Raises:
        ValueError: depth < 1 or max_age_s < 0.
    """

    def __init__(self, depth: int, max_age_s: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if depth < 1:
            raise ValueError(f"queue depth must be >= 1, got {depth}")
        if not max_age_s >= 0:
            raise ValueError(f"max_age_s must be >= 0 (0 = no limit), got {max_age_s}")
        self.depth = int(depth)
        self.max_age_s = float(max_age_s)
        self._clock = clock
        self._items: deque[tuple[T, float]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.n_put = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)
        self.max_seen = 0
        self.max_wait_s = 0.0

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, item: T) -> list[tuple[T, str]]:
        """Enqueue ``item``; returns the scenes pushed out as ``(item, "queue_full")``."""
        out: list[tuple[T, str]] = []
        with self._cond:
            self.n_put += 1
            while len(self._items) >= self.depth:
                out.append((self._items.popleft()[0], "queue_full"))
                self.dropped["queue_full"] += 1
            self._items.append((item, self._clock()))
            self.max_seen = max(self.max_seen, len(self._items))
            self._cond.notify()
        return out

    def take(self, timeout_s: float = 0.0) -> tuple[T | None, list[tuple[T, str]]]:
        """The oldest fresh scene (None when none came within ``timeout_s``) and the scenes
        dropped as ``(item, "stale")`` on the way."""
        stale: list[tuple[T, str]] = []
        with self._cond:
            if not self._items and timeout_s > 0 and not self._closed:
                self._cond.wait(timeout_s)
            now = self._clock()
            while self._items:
                item, t_in = self._items.popleft()
                wait = now - t_in
                if self.max_age_s and wait > self.max_age_s:
                    stale.append((item, "stale"))
                    self.dropped["stale"] += 1
                    continue
                self.max_wait_s = max(self.max_wait_s, wait)
                return item, stale
        return None, stale

    def clear(self) -> list[T]:
        """Remove and return every waiting scene, counted as dropped (``stopped``)."""
        with self._cond:
            items = [it for it, _t in self._items]
            self._items.clear()
            self.dropped["stopped"] += len(items)
            return items

    def close(self) -> None:
        """Wake a waiting :meth:`take` (shutting down)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def open(self) -> None:
        """Accept waits again after :meth:`close`."""
        with self._cond:
            self._closed = False

    def counters(self) -> dict[str, Any]:
        """Depth now, limits and drop counts (diagnostics keys)."""
        with self._cond:
            return {"queue_depth": len(self._items), "queue_depth_max": self.depth,
                    "queue_depth_peak": self.max_seen,
                    "queue_wait_max_ms": round(self.max_wait_s * 1e3, 1),
                    **{f"scenes_dropped_{r}": n for r, n in self.dropped.items()}}


class RecentKeys:
    """The last ``capacity`` distinct keys (scene stamps or sequence numbers) and how many
    distinct keys were added in all.

    Memory is bounded by ``capacity`` however many keys come. A key is recognised as seen
    while it is among the last ``capacity`` distinct keys added; the streams this serves
    re-send only their most recent messages (a transient-local history of a few dozen), so
    a ``capacity`` above that history depth recognises every re-sent copy and
    :attr:`n_distinct` is exact. A key older than the window would count again.

    Args:
        capacity: keys remembered (>= 1).

    Raises:
        ValueError: capacity < 1.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._keys: OrderedDict[int, None] = OrderedDict()
        self.n_distinct = 0

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        """Keys remembered now (<= capacity); :attr:`n_distinct` counts every one added."""
        return len(self._keys)

    def add(self, key: int) -> bool:
        """Remember ``key``; True when it was not among the remembered keys (then counted)."""
        if key in self._keys:
            return False
        self._keys[key] = None
        self.n_distinct += 1
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
        return True

    @classmethod
    def from_keys(cls, keys: Any, capacity: int) -> RecentKeys:
        """A window holding the last ``capacity`` of ``keys`` (ascending), counting all of
        them: converts an unbounded set of keys (an older saved state)."""
        out = cls(capacity)
        ordered = sorted(keys)
        out._keys = OrderedDict.fromkeys(ordered[-out.capacity:])
        out.n_distinct = len(ordered)
        return out


def account_scenes(published: int, evaluated: int, *, received: int, dropped: int,
                   rejected: int, node_published: int, evaluator_rejected: int = 0,
                   without_gt: int = 0, arrived: int = 0) -> dict[str, int]:
    """Where every scene a player sent went (counts; each a distinct stage's own counter).

    Args:
        published: scenes the player sent (its last sequence number).
        evaluated: scenes the evaluator matched with their ground truth.
        received: scenes the detector side took from the transport.
        dropped: scenes it dropped for overload (queue full, stale, incomplete).
        rejected: scenes it refused as malformed.
        node_published: scenes it published detections for.
        evaluator_rejected: scenes the evaluator refused (malformed ground truth or
            detections).
        without_gt: detections that arrived for a scene that had no ground truth.
        arrived: scenes whose detections reached the evaluator (any outcome).

    Returns:
        ``missing`` (published - evaluated) split into ``dropped_overload``,
        ``rejected_malformed`` (detector side + evaluator), ``without_ground_truth``,
        ``lost_in_transport`` (never reached the detector side, or its detections never
        reached the evaluator) and ``lost_in_node`` (received but neither dropped,
        rejected nor published: in flight when a node died, or counters not final);
        ``unaccounted`` is what these reasons leave of ``missing`` (0 when they add up;
        not 0 when the counters contradict each other, e.g. the detector side received
        more scenes than were sent).

    The counters come at different times (a node publishes its own once a second), so each
    stage's count is raised to what the later stages prove it handled: a node published
    at least the scenes whose detections arrived, and received at least what it published,
    dropped or rejected.
    """
    node_published = max(node_published, arrived, evaluated + without_gt)
    received = max(received, node_published + dropped + rejected)
    lost_before = max(0, published - received)
    lost_after = max(0, node_published - evaluated - evaluator_rejected - without_gt)
    lost_in_node = max(0, received - dropped - rejected - node_published)
    missing = published - evaluated
    reasons = {"dropped_overload": dropped, "rejected_malformed": rejected + evaluator_rejected,
               "without_ground_truth": without_gt,
               "lost_in_transport": lost_before + lost_after, "lost_in_node": lost_in_node}
    return {"missing": missing, **reasons, "unaccounted": missing - sum(reasons.values())}
