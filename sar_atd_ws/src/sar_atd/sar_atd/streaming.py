"""Streaming evaluation: per-image updates, metrics any time, bounded memory.

:class:`MetricAccumulator` keeps, per image, only what the metrics need: the prediction
scores (N, float32 when that is exact, as for scores sent as float32, else float64) and
the rows of the prediction x ground-truth IoU matrix (float64) of the predictions that
overlap a ground-truth box at all (a prediction overlapping none can never match), about
``4 N + 8 K M`` bytes for K overlapping predictions; images, boxes and pixels are not kept.
While the set holds at most ``exact_max_predictions`` predictions, ``compute()`` gives
exactly :func:`sar_atd.metrics.evaluate` on the same images in the same order.

Beyond that the records are folded into a score histogram, so the state stays constant
in size however long the stream runs: per score bin, the number of predictions, their
smallest score and, per IoU threshold, how many of them are true positives (each image's
greedy matching is done when it is folded; it depends on that image only). Bins are
ranges of the float64 score's bit pattern (an order-preserving integer key), so any score
range works (model probabilities in [0, 1], CFAR's unbounded excess sums): the bins start
exact (one per distinct score) and, whenever more than ``max_bins`` exist, adjacent ones
merge (the key loses its lowest bit), a resolution relative to the score's magnitude.
The PR curve then steps once per bin (predictions within one bin count as tied), so AP
is approximate: the result says so (``ap_exact``, ``score_bins``) and the tests bound the
difference to ``evaluate`` (under 1e-3 with the default 2**14 bins on the test sets).

:class:`LatencyStats` does the same for a stream of latencies: exact percentiles up to a
count, then logarithmic bins of bounded relative error, per block of consecutive values so
the quarters of a run can still be compared.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence

import numpy as np

from sar_atd.boxes import as_boxes, box_iou, score_order
from sar_atd.metrics import (
    DEFAULT_AP_IOU_THRESHOLDS,
    PredLike,
    _as_pred,
    _check_threshold,
    _curve,
    _greedy,
    _Prepared,
    ap_from_pr,
    ap_key,
    evaluate_prepared,
)

__all__ = ["LatencyStats", "MetricAccumulator", "STATE_VERSION"]

STATE_VERSION = 2
"""Version of the pickled accumulator (1: per-image records only, converted on load)."""

_COCO_GRID = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


def _score_keys(scores: np.ndarray) -> np.ndarray:
    """int64 (N,) keys ordered like the float64 scores (IEEE bit pattern, sign-folded)."""
    u = np.asarray(scores, np.float64).view(np.int64)
    return u ^ ((u >> 63) & np.int64(0x7FFFFFFFFFFFFFFF))


class _Histogram:
    """Bounded per-score-bin counts (module doc).

    Attributes:
        keys: int64 (K,) ascending bin keys (score keys shifted right by ``shift``).
        n: int64 (K,) predictions per bin.
        smin: float64 (K,) smallest score in each bin.
        tp: int32 (T, K) true positives per bin at each of the T IoU thresholds.
        shift: low key bits dropped (0: one bin per distinct score).
    """

    def __init__(self, n_thresholds: int) -> None:
        self.keys = np.zeros(0, np.int64)
        self.n = np.zeros(0, np.int64)
        self.smin = np.zeros(0, np.float64)
        self.tp = np.zeros((n_thresholds, 0), np.int32)
        self.shift = 0

    def add(self, scores: np.ndarray, tp: np.ndarray, max_bins: int) -> None:
        """Add predictions: float64 (P,) scores and bool (T, P) true-positive flags."""
        keys = np.concatenate([self.keys, _score_keys(scores) >> self.shift])
        uniq, inv = np.unique(keys, return_inverse=True)
        k_old = len(self.keys)
        n = np.bincount(inv, weights=np.concatenate([self.n, np.ones(len(scores))]),
                        minlength=len(uniq)).round().astype(np.int64)
        smin = np.full(len(uniq), np.inf)
        np.minimum.at(smin, inv, np.concatenate([self.smin, scores]))
        tp_new = np.zeros((len(self.tp), len(uniq)), np.int32)
        tp_new[:, inv[:k_old]] += self.tp
        for t in range(len(tp_new)):
            tp_new[t] += np.bincount(inv[k_old:][tp[t]], minlength=len(uniq)).astype(np.int32)
        self.keys, self.n, self.smin, self.tp = uniq, n, smin, tp_new
        while len(self.keys) > max_bins:
            self._coarsen()

    def _coarsen(self) -> None:
        """Merge bins whose keys agree but for the lowest bit."""
        self.shift += 1
        keys = self.keys >> 1
        start = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
        self.keys = keys[start]
        self.n = np.add.reduceat(self.n, start)
        self.smin = np.minimum.reduceat(self.smin, start)
        self.tp = np.add.reduceat(self.tp, start, axis=1).astype(np.int32)

    def curve(self, row: int, n_gt: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(precision, recall, scores, tps, kept) per bin by decreasing score: keeping the
        bins down to k, ``scores[k]`` is the threshold and ``kept[k]`` the predictions."""
        kept = np.cumsum(self.n[::-1], dtype=np.float64)
        tps = np.cumsum(self.tp[row, ::-1], dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = tps / np.maximum(kept, 1.0)
            recall = tps / n_gt if n_gt else np.full_like(tps, np.nan)
        return precision, recall, self.smin[::-1].copy(), tps, kept

    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.n.nbytes + self.smin.nbytes + self.tp.nbytes)


def _ap_binned(precision: np.ndarray, recall: np.ndarray, tps: np.ndarray, kept: np.ndarray,
               n_gt: int, method: str) -> float:
    """AP of a PR curve with one point per bin (several predictions per point)."""
    if n_gt == 0:
        return float("nan")
    if len(precision) == 0:
        return 0.0
    if method == "all-point":
        return ap_from_pr(precision, recall, "all-point", n_gt)
    pr = tps / (kept + np.spacing(1))  # pycocotools' tp / (tp + fp + eps)
    pr = np.maximum.accumulate(pr[::-1])[::-1]
    inds = np.searchsorted(recall, np.linspace(0.0, 1.0, 101), side="left")
    return float(np.mean(np.where(inds < len(pr), pr[np.minimum(inds, len(pr) - 1)], 0.0)))


class MetricAccumulator:
    """Accumulate detections and ground truth image by image; compute AP/PR any time.

    Args:
        iou_thresholds: thresholds with a named AP (``"AP25"``...) and a PR curve.
        method: AP interpolation, ``"all-point"`` or ``"coco101"``.
        ap_iou_thresholds: thresholds of the AP-vs-IoU curve.
        exact_max_predictions: per-image records kept (exact metrics) up to this many
            predictions; beyond, they are folded into the score histogram (module doc).
        max_bins: most score bins of the histogram (its memory: about ``(24 + 4 T)``
            bytes per bin for T distinct IoU thresholds, 1.6 MB for 2**14 bins and 19).
    """

    FOLD_CHUNK = 20_000
    """Records of at most this many predictions wait before being folded in."""

    def __init__(self, iou_thresholds: Sequence[float] = (0.25, 0.5, 0.7),
                 method: str = "all-point",
                 ap_iou_thresholds: Sequence[float] = DEFAULT_AP_IOU_THRESHOLDS,
                 exact_max_predictions: int = 50_000, max_bins: int = 2 ** 14) -> None:
        if method not in ("all-point", "coco101"):
            raise ValueError(f"unknown AP method {method!r}: expected 'all-point' or "
                             "'coco101'")
        if exact_max_predictions < 0 or max_bins < 2:
            raise ValueError(f"exact_max_predictions must be >= 0 and max_bins >= 2, got "
                             f"{exact_max_predictions} and {max_bins}")
        self.iou_thresholds = tuple(float(t) for t in iou_thresholds)
        self.ap_iou_thresholds = tuple(float(t) for t in ap_iou_thresholds)
        self.method = method
        self.exact_max_predictions = int(exact_max_predictions)
        self.max_bins = int(max_bins)
        self.reset()

    def _thresholds(self) -> tuple[float, ...]:
        """Every IoU threshold a result needs, ascending (histogram rows)."""
        return tuple(sorted({_check_threshold(t) for t in (
            *self.iou_thresholds, 0.7, *self.ap_iou_thresholds, *_COCO_GRID)}))

    def reset(self) -> None:
        """Forget every image."""
        self._version = STATE_VERSION
        self._scores: list[np.ndarray] = []
        # per image: (N, M, rows of predictions overlapping any ground truth, their IoUs)
        self._ious: list[tuple[int, int, np.ndarray, np.ndarray]] = []
        self._hist: _Histogram | None = None
        self._n_images = 0
        self.n_gt = 0
        self.n_pred = 0
        self._cache: tuple[int | None, dict] | None = None

    @property
    def n_images(self) -> int:
        return self._n_images

    @property
    def exact(self) -> bool:
        """True while the metrics are exactly :func:`sar_atd.metrics.evaluate`'s."""
        return self._hist is None

    def update(self, pred: PredLike, gt_boxes: np.ndarray) -> None:
        """Add one image: its predictions and its (M, 4) xyxy ground-truth boxes.

        Raises:
            ValueError: malformed boxes, or scores that are not finite / do not match.
        """
        i = self.n_images
        b, s = _as_pred(pred, i)
        g = as_boxes(gt_boxes, f"ground-truth boxes of image {i}")
        s32 = s.astype(np.float32)
        self._scores.append(s32 if np.array_equal(s32, s) else s)
        iou = box_iou(b, g)
        rows = (np.flatnonzero(iou.any(axis=1)).astype(np.int32) if iou.size
                else np.zeros(0, np.int32))
        self._ious.append((len(b), len(g), rows, iou[rows]))
        self._n_images += 1
        self.n_gt += len(g)
        self.n_pred += len(b)
        self._cache = None
        held = sum(len(x) for x in self._scores)
        if (self._hist is None and self.n_pred > self.exact_max_predictions) or (
                self._hist is not None and held > self.FOLD_CHUNK):
            self._fold()

    def _fold(self) -> None:
        """Move the per-image records into the histogram (greedy matching per image)."""
        thr = self._thresholds()
        if self._hist is None:
            self._hist = _Histogram(len(thr))
        if not self._scores:
            return
        flags = []
        for s, (n, _m, rows, sub) in zip(self._scores, self._ious, strict=True):
            tp = np.zeros((len(thr), n), bool)
            if len(rows):
                order = score_order(s[rows])  # rows ascending: ties keep the input order
                for k, t in enumerate(thr):
                    tp[k, rows] = _greedy(order, sub, t)[0]
            flags.append(tp)
        self._hist.add(np.concatenate([s.astype(np.float64) for s in self._scores]),
                       np.concatenate(flags, axis=1), self.max_bins)
        self._scores, self._ious = [], []

    def _prepared(self) -> _Prepared:
        scores = [s.astype(np.float64) for s in self._scores]
        return _Prepared(scores=scores, orders=[score_order(s) for s in scores],
                         ious=[self._dense(i) for i in range(len(self._scores))],
                         n_gt=self.n_gt, n_pred=self.n_pred)

    def compute(self, curve_points: int | None = None) -> dict:
        """Metrics of every image so far: the dict of :func:`sar_atd.metrics.evaluate`
        plus ``ap_exact`` (bool) and ``score_bins`` (histogram bins in use, 0 while exact);
        ``curve_points``: PR curves thinned to that many points, see
        :func:`~sar_atd.metrics.evaluate_prepared`.

        The result is kept until the next :meth:`update`, so callers that report
        periodically (a node's metrics topic and diagnostics) pay for new images only;
        treat the returned dict as read-only.
        """
        if self._cache is None or self._cache[0] != curve_points:
            if self._hist is None:
                out = evaluate_prepared(self._prepared(), self.n_images, self.iou_thresholds,
                                        self.ap_iou_thresholds, self.method,
                                        curve_points=curve_points)
                out.update(ap_exact=True, score_bins=0)
            else:
                self._fold()
                out = self._compute_binned(curve_points)
            self._cache = (curve_points, out)
        return self._cache[1]

    def _compute_binned(self, curve_points: int | None) -> dict:
        """:meth:`compute` from the histogram (same keys; one curve point per bin)."""
        h, n_gt = self._hist, self.n_gt
        assert h is not None
        row = {t: k for k, t in enumerate(self._thresholds())}

        def ap(t: float) -> float:
            p, r, _s, tps, kept = h.curve(row[_check_threshold(t)], n_gt)
            return _ap_binned(p, r, tps, kept, n_gt, self.method)

        out: dict = {"method": self.method, "n_images": self.n_images, "n_gt": n_gt,
                     "n_pred": self.n_pred}
        pr_curves, ops, max_rec = {}, {}, {}
        for t in sorted({_check_threshold(t) for t in (*self.iou_thresholds, 0.7)}):
            out[ap_key(t)] = ap(t)
            precision, recall, scores, tps, kept = h.curve(row[t], n_gt)
            key = f"{t:.2f}"
            keep = (np.unique(np.linspace(0, len(scores) - 1, curve_points).round()
                              .astype(int))
                    if curve_points is not None and len(scores) > curve_points
                    else slice(None))
            pr_curves[key] = {"precision": precision[keep].tolist(),
                              "recall": recall[keep].tolist(),
                              "scores": scores[keep].tolist()}
            max_rec[key] = (float(recall[-1]) if len(recall) else
                            (0.0 if n_gt else float("nan")))
            if len(precision) and n_gt:
                f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
                k = int(np.argmax(f1))
                ops[key] = {"score_threshold": float(scores[k]),
                            "precision": float(precision[k]), "recall": float(recall[k]),
                            "f1": float(f1[k]), "tp": int(tps[k]),
                            "fp": int(kept[k] - tps[k])}
        grid = [_check_threshold(t) for t in self.ap_iou_thresholds]
        out["ap_50_95"] = float(np.mean([ap(t) for t in _COCO_GRID]))
        out["pr_curves"] = pr_curves
        out["operating_points"] = ops
        out["max_recall"] = max_rec
        out["ap_vs_iou"] = {"iou": grid, "ap": [ap(t) for t in grid]}
        out.update(ap_exact=False, score_bins=len(h.keys))
        return out

    def precision_recall_at(self, score_threshold: float, iou_threshold: float = 0.5
                            ) -> tuple[float, float]:
        """(precision, recall) keeping the predictions scored >= ``score_threshold`` (nan
        precision and recall 0 when none is; nan recall without ground truth). Exact while
        :attr:`exact`; from the histogram, the bins whose smallest score reaches the
        threshold (exact where no bin straddles it)."""
        t = _check_threshold(iou_threshold)
        if self._hist is None:
            precision, recall, scores, _ = _curve(self._prepared(), t)
        else:
            self._fold()
            precision, recall, scores, _, _ = self._hist.curve(
                self._thresholds().index(t), self.n_gt)
        k = int(np.sum(scores >= score_threshold)) - 1
        if k < 0:
            return float("nan"), 0.0 if self.n_gt else float("nan")
        return float(precision[k]), float(recall[k])

    def __getstate__(self) -> dict:
        """Pickled without the cached result (rebuilt on demand; it is the large part)."""
        state = dict(self.__dict__)
        state["_cache"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        """Load a pickled accumulator; one of version 1 (records only) is converted."""
        version = state.get("_version", 1)
        if version == 1:
            state = {**state, "_version": STATE_VERSION, "_hist": None,
                     "_n_images": len(state.get("_scores", ())),
                     "exact_max_predictions": 50_000, "max_bins": 2 ** 14}
        elif version != STATE_VERSION:
            raise ValueError(f"metric state version {version} is not supported (this "
                             f"version reads 1 and {STATE_VERSION})")
        self.__dict__.update(state)
        self._cache = None

    def _dense(self, i: int) -> np.ndarray:
        """(N, M) float64 IoU matrix of held record ``i`` (zeros where nothing overlaps)."""
        n, m, rows, sub = self._ious[i]
        out = np.zeros((n, m), np.float64)
        out[rows] = sub
        return out

    def nbytes(self) -> int:
        """Bytes held by the per-image records and the histogram."""
        return int(sum(s.nbytes + r.nbytes + m.nbytes for s, (_n, _m, r, m) in
                       zip(self._scores, self._ious, strict=True))) + (
            self._hist.nbytes() if self._hist is not None else 0)


class LatencyStats:
    """Percentiles of a stream of values (latencies, ms) in bounded memory.

    Up to ``exact_max`` values every value is kept (float64, 8 bytes each) and percentiles
    are exactly ``numpy.percentile``'s (linear interpolation). Past that, every value is
    counted in logarithmic bins of relative width ``rel_bin`` over [``lo``, ``hi``] (values
    outside count in the end bins; the smallest and largest values are kept exactly), so a
    percentile is off by at most half a bin (0.5 % of the value for 1 % bins), and the
    memory stays at most ``max_blocks + 1`` histograms (about 19 KB each for the defaults).
    The counts are kept per block of consecutive values (pairs of blocks merge as the stream
    grows), so :meth:`quarters` still compares the four quarters of the stream, each made of
    whole blocks (a quarter's edge is off by at most one block, 1/8 to 1/4 of a quarter).

    Raises:
        ValueError: a limit out of range.
    """

    def __init__(self, exact_max: int = 100_000, rel_bin: float = 0.01, lo: float = 0.01,
                 hi: float = 1e8, max_blocks: int = 8) -> None:
        if exact_max < 4 or not 0 < rel_bin < 1 or not 0 < lo < hi or max_blocks < 8 or (
                max_blocks % 2):
            raise ValueError(f"exact_max >= 4, 0 < rel_bin < 1, 0 < lo < hi and an even "
                             f"max_blocks >= 8 needed, got {exact_max}, {rel_bin}, {lo}, "
                             f"{hi}, {max_blocks}")
        self.exact_max, self.max_blocks = int(exact_max), int(max_blocks)
        n_bins = math.ceil(math.log(hi / lo) / math.log1p(rel_bin))
        self._edges = lo * (1.0 + rel_bin) ** np.arange(n_bins + 1)
        self._values = array("d")
        self._blocks: list[np.ndarray] = []  # int64 (n_bins,) counts of consecutive values
        self._block_size = 0
        self._last_fill = 0
        self.n = 0
        self.vmin = math.inf
        self.vmax = -math.inf

    @property
    def exact(self) -> bool:
        """True while every value is kept (exact percentiles)."""
        return not self._blocks

    def add(self, value: float) -> None:
        """Count one value."""
        v = float(value)
        self.n += 1
        self.vmin, self.vmax = min(self.vmin, v), max(self.vmax, v)
        if not self._blocks:
            self._values.append(v)
            if len(self._values) > self.exact_max:
                self._to_blocks()
            return
        if self._last_fill == self._block_size:
            if len(self._blocks) == self.max_blocks:  # all full: merge neighbours
                self._blocks = [a + b for a, b in zip(self._blocks[::2], self._blocks[1::2],
                                                      strict=True)]
                self._block_size *= 2
            self._blocks.append(np.zeros(len(self._edges) - 1, np.int64))
            self._last_fill = 0
        self._blocks[-1][self._bin(np.asarray([v]))] += 1
        self._last_fill += 1

    def _bin(self, values: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(self._edges, values, side="right") - 1, 0,
                       len(self._edges) - 2)

    def _to_blocks(self) -> None:
        """Move the kept values into blocks (half of ``max_blocks``, the last partial)."""
        values = np.frombuffer(self._values, np.float64)
        self._block_size = -(-len(values) // (self.max_blocks // 2))
        n_bins = len(self._edges) - 1
        for i in range(0, len(values), self._block_size):
            self._blocks.append(np.bincount(self._bin(values[i:i + self._block_size]),
                                            minlength=n_bins).astype(np.int64))
        self._last_fill = len(values) - self._block_size * (len(self._blocks) - 1)
        self._values = array("d")

    def _from_counts(self, counts: np.ndarray, q: float) -> float:
        """Percentile ``q`` of binned counts: bin midpoints (geometric), interpolated
        between the two ranks like numpy's linear method, within [vmin, vmax]."""
        total = int(counts.sum())
        if total == 0:
            return float("nan")
        rank = q / 100.0 * (total - 1)
        cum = np.cumsum(counts)
        lo_r, hi_r = math.floor(rank), math.ceil(rank)
        mids = np.sqrt(self._edges[:-1] * self._edges[1:])
        a, b = (float(mids[np.searchsorted(cum, r, side="right")]) for r in (lo_r, hi_r))
        return float(np.clip(a + (rank - lo_r) * (b - a), self.vmin, self.vmax))

    def percentile(self, q: float) -> float:
        """Percentile ``q`` (0-100) of every value so far (nan before the first)."""
        if self.n == 0:
            return float("nan")
        if not self._blocks:
            return float(np.percentile(np.frombuffer(self._values, np.float64), q))
        if q <= 0 or q >= 100:
            return self.vmin if q <= 0 else self.vmax
        return self._from_counts(np.sum(self._blocks, axis=0), q)

    def quarters(self, qs: Sequence[float] = (50.0, 99.0)) -> list[list[float]]:
        """Percentiles ``qs`` of each quarter of the values in arrival order ([] below 4
        values): exact quarters while exact, else whole blocks by their middle."""
        if self.n < 4:
            return []
        if not self._blocks:
            parts = np.array_split(np.frombuffer(self._values, np.float64), 4)
            return [[float(np.percentile(p, q)) for q in qs] for p in parts]
        sums = [np.zeros(len(self._edges) - 1, np.int64) for _ in range(4)]
        for i, blk in enumerate(self._blocks):
            size = self._block_size if i < len(self._blocks) - 1 else self._last_fill
            mid = i * self._block_size + size / 2.0
            sums[min(3, int(4 * mid / self.n))] += blk
        return [[self._from_counts(c, q) for q in qs] for c in sums]

    def nbytes(self) -> int:
        """Bytes held by the values or the blocks."""
        return len(self._values) * 8 + sum(int(b.nbytes) for b in self._blocks)

    @classmethod
    def from_values(cls, values: Sequence[float], **kw: float) -> LatencyStats:
        """Stats of ``values`` in order (converts a plain list of an older saved state)."""
        out = cls(**kw)  # type: ignore[arg-type]
        for v in values:
            out.add(v)
        return out
