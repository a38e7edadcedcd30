"""Fitting the box calibrator's side offsets on real calibration patchworks.

The offsets are fitted on matched detections of patchworks of the **tune** chip split
(:func:`sar_atd_training.quality.diagnosis.chip_records` ``"tune"``; the held-back split is
never used here). Real labels serve only to fit these offsets and to measure; the classifier
itself is trained on synthetic data. Candidates (``CANDIDATES``):

* ``hard``: per-true-class median side errors, selected by the predicted class (argmax);
* ``soft``: the same table weighted by the predicted probabilities;
* ``hard_by_pred``: median side errors grouped by the *predicted* class (absorbs systematic
  confusions), selected by argmax;
* ``linear``: side errors regressed on ``[p, 1]`` by least squares (ridge ``1e-3``).

The candidate with the best AP70 on the tune patchworks is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sar_atd.box_calibration import BoxCalibrator, apply_side_offsets, offsets_for
from sar_atd.detectors.base import Detections
from sar_atd.metrics import evaluate, match_detections

CANDIDATES = ("hard", "soft", "hard_by_pred", "linear")
"""Fitted variants compared on the tune set (``hard_by_pred`` is stored as mode ``hard``)."""


@dataclass
class Matched:
    """Matched detections of a patchwork set (M of them).

    Attributes:
        err: float64 (M, 4) signed outward side errors (SIDES order), pixels.
        labels: int64 (M,) true class index (-1: class unknown to the calibrator).
        probs: float32 (M, C) predicted class probabilities.
        all_probs: per image float32 (N_i, C) probabilities of every detection.
        matches: per image (detection index (K,), matched-gt index (K,)).
    """

    err: np.ndarray
    labels: np.ndarray
    probs: np.ndarray
    all_probs: list[np.ndarray]
    matches: list[tuple[np.ndarray, np.ndarray]]


def edge_errors(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """float64 (N, 4) signed outward side errors of ``pred`` against ``ref`` (both (N, 4))."""
    p, r = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
    return (p[:, [1, 3, 0, 2]] - r[:, [1, 3, 0, 2]]) * np.array([-1.0, 1.0, -1.0, 1.0])


def match(images: Sequence, targets_classes: Sequence[str], preds: Sequence[Detections],
          calibrator: BoxCalibrator, min_iou: float = 0.1) -> Matched:
    """Class probabilities of every detection and the side errors of the matched ones.

    Args:
        images: ``EvalImage`` list (uint8 image, (G, 4) boxes).
        targets_classes: class name of every ground-truth box (image order, then box order).
        preds: detections per image.
        calibrator: gives the class probabilities.
        min_iou: matching IoU (the paper's greedy rule).
    """
    cls = list(calibrator.classes)
    errs, labels, probs, allp, matches = [], [], [], [], []
    ti = 0
    for it, p in zip(images, preds, strict=True):
        pr = calibrator.probabilities(it.image, p.boxes)
        allp.append(pr)
        res = match_detections(p.boxes, p.scores, it.boxes, min_iou)
        k = np.nonzero(res.tp)[0]
        g = np.asarray(res.matched_gt)[k].astype(np.int64)
        matches.append((k, g))
        if len(k):
            errs.append(edge_errors(p.boxes[k], it.boxes[g]))
            labels.append([cls.index(targets_classes[ti + j]) if targets_classes[ti + j] in cls
                           else -1 for j in g])
            probs.append(pr[k])
        ti += len(it.boxes)
    c = len(cls)
    return Matched(np.concatenate(errs) if errs else np.zeros((0, 4)),
                   np.concatenate(labels).astype(np.int64) if labels else np.zeros(0, np.int64),
                   np.concatenate(probs) if probs else np.zeros((0, c), np.float32), allp,
                   matches)


def fit_class_offsets(err: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """float64 (C, 4) median side error per class (the global median for an absent class)."""
    e = np.asarray(err, np.float64).reshape(-1, 4)
    glob = np.median(e, 0) if len(e) else np.zeros(4)
    out = np.tile(glob, (n_classes, 1))
    for c in range(n_classes):
        sel = labels == c
        if sel.any():
            out[c] = np.median(e[sel], 0)
    return out


def fit_linear(probs: np.ndarray, err: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """float64 (C + 1, 4) least-squares weights of ``err`` (M, 4) on ``[probs, 1]``."""
    p = np.asarray(probs, np.float64)
    x = np.concatenate([p, np.ones((len(p), 1))], 1)
    a = x.T @ x + ridge * np.eye(x.shape[1])
    return np.linalg.solve(a, x.T @ np.asarray(err, np.float64))


def fit_candidates(m: Matched, n_classes: int) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    """Every candidate: name -> (mode, offsets (C, 4), linear (C + 1, 4))."""
    zero_lin = np.zeros((n_classes + 1, 4))
    true_tab = fit_class_offsets(m.err, m.labels, n_classes)
    pred_tab = fit_class_offsets(m.err, np.argmax(m.probs, 1) if len(m.probs) else m.labels,
                                 n_classes)
    return {"hard": ("hard", true_tab, zero_lin), "soft": ("soft", true_tab, zero_lin),
            "hard_by_pred": ("hard", pred_tab, zero_lin),
            "linear": ("linear", np.zeros((n_classes, 4)), fit_linear(m.probs, m.err))}


def corrected(preds: Sequence[Detections], all_probs: Sequence[np.ndarray], mode: str,
              offsets: np.ndarray, linear: np.ndarray) -> list[Detections]:
    """Every detection's box corrected by its predicted class under ``mode``."""
    return [Detections(apply_side_offsets(p.boxes, offsets_for(pr, mode, offsets, linear))
                       if len(p) else p.boxes, p.scores)
            for p, pr in zip(preds, all_probs, strict=True)]


def oracle(images: Sequence, targets_classes: Sequence[str], preds: Sequence[Detections],
           m: Matched, table: np.ndarray, classes: Sequence[str]) -> list[Detections]:
    """Matched detections corrected with their TRUE class's offsets (an upper bound; the
    others unchanged)."""
    out, ti = [], 0
    for it, p, (k, g) in zip(images, preds, m.matches, strict=True):
        b = p.boxes.copy()
        for kk, gg in zip(k, g, strict=True):
            c = targets_classes[ti + gg]
            if c in classes:
                b[kk] = apply_side_offsets(p.boxes[kk:kk + 1], table[list(classes).index(c)])[0]
        out.append(Detections(b, p.scores))
        ti += len(it.boxes)
    return out


def ap_triplet(preds: Sequence[Detections], images: Sequence) -> tuple[float, float, float]:
    """(AP25, AP50, AP70) of ``preds`` against the images' boxes."""
    r = evaluate(list(preds), [it.boxes for it in images], iou_thresholds=(0.25, 0.5, 0.7),
                 ap_iou_thresholds=(0.5,))
    return float(r["AP25"]), float(r["AP50"]), float(r["AP70"])


def confusion(labels: np.ndarray, probs: np.ndarray, n_classes: int) -> np.ndarray:
    """int64 (C, C) counts: row = true class, column = predicted (argmax) class."""
    cm = np.zeros((n_classes, n_classes), np.int64)
    ok = labels >= 0
    np.add.at(cm, (labels[ok], np.argmax(probs[ok], 1)), 1)
    return cm


def format_confusion(cm: np.ndarray, classes: Sequence[str]) -> str:
    """Text table of a confusion matrix with per-class recall and the overall accuracy."""
    short = [c[:6] for c in classes]
    lines = [f"{'true/pred':>10s} " + " ".join(f"{s:>6s}" for s in short) + "  recall"]
    for i, c in enumerate(classes):
        n = cm[i].sum()
        lines.append(f"{c:>10s} " + " ".join(f"{v:6d}" for v in cm[i])
                     + f"  {cm[i, i] / n if n else float('nan'):.3f}")
    tot = cm.sum()
    lines.append(f"accuracy {np.trace(cm) / tot if tot else float('nan'):.3f} (n {tot})")
    return "\n".join(lines)


def chip_probabilities(calibrator: BoxCalibrator, records: Sequence) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """Class probabilities of real chips, each window centred on its SARBake target box.

    Args:
        records: ``ChipRecord`` list with masks (:func:`~sar_atd_training.quality.
            diagnosis.chip_records`).

    Returns:
        ``(labels, probs)``: int64 (N,) true class index (-1: unknown class), float32 (N, C).
    """
    from sar_atd.boxes import mask_box
    from sar_atd.sar.chips import MASK_TARGET, read_chip, read_sarbake_mask

    cls = list(calibrator.classes)
    labels, probs = [], []
    for r in records:
        chip = read_chip(r.image_path)
        m = read_sarbake_mask(r.mask_path, chip.shape)
        box = mask_box(m == MASK_TARGET, True)
        if box is None:
            continue
        labels.append(cls.index(r.class_name) if r.class_name in cls else -1)
        probs.append(calibrator.probabilities(chip, np.asarray(box, np.float32)[None])[0])
    return (np.asarray(labels, np.int64),
            np.stack(probs) if probs else np.zeros((0, len(cls)), np.float32))
