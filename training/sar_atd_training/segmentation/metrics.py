"""Segmentation scores: confusion matrices, IoU and Dice per class.

Two aggregations are reported: *pooled* (one confusion matrix over every pixel of every chip,
so large shadows weigh more) and *mean over chips* (the score of each chip, averaged; a chip
where a class is absent from both prediction and truth is skipped for that class).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_CLASSES = 3


def confusion(pred: np.ndarray, truth: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """Confusion matrix int64 (C, C), rows = truth, columns = prediction.

    Args:
        pred, truth: integer label maps of the same shape, values in [0, n_classes).

    Raises:
        ValueError: shapes differ or labels out of range.
    """
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in shape")
    p = pred.astype(np.int64).ravel()
    t = truth.astype(np.int64).ravel()
    if p.size and (min(p.min(), t.min()) < 0 or max(p.max(), t.max()) >= n_classes):
        raise ValueError(f"labels must be in [0, {n_classes})")
    return np.bincount(t * n_classes + p, minlength=n_classes ** 2).reshape(n_classes,
                                                                         n_classes)


def iou_dice(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class IoU = TP / (TP + FP + FN) and Dice = 2 TP / (2 TP + FP + FN), float64 (C,).

    A class absent from both prediction and truth gets NaN (undefined, not perfect).
    """
    cm = np.asarray(cm, np.float64)
    tp = np.diag(cm)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
        dice = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    return iou, dice


def summarise(cms: Sequence[np.ndarray], class_names: Sequence[str]) -> dict:
    """Pooled and mean-over-chips IoU/Dice per class from per-chip confusion matrices.

    Returns:
        ``{"pooled": {name: {"iou", "dice"}}, "mean_over_chips": {name: {"iou", "dice",
        "n"}}, "n_chips"}``; ``overall`` entries average the non-background classes.
    """
    pooled = np.sum(cms, axis=0) if len(cms) else np.zeros((len(class_names),) * 2)
    pi, pd = iou_dice(pooled)
    per = np.array([np.stack(iou_dice(c)) for c in cms]) if len(cms) else np.zeros((0, 2, 3))
    out: dict = {"n_chips": len(cms), "pooled": {}, "mean_over_chips": {}}
    for k, name in enumerate(class_names):
        out["pooled"][name] = {"iou": float(pi[k]), "dice": float(pd[k])}
        vals = per[:, :, k] if len(per) else np.zeros((0, 2))
        ok = ~np.isnan(vals[:, 0])
        out["mean_over_chips"][name] = {
            "iou": float(vals[ok, 0].mean()) if ok.any() else float("nan"),
            "dice": float(vals[ok, 1].mean()) if ok.any() else float("nan"),
            "n": int(ok.sum())}
    fg = [n for n in class_names if n != "background"]
    for agg in ("pooled", "mean_over_chips"):
        out[agg]["overall"] = {
            m: float(np.mean([out[agg][n][m] for n in fg])) for m in ("iou", "dice")}
    return out
