"""Bounded streaming metric state: the score histogram of
:class:`sar_atd.streaming.MetricAccumulator` against :func:`sar_atd.metrics.evaluate`,
its constant size, and saving/resuming it; latency percentiles of
:class:`sar_atd.streaming.LatencyStats` (exact, then binned) in bounded memory."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from sar_atd.metrics import evaluate, precision_recall
from sar_atd.streaming import STATE_VERSION, LatencyStats, MetricAccumulator

AP_TOLERANCE = 1e-3
"""Largest |AP(histogram) - AP(evaluate)| accepted with the default 2**14 bins."""

KEYS = ("AP25", "AP50", "AP70", "ap_50_95")


def _scenes(seed: int, n_images: int, n_false: int, cfar: bool,
            ties: bool = False) -> tuple[list, list]:
    """Scenes with 1-4 targets (85 % detected, boxes jittered by 3 px) and ``n_false``
    false alarms each; scores in [0, 1] (float32, a model's) or CFAR-like unbounded
    excess sums (float64); ``ties`` rounds scores to 2 decimals."""
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for _ in range(n_images):
        m = int(rng.integers(1, 5))
        xy = rng.uniform(0, 1500, (m, 2))
        gt = np.concatenate([xy, xy + rng.uniform(15, 40, (m, 2))], 1)
        hit = rng.random(m) < 0.85
        tb = gt[hit] + rng.normal(0, 3, (int(hit.sum()), 4))
        tb[:, 2:] = np.maximum(tb[:, 2:], tb[:, :2] + 1)
        fa = rng.uniform(0, 2000, (n_false, 2))
        boxes = np.concatenate([tb, np.concatenate([fa, fa + 20], 1)])
        if cfar:
            s = np.concatenate([rng.gamma(5, 30, len(tb)), rng.gamma(1.2, 10, n_false)])
        else:
            s = np.concatenate([rng.beta(5, 2, len(tb)),
                                rng.beta(1, 6, n_false)]).astype(np.float32)
        if ties:
            s = s.round(2)
        preds.append((boxes, s))
        gts.append(gt)
    return preds, gts


def _fill(acc: MetricAccumulator, preds: list, gts: list) -> MetricAccumulator:
    for p, g in zip(preds, gts, strict=True):
        acc.update(p, g)
    return acc


def _max_ap_diff(got: dict, want: dict) -> float:
    d = [abs(got[k] - want[k]) for k in KEYS]
    d += list(np.abs(np.subtract(got["ap_vs_iou"]["ap"], want["ap_vs_iou"]["ap"])))
    return float(max(d))


@pytest.mark.slow
@pytest.mark.parametrize(("cfar", "n_images", "n_false", "bins"), [
    (False, 100, 200, 2 ** 14),  # 20k float32 scores: the default bins, coarsened
    (True, 80, 120, 2 ** 12),  # 10k CFAR sums in 2**12 bins: ~3 predictions per bin
])
def test_histogram_ap_within_tolerance_on_real_like_scenes(cfar: bool, n_images: int,
                                                           n_false: int, bins: int) -> None:
    """Measured on sets this size (evaluate, the reference, takes seconds per 10k
    predictions): max |dAP| 3.6e-4 (model scores) and 5.0e-4 (CFAR)."""
    preds, gts = _scenes(1, n_images, n_false, cfar)
    for method in ("all-point", "coco101"):
        acc = _fill(MetricAccumulator(method=method, exact_max_predictions=0, max_bins=bins),
                    preds, gts)
        got = acc.compute()
        want = evaluate(preds, gts, (0.25, 0.5, 0.7), method=method)
        assert got["ap_exact"] is False and bins // 2 < got["score_bins"] <= bins
        assert _max_ap_diff(got, want) < AP_TOLERANCE, method
        assert (got["n_gt"], got["n_pred"], got["n_images"]) == (
            want["n_gt"], want["n_pred"], want["n_images"])
        for key, op in want["operating_points"].items():  # best F1 at bin resolution
            assert abs(got["operating_points"][key]["f1"] - op["f1"]) < AP_TOLERANCE
            assert got["max_recall"][key] == want["max_recall"][key]


@pytest.mark.parametrize("method", ["all-point", "coco101"])
def test_histogram_ap_within_tolerance_on_random_scenes_with_ties(method: str) -> None:
    preds, gts = _scenes(2, 60, 20, cfar=False, ties=True)
    got = _fill(MetricAccumulator(method=method, exact_max_predictions=0), preds,
                gts).compute()
    want = evaluate(preds, gts, (0.25, 0.5, 0.7), method=method)
    # 101 distinct scores: one bin each, ties counted as one step (a threshold sweep)
    assert got["score_bins"] <= 101
    assert _max_ap_diff(got, want) < 0.02  # tie order is all that differs
    assert got["max_recall"] == want["max_recall"]


def test_histogram_is_exact_with_one_bin_per_prediction() -> None:
    """Distinct scores and room for a bin each: the per-image matching folded into the
    histogram gives evaluate's curves, AP and precision/recall at a threshold."""
    preds, gts = _scenes(3, 40, 30, cfar=True)
    acc = _fill(MetricAccumulator(exact_max_predictions=0, max_bins=2 ** 16), preds, gts)
    got, want = acc.compute(), evaluate(preds, gts, (0.25, 0.5, 0.7))
    assert got["score_bins"] == want["n_pred"]
    for k in KEYS:
        assert got[k] == pytest.approx(want[k], abs=1e-12), k
    assert got["pr_curves"]["0.50"]["recall"] == pytest.approx(
        want["pr_curves"]["0.50"]["recall"])
    p, r, s = precision_recall(preds, gts, 0.5)
    k = int(np.sum(s >= 20.0)) - 1
    assert acc.precision_recall_at(20.0, 0.5) == pytest.approx((p[k], r[k]))


def test_exact_until_the_limit_then_histogram() -> None:
    preds, gts = _scenes(4, 30, 100, cfar=False)
    acc = MetricAccumulator(exact_max_predictions=1500)
    _fill(acc, preds[:10], gts[:10])
    assert acc.exact and acc.compute()["ap_exact"] is True
    _fill(acc, preds[10:], gts[10:])
    got = acc.compute()
    assert not acc.exact and got["ap_exact"] is False and got["n_images"] == 30
    assert _max_ap_diff(got, evaluate(preds, gts, (0.25, 0.5, 0.7))) < AP_TOLERANCE


def test_state_size_is_constant_as_predictions_grow() -> None:
    """500 false alarms per scene: state and pickle size stop growing once the histogram
    is full, bounded by its bins and one chunk of waiting records."""
    acc = MetricAccumulator(exact_max_predictions=0)
    t = 19  # distinct IoU thresholds of the default result
    bound = 2 ** 14 * (24 + 4 * t) + MetricAccumulator.FOLD_CHUNK * 8 + 100_000
    sizes = []
    for chunk in range(4):
        preds, gts = _scenes(10 + chunk, 150, 500, cfar=True)
        _fill(acc, preds, gts)
        acc.compute()
        sizes.append((acc.nbytes(), len(pickle.dumps(acc))))
    assert acc.n_pred > 290_000
    assert all(nb <= bound and pk <= bound + 20_000 for nb, pk in sizes), sizes
    # the last 150k predictions added at most a few bins' worth
    assert sizes[-1][0] <= sizes[1][0] * 1.1 + 50_000, sizes


def test_save_and_resume_the_histogram_state() -> None:
    preds, gts = _scenes(5, 40, 200, cfar=True)
    acc = _fill(MetricAccumulator(exact_max_predictions=3000), preds[:20], gts[:20])
    resumed = pickle.loads(pickle.dumps(acc))
    for a in (acc, resumed):
        _fill(a, preds[20:], gts[20:])
    assert resumed.compute()["AP50"] == acc.compute()["AP50"]
    assert resumed.n_images == 40 and resumed.compute()["ap_exact"] is False


def test_version_1_state_is_converted_and_unknown_versions_refused() -> None:
    preds, gts = _scenes(6, 10, 20, cfar=False)
    acc = _fill(MetricAccumulator(), preds, gts)
    old = {k: v for k, v in acc.__getstate__().items()  # the fields version 1 pickled
           if k in ("iou_thresholds", "ap_iou_thresholds", "method", "_scores", "_ious",
                    "n_gt", "n_pred", "_cache")}
    loaded = MetricAccumulator.__new__(MetricAccumulator)
    loaded.__setstate__(old)
    assert loaded.exact and loaded.n_images == 10
    got = dict(loaded.compute())
    assert got.pop("ap_exact") is True and got.pop("score_bins") == 0
    want = evaluate(preds, gts, (0.25, 0.5, 0.7))
    assert got["AP50"] == want["AP50"] and got["pr_curves"] == want["pr_curves"]
    _fill(loaded, preds, gts)  # keeps accumulating
    assert loaded.n_images == 20
    bad = MetricAccumulator.__new__(MetricAccumulator)
    with pytest.raises(ValueError, match=f"version {STATE_VERSION + 1} is not supported"):
        bad.__setstate__({**acc.__getstate__(), "_version": STATE_VERSION + 1})


def test_no_ground_truth_and_no_predictions_in_histogram_mode() -> None:
    acc = MetricAccumulator(exact_max_predictions=0)
    acc.update((np.array([[0, 0, 5, 5.0]]), np.array([0.5])), np.zeros((0, 4)))
    assert math.isnan(acc.compute()["AP50"])
    acc.update((np.zeros((0, 4)), np.zeros(0)), np.array([[0, 0, 5, 5.0]]))
    assert acc.compute()["AP50"] == 0.0 and acc.precision_recall_at(0.9) == (
        pytest.approx(math.nan, nan_ok=True), 0.0)


def test_latency_exact_until_the_limit_then_binned_within_half_a_bin() -> None:
    rng = np.random.default_rng(0)
    values = rng.lognormal(6.0, 0.6, 20_000)  # ~400 ms, a long tail
    lat = LatencyStats(exact_max=1000)
    for v in values[:1000]:
        lat.add(v)
    assert lat.exact
    for q in (0, 50, 99, 100):
        assert lat.percentile(q) == np.percentile(values[:1000], q)
    assert lat.quarters() == [[np.percentile(p, 50), np.percentile(p, 99)]
                              for p in np.array_split(values[:1000], 4)]
    for v in values[1000:]:
        lat.add(v)
    assert not lat.exact and lat.n == 20_000
    for q in (1, 50, 90, 99, 99.9):  # 1 % bins: at most 0.5 % off, plus the interpolation
        assert lat.percentile(q) == pytest.approx(np.percentile(values, q), rel=6e-3), q
    assert lat.percentile(0) == values.min() and lat.percentile(100) == values.max()
    resumed = pickle.loads(pickle.dumps(lat))
    assert resumed.percentile(99) == lat.percentile(99)


def test_latency_memory_is_constant_and_quarters_show_a_growing_backlog() -> None:
    lat = LatencyStats(exact_max=100)
    sizes = []
    for n in range(1, 40_001):
        lat.add(100.0 + n / 10.0)  # a backlog: latency rising steadily, 100 -> 4,100 ms
        if n in (1_000, 10_000, 40_000):
            sizes.append(lat.nbytes())
    assert max(sizes) <= 9 * 8 * 2315 and sizes[2] <= sizes[1]  # <= 9 blocks of 2,315 bins
    quarters = lat.quarters()
    assert len(quarters) == 4
    p50 = [q[0] for q in quarters]
    assert p50 == sorted(p50) and p50[-1] > 3 * p50[0]
    for k, (med, _p99) in enumerate(quarters):  # each quarter's median within a block
        exact = 100.0 + (k + 0.5) * 1000.0
        assert abs(med - exact) <= 0.15 * 4000, (k, med, exact)


def test_latency_edges_and_bad_limits() -> None:
    lat = LatencyStats(exact_max=4)
    assert math.isnan(lat.percentile(50)) and lat.quarters() == []
    for v in (-5.0, 0.0, 3.0, 1e12, 7.0):  # below and above the bins: clamped, kept
        lat.add(v)
    assert not lat.exact
    assert lat.percentile(0) == -5.0 and lat.percentile(100) == 1e12
    with pytest.raises(ValueError, match="max_blocks"):
        LatencyStats(max_blocks=7)
    with pytest.raises(ValueError, match="exact_max"):
        LatencyStats(exact_max=2)
