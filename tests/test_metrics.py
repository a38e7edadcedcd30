"""Metrics: greedy matching, PR curves, AP edge cases, and agreement with pycocotools."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from sar_atd.boxes import box_iou, clip_boxes, merge_boxes, nms, xyxy_to_xywh
from sar_atd.detectors.base import Detections
from sar_atd.metrics import (
    ap_from_pr,
    average_precision,
    evaluate,
    match_detections,
    precision_recall,
)

GT = np.array([[10, 10, 30, 30], [50, 50, 70, 80]], np.float32)


# ----------------------------------------------------------------------------- boxes
def test_box_iou_known_values() -> None:
    """IoU of identical, half-overlapping, touching and disjoint boxes (pixel-edge)."""
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10], [30, 30, 40, 40]])
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0, 0.0]])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 4)
    with pytest.raises(ValueError, match="x1 >= x0"):
        box_iou([[10, 0, 0, 10]], b)


def test_nms_numpy_and_torchvision_agree() -> None:
    """Both NMS paths keep the same boxes on random data with distinct scores."""
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, (300, 2))
    b = np.concatenate([xy, xy + rng.uniform(5, 40, (300, 2))], 1)
    s = rng.permutation(300) / 300.0
    k1 = nms(b, s, 0.4, use_torchvision=False)
    k2 = nms(b, s, 0.4, use_torchvision=True)
    np.testing.assert_array_equal(k1, k2)
    assert np.all(box_iou(b[k1], b[k1])[~np.eye(len(k1), dtype=bool)] <= 0.4)


def test_clip_and_merge() -> None:
    """Clipping bounds boxes to the image; merging fuses overlapping boxes into one."""
    np.testing.assert_array_equal(clip_boxes([[-5, -5, 50, 20]], (10, 40)), [[0, 0, 40, 10]])
    mb, ms = merge_boxes([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]],
                         [0.9, 0.5, 0.7], 0.5, method="union")
    np.testing.assert_array_equal(mb, [[0, 0, 11, 10], [50, 50, 60, 60]])
    np.testing.assert_allclose(ms, [0.9, 0.7])
    wb, _ = merge_boxes([[0, 0, 10, 10], [2, 0, 12, 10]], [1.0, 1.0], 0.5)
    np.testing.assert_allclose(wb, [[1, 0, 11, 10]])


# ----------------------------------------------------------------------------- matching
def test_match_duplicate_prediction_is_false_positive() -> None:
    """A second prediction on an already matched GT is a false positive."""
    pred = np.array([[10, 10, 30, 30], [11, 10, 31, 30]], np.float32)
    m = match_detections(pred, [0.9, 0.8], GT, 0.5)
    assert m.tp.tolist() == [True, False]
    assert m.matched_gt.tolist() == [0, -1]


def test_match_prefers_higher_score_and_best_iou() -> None:
    """The higher-scored prediction takes the GT even if listed second; best IoU wins."""
    pred = np.array([[12, 10, 32, 30], [10, 10, 30, 30]], np.float32)
    m = match_detections(pred, [0.3, 0.9], GT, 0.5)
    assert m.order.tolist() == [1, 0]
    assert m.tp.tolist() == [False, True]
    assert m.iou[1] == pytest.approx(1.0)


def test_match_ties_in_score_use_input_order() -> None:
    """Equal scores: the earlier prediction is matched first (stable, documented)."""
    pred = np.array([[12, 10, 32, 30], [10, 10, 30, 30]], np.float32)
    m = match_detections(pred, [0.5, 0.5], GT, 0.5)
    assert m.order.tolist() == [0, 1]
    assert m.tp.tolist() == [True, False]


def test_threshold_is_inclusive() -> None:
    """IoU exactly equal to the threshold counts as a match (pycocotools' rule)."""
    pred = np.array([[0, 0, 10, 10]], np.float32)
    gt = np.array([[5, 0, 15, 10]], np.float32)  # IoU 1/3
    assert match_detections(pred, [1.0], gt, 1 / 3).tp.tolist() == [True]
    assert match_detections(pred, [1.0], gt, 0.34).tp.tolist() == [False]


# ----------------------------------------------------------------------------- AP
def test_perfect_detector_ap_is_one() -> None:
    """Every GT found with IoU 1 and no false positive: AP = 1 (both methods)."""
    preds = [Detections(GT, [0.9, 0.8]), Detections(GT[:1], [0.7])]
    gts = [GT, GT[:1]]
    for method in ("all-point", "coco101"):
        assert average_precision(preds, gts, 0.5, method) == pytest.approx(1.0)


def test_no_predictions_gives_zero() -> None:
    """GT present but nothing predicted: AP 0, empty curve."""
    preds = [Detections(), Detections()]
    assert average_precision(preds, [GT, GT], 0.5) == 0.0
    p, r, s = precision_recall(preds, [GT, GT], 0.5)
    assert p.size == r.size == s.size == 0


def test_no_ground_truth_gives_nan() -> None:
    """No GT anywhere: AP undefined (nan), with or without predictions."""
    empty = np.zeros((0, 4), np.float32)
    assert np.isnan(average_precision([Detections(GT, [0.5, 0.4])], [empty], 0.5))
    assert np.isnan(average_precision([Detections()], [empty], 0.5))
    res = evaluate([Detections()], [empty])
    assert np.isnan(res["AP50"]) and res["n_gt"] == 0


def test_images_without_gt_add_false_positives() -> None:
    """Predictions on a GT-free image are false positives that lower the AP."""
    empty = np.zeros((0, 4), np.float32)
    preds = [Detections(GT, [0.5, 0.4]), Detections([[0, 0, 5, 5]], [0.9])]
    ap = average_precision(preds, [GT, empty], 0.5)
    # curve: FP (p=0), TP (p=1/2, r=1/2), TP (p=2/3, r=1): all-point area = 2/3
    assert ap == pytest.approx(2 / 3)


def test_boxes_touching_image_borders() -> None:
    """Boxes at x=0 / y=0 and at the far edges match like any other."""
    gt = np.array([[0, 0, 12, 9], [100, 90, 128, 128]], np.float32)
    pred = np.array([[0, 0, 12, 10], [101, 90, 128, 128]], np.float32)
    assert average_precision([Detections(pred, [0.9, 0.8])], [gt], 0.75) == 1.0


def test_all_point_hand_computed() -> None:
    """All-point interpolation on a hand-made curve: TP, FP, TP with 3 GT."""
    p = np.array([1.0, 0.5, 2 / 3])
    r = np.array([1 / 3, 1 / 3, 2 / 3])
    # envelope: r in (0,1/3] -> 1, (1/3,2/3] -> 2/3, beyond -> 0
    assert ap_from_pr(p, r) == pytest.approx(1 / 3 + (1 / 3) * (2 / 3))


def test_evaluate_contents() -> None:
    """evaluate() gives named APs, PR curves, operating points and AP vs IoU."""
    preds = [Detections(GT + 1, [0.9, 0.8])]
    res = evaluate(preds, [GT])
    assert {"AP25", "AP50", "AP70", "ap_50_95", "pr_curves", "ap_vs_iou"} <= set(res)
    assert len(res["ap_vs_iou"]["iou"]) == 19
    aps = np.array(res["ap_vs_iou"]["ap"])
    assert np.all(np.diff(aps) <= 1e-12), "AP cannot grow with the IoU threshold"
    assert res["operating_points"]["0.50"]["tp"] == 2
    with pytest.raises(ValueError, match="one of each per image"):
        evaluate(preds, [GT, GT])
    with pytest.raises(ValueError, match="unknown AP method"):
        evaluate(preds, [GT], method="voc07")


# ----------------------------------------------------------------------------- pycocotools
def _coco_ap(preds: list[Detections], gts: list[np.ndarray], thresholds: list[float]
             ) -> list[float]:
    """pycocotools AP with conventions made to coincide with ours.

    Conventions: one category; every GT ``iscrowd=0`` with ``area = w*h`` (so area range
    'all' = [0, 1e10] ignores nothing); boxes as COCO ``[x, y, w, h]`` = our xyxy converted
    (same IoU: pycocotools' bbox IoU has no +1); ``maxDets`` larger than any image's
    prediction count (no truncation); precision read from ``eval['precision']`` (101
    recall points, area 'all', last maxDets) and averaged like ``summarize``.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    aid = 1
    for i, (p, g) in enumerate(zip(preds, gts, strict=True)):
        images.append({"id": i + 1, "width": 1000, "height": 1000})
        for b in xyxy_to_xywh(g):
            anns.append({"id": aid, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                         "bbox": b.tolist(), "area": float(b[2] * b[3])})
            aid += 1
        for b, s in zip(xyxy_to_xywh(p.boxes), p.scores, strict=True):
            dets.append({"image_id": i + 1, "category_id": 1, "bbox": b.tolist(),
                         "score": float(s)})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns,
                      "categories": [{"id": 1, "name": "target"}]}
        gt.createIndex()
        dt = gt.loadRes(dets) if dets else COCO()
        ev = COCOeval(gt, dt, "bbox")
        ev.params.iouThrs = np.array(thresholds)
        ev.params.maxDets = [10000]
        ev.params.areaRng = [[0, 1e10]]
        ev.params.areaRngLbl = ["all"]
        ev.evaluate()
        ev.accumulate()
    prec = ev.eval["precision"]  # (T, R, K, A, M)
    out = []
    for ti in range(len(thresholds)):
        q = prec[ti, :, 0, 0, 0]
        out.append(float(np.mean(q[q > -1])) if np.any(q > -1) else float("nan"))
    return out


def _random_case(rng: np.random.Generator, n_img: int, real_shaped: bool
                 ) -> tuple[list[Detections], list[np.ndarray]]:
    preds, gts = [], []
    for _ in range(n_img):
        if real_shaped:  # ~3 targets 20-45 px in a 464-px patchwork, jittered predictions
            m = int(rng.integers(0, 5))
            xy = rng.uniform(0, 420, (m, 2))
            g = np.concatenate([xy, xy + rng.uniform(20, 45, (m, 2))], 1)
            jit = g + rng.normal(0, 4, g.shape)
            jit[:, 2:] = np.maximum(jit[:, 2:], jit[:, :2] + 1)
            fa = int(rng.integers(0, 6))
            fxy = rng.uniform(0, 440, (fa, 2))
            fb = np.concatenate([fxy, fxy + rng.uniform(3, 30, (fa, 2))], 1)
            keep = rng.random(m) < 0.9
            b = np.concatenate([jit[keep], fb])
            s = np.concatenate([rng.uniform(0.3, 1.0, keep.sum()), rng.uniform(0, 0.8, fa)])
        else:
            m = int(rng.integers(0, 6))
            xy = rng.uniform(0, 80, (m, 2))
            g = np.concatenate([xy, xy + rng.uniform(2, 30, (m, 2))], 1)
            k = int(rng.integers(0, 8))
            pxy = rng.uniform(0, 80, (k, 2))
            rand_b = np.concatenate([pxy, pxy + rng.uniform(2, 30, (k, 2))], 1)
            near = g[rng.random(m) < 0.7]  # jittered copies of some GT boxes
            near = near + rng.uniform(-2, 2, near.shape)
            near[:, 2:] = np.maximum(near[:, 2:], near[:, :2] + 1)
            b = np.concatenate([rand_b, near])
            s = rng.random(len(b))
        preds.append(Detections(b, s))
        gts.append(g.astype(np.float32))
    return preds, gts


@pytest.mark.parametrize("real_shaped", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coco101_agrees_with_pycocotools(seed: int, real_shaped: bool) -> None:
    """COCO 101-point AP at IoU 0.5 and 0.75 equals pycocotools' to 1e-6."""
    pytest.importorskip("pycocotools")
    rng = np.random.default_rng(seed)
    preds, gts = _random_case(rng, 30, real_shaped)
    # Detections store float32; give pycocotools the same float32-rounded boxes.
    gts = [g.astype(np.float32) for g in gts]
    ref = _coco_ap(preds, gts, [0.5, 0.75])
    ours = [average_precision(preds, gts, t, "coco101") for t in (0.5, 0.75)]
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_coco101_agrees_with_pycocotools_on_score_ties() -> None:
    """With quantised scores (many exact ties) the tie order matches pycocotools'."""
    pytest.importorskip("pycocotools")
    rng = np.random.default_rng(7)
    preds, gts = _random_case(rng, 25, True)
    preds = [Detections(p.boxes, np.round(p.scores * 4) / 4) for p in preds]
    ref = _coco_ap(preds, gts, [0.5, 0.75])
    ours = [average_precision(preds, gts, t, "coco101") for t in (0.5, 0.75)]
    np.testing.assert_allclose(ours, ref, atol=1e-6)
