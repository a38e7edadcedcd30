"""Scene flow of the node graph (``sar_atd.scene_flow``): the bounded drop-oldest queue,
the accounting that gives every scene not evaluated a reason, and the bounded window of
recent scenes a consumer recognises re-sent copies with."""

from __future__ import annotations

import threading

import pytest

from sar_atd.scene_flow import RecentKeys, SceneQueue, account_scenes


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_full_queue_drops_the_oldest_and_counts_it() -> None:
    q: SceneQueue[int] = SceneQueue(2)
    assert q.put(1) == [] and q.put(2) == []
    assert q.put(3) == [(1, "queue_full")]
    assert q.put(4) == [(2, "queue_full")]
    assert len(q) == 2
    assert q.take() == (3, []) and q.take() == (4, []) and q.take() == (None, [])
    c = q.counters()
    assert c["scenes_dropped_queue_full"] == 2 and c["queue_depth"] == 0
    assert c["queue_depth_peak"] == 2 and q.n_put == 4


def test_stale_scenes_are_dropped_when_taken() -> None:
    clock = _Clock()
    q: SceneQueue[str] = SceneQueue(4, max_age_s=5.0, clock=clock)
    q.put("a")
    clock.t = 3.0
    q.put("b")
    clock.t = 6.0  # "a" waited 6 s > 5 s, "b" 3 s
    assert q.take() == ("b", [("a", "stale")])
    assert q.counters()["scenes_dropped_stale"] == 1
    assert q.counters()["queue_wait_max_ms"] == 3000.0


def test_wait_before_processing_is_bounded_by_the_depth() -> None:
    """A consumer slower than the producer: every taken scene is among the newest
    ``depth`` put, whatever the length of the run (no backlog grows)."""
    q: SceneQueue[int] = SceneQueue(3)
    taken = []
    for i in range(1, 1001):
        q.put(i)
        if i % 10 == 0:  # consumer at a tenth of the input rate
            item, _ = q.take()
            assert item is not None
            taken.append((i, item))
    assert all(i - item < 3 for i, item in taken)
    assert q.counters()["scenes_dropped_queue_full"] + len(taken) + len(q) == 1000


def test_clear_counts_stopped_scenes_and_close_wakes_a_waiting_take() -> None:
    q: SceneQueue[int] = SceneQueue(2)
    q.put(1)
    assert q.clear() == [1] and q.dropped["stopped"] == 1
    out: list = []
    t = threading.Thread(target=lambda: out.append(q.take(timeout_s=30.0)))
    t.start()
    q.close()
    t.join(5.0)
    assert not t.is_alive() and out == [(None, [])]


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="depth must be >= 1"):
        SceneQueue(0)
    with pytest.raises(ValueError, match="max_age_s must be >= 0"):
        SceneQueue(1, max_age_s=-1.0)


def test_accounting_adds_up_and_names_each_reason() -> None:
    # 100 sent; 3 never reached the detector; it dropped 20, rejected 5, published 72, of
    # which 1 never reached the evaluator, 2 had no ground truth, 1 malformed ground truth
    f = account_scenes(100, 68, received=97, dropped=20, rejected=5, node_published=72,
                       evaluator_rejected=1, without_gt=2)
    assert f == {"missing": 32, "dropped_overload": 20, "rejected_malformed": 6,
                 "without_ground_truth": 2, "lost_in_transport": 4, "lost_in_node": 0,
                 "unaccounted": 0}
    # a detector killed with 2 scenes in hand: lost inside the node
    f = account_scenes(10, 6, received=10, dropped=2, rejected=0, node_published=6)
    assert f["lost_in_node"] == 2 and f["unaccounted"] == 0


def test_counters_read_at_different_times_still_add_up() -> None:
    # the detector's last counters predate its last scene (received 39, published 38), but
    # all 40 detections arrived: nothing is put down as lost
    f = account_scenes(40, 40, received=39, dropped=0, rejected=0, node_published=38)
    assert f["missing"] == 0 and f["lost_in_node"] == 0 and f["unaccounted"] == 0


def test_inconsistent_counters_show_as_unaccounted() -> None:
    # the detector side received more scenes than the player sent (another publisher on
    # the topic): no reason fits, so the difference stays visible instead of absorbed
    f = account_scenes(10, 10, received=15, dropped=5, rejected=0, node_published=10)
    assert f["unaccounted"] == -5


def test_evaluator_state_stays_compact_with_many_false_alarms() -> None:
    """The streaming metric state of a scene with hundreds of false alarms holds their
    float32 scores and only the IoU rows of boxes touching a target, and its metrics
    are still exactly ``evaluate``'s."""
    import numpy as np

    from sar_atd.metrics import evaluate
    from sar_atd.streaming import MetricAccumulator

    rng = np.random.default_rng(0)
    acc = MetricAccumulator((0.25, 0.5, 0.7))
    preds, gts = [], []
    for _ in range(20):
        gt = np.array([[10, 10, 40, 30], [100, 100, 130, 120], [200, 50, 230, 70]], np.float32)
        xy = rng.uniform(300, 2000, (500, 2)).astype(np.float32)  # far from every target
        boxes = np.concatenate([gt + rng.normal(0, 2, gt.shape).astype(np.float32),
                                np.concatenate([xy, xy + 20], axis=1)])
        scores = rng.uniform(0, 1, len(boxes)).astype(np.float32)
        preds.append((boxes, scores))
        gts.append(gt)
        acc.update((boxes, scores), gt)
    assert acc.nbytes() <= 20 * (4 * 503 + 8 * 3 * 3 + 4 * 3)  # not 8 x 503 x 3 per scene
    want = evaluate(preds, gts, iou_thresholds=(0.25, 0.5, 0.7))
    got = acc.compute()
    for key in ("AP25", "AP50", "AP70", "ap_50_95", "n_gt", "n_pred"):
        assert got[key] == want[key], key
    # running figures: thinned curves, exact AP and exact precision/recall at a threshold
    thin = acc.compute(curve_points=100)
    assert thin["AP50"] == want["AP50"] and thin["operating_points"] == want[
        "operating_points"]
    curve = want["pr_curves"]["0.50"]
    assert len(thin["pr_curves"]["0.50"]["scores"]) == 100 < len(curve["scores"])
    assert thin["pr_curves"]["0.50"]["scores"][-1] == curve["scores"][-1]
    k = int(np.sum(np.asarray(curve["scores"]) >= 0.5)) - 1
    assert acc.precision_recall_at(0.5) == (curve["precision"][k], curve["recall"][k])
    # the saved state leaves the cached result out
    import pickle

    assert len(pickle.dumps(acc)) < 2 * acc.nbytes() + 10_000


def test_recent_keys_count_distinct_scenes_in_bounded_memory() -> None:
    keys = RecentKeys(100)
    for k in range(100_000):
        assert keys.add(k)
        if k % 7 == 0:  # a copy re-sent within the window is recognised, not counted
            assert not keys.add(k - 50 if k >= 50 else k)
    assert keys.n_distinct == 100_000 and len(keys) == 100
    assert 99_999 in keys and 99_900 in keys and 99_899 not in keys
    # a key older than the window counts again (documented limit of the window)
    assert keys.add(5) and keys.n_distinct == 100_001
    with pytest.raises(ValueError, match="capacity"):
        RecentKeys(0)


def test_recent_keys_from_an_unbounded_set_keeps_the_count_and_the_newest() -> None:
    keys = RecentKeys.from_keys({5, 1, 9, 3, 7}, 3)
    assert keys.n_distinct == 5 and len(keys) == 3
    assert [k in keys for k in (1, 3, 5, 7, 9)] == [False, False, True, True, True]
    assert not keys.add(9) and keys.add(11) and 5 not in keys
