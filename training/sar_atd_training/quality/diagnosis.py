"""Diagnosis of box quality on real patchworks, measured against the SARBake masks.

Patchworks are sampled exactly like :func:`sar_atd_training.evaluation.patchwork.
build_patchworks` (same records, same ``numpy`` draws, same composition), but every target
keeps its cell's SARBake mask, so each box can be compared not only with the mask's tight
box (the ground truth) but with what the image and the mask say about the target:

* the **returns box** (:func:`~.boxes.returns_box`): where the image is bright near the
  target; the mask extent beyond it is target without visible returns (weak far-side
  returns), the returns beyond the mask are the sensor's blur or layover;
* the **core box** (:func:`~.boxes.core_box`): the mask without thin protrusions (a gun
  barrel), so the difference is the protrusion length per side;
* the **shadow start** (:func:`~.boxes.shadow_start_edge`): where the shadow begins behind
  the target, to test whether a far edge sits there;
* the **orientation** of the mask's long axis (:func:`~.boxes.mask_orientation_deg`): the
  chips carry no azimuth metadata, so this stands in for the azimuth (modulo 180 deg).

A deterministic held-back split of the chips (:func:`is_held_back`, by a hash of the chip
name) is kept apart for figures that must not be used for choices.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from sar_atd.boxes import box_iou
from sar_atd.detectors.base import Detections
from sar_atd.metrics import match_detections
from sar_atd.sar.chips import ChipRecord, list_chips, read_chip, read_sarbake_mask
from sar_atd_training.evaluation.dataset import EvalImage
from sar_atd_training.evaluation.patchwork import compose_patchwork, fit_to_cell
from sar_atd_training.quality.boxes import (
    SIDES,
    core_box,
    edge_errors,
    mask_orientation_deg,
    returns_box,
    shadow_start_edge,
    side_fix_iou_gain,
)

__all__ = ["HELD_BACK_PERCENT", "is_held_back", "chip_records", "TargetInfo", "DiagnosisSet",
           "sample_patchworks", "matched_boxes", "BoxDiagnosis", "diagnose", "format_diagnosis",
           "ORIENTATION_BINS", "orientation_bin", "side_oracle_ap"]

HELD_BACK_PERCENT = 20
"""Share of the dev chips (percent) held back from every choice made on dev patchworks."""

Subset = Literal["all", "tune", "heldback"]


def is_held_back(chip: str, percent: int = HELD_BACK_PERCENT) -> bool:
    """True for chips of the held-back split: SHA-256 of ``"<CLASS>/<stem>"`` mod 100 <
    ``percent`` (deterministic, independent of the file order and of any seed)."""
    digest = hashlib.sha256(chip.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 100 < percent


def chip_records(chips_dir: str | Path, subset: Subset = "all") -> list[ChipRecord]:
    """Chips with SARBake masks, sorted like ``build_patchworks``, optionally one split.

    Args:
        chips_dir: ``<dir>/<CLASS>/<NAME>.jpeg`` + ``<NAME>.mask.png``.
        subset: ``all`` (every chip: the standard dev patchworks), ``tune`` (chips not held
            back: where choices are made) or ``heldback`` (:func:`is_held_back`).
    """
    if subset not in ("all", "tune", "heldback"):
        raise ValueError(f"unknown subset {subset!r}: expected 'all', 'tune' or 'heldback'")
    recs = [r for r in list_chips(chips_dir) if r.mask_path is not None]
    if subset == "all":
        return recs
    want = subset == "heldback"
    return [r for r in recs if is_held_back(f"{r.class_name}/{r.image_path.stem}") == want]


@dataclass
class TargetInfo:
    """One real target of a patchwork with its SARBake-derived references.

    Boxes are float32 (4,) xyxy in patchwork pixels; ``shadow_start`` is a row edge (y).
    """

    image_index: int
    chip: str
    class_name: str
    gt: np.ndarray
    returns: np.ndarray | None
    core: np.ndarray | None
    shadow_start: float | None
    orientation_deg: float | None


@dataclass
class DiagnosisSet:
    """Patchworks as evaluation images plus one :class:`TargetInfo` per ground-truth box
    (image order, then box order)."""

    images: list[EvalImage]
    targets: list[TargetInfo]
    description: str = ""

    def with_images(self, render: Callable[[np.ndarray], np.ndarray], suffix: str = ""
                    ) -> DiagnosisSet:
        """The same targets on re-rendered images (``render``: uint8 (H, W) -> uint8)."""
        imgs = [EvalImage(it.name, render(it.image), it.boxes) for it in self.images]
        return DiagnosisSet(imgs, self.targets, self.description + suffix)


def sample_patchworks(records: Sequence[ChipRecord], n: int = 200, seed: int = 0,
                      grid: int = 4, overlap: int = 16, cell_size: int = 128,
                      returns_factor: float = 3.0) -> DiagnosisSet:
    """Compose ``n`` patchworks from ``records`` keeping every target's mask measurements.

    With ``records = chip_records(dir, "all")`` the images and boxes are identical to
    ``build_patchworks(dir, n, seed, grid, overlap, cell_size)``.

    Raises:
        ValueError: fewer records than cells per patchwork, or bad ``n``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if len(records) < grid * grid:
        raise ValueError(f"need at least {grid * grid} chips, got {len(records)}")
    rng = np.random.default_rng(seed)
    picks = [rng.choice(len(records), grid * grid, replace=False) for _ in range(n)]
    stride = cell_size - overlap
    images, targets = [], []
    for i, pick in enumerate(picks):
        cells, masks = [], []
        for j in pick:
            rec = records[int(j)]
            chip = read_chip(rec.image_path)
            cell, m = fit_to_cell(chip, read_sarbake_mask(rec.mask_path, chip.shape), cell_size)
            cells.append(cell)
            masks.append(m)
        image, boxes, owners = compose_patchwork(cells, masks, grid, overlap)
        for b, k in zip(boxes, owners, strict=True):
            rec = records[int(pick[k])]
            r, c = divmod(k, grid)
            off = np.array([c * stride, r * stride] * 2, np.float32)
            m = masks[k]
            crop = image[r * stride:r * stride + cell_size, c * stride:c * stride + cell_size]
            ret, core = returns_box(crop, m, returns_factor), core_box(m)
            sh = shadow_start_edge(m)
            targets.append(TargetInfo(
                image_index=i, chip=f"{rec.class_name}/{rec.image_path.stem}",
                class_name=rec.class_name, gt=b,
                returns=None if ret is None else ret + off,
                core=None if core is None else core + off,
                shadow_start=None if sh is None else sh + r * stride,
                orientation_deg=mask_orientation_deg(m)))
        images.append(EvalImage(f"patchwork_{i:04d}", image, boxes))
    return DiagnosisSet(images, targets, f"{n} {grid}x{grid} patchworks of {len(records)} "
                                         f"chips (seed {seed}, {overlap} px overlaps)")


def matched_boxes(dset: DiagnosisSet, preds: Sequence[Detections], min_iou: float = 0.1
                  ) -> np.ndarray:
    """The prediction matched to each target (paper's greedy rule at ``min_iou``).

    Returns:
        float64 (T, 4) boxes in :attr:`DiagnosisSet.targets` order; NaN rows where the
        target has no prediction with IoU >= ``min_iou``.
    """
    if len(preds) != len(dset.images):
        raise ValueError(f"{len(preds)} predictions for {len(dset.images)} images")
    out = []
    for it, p in zip(dset.images, preds, strict=True):
        res = match_detections(p.boxes, p.scores, it.boxes, min_iou)
        rows = np.full((len(it.boxes), 4), np.nan)
        for k in np.nonzero(res.tp)[0]:
            rows[res.matched_gt[k]] = p.boxes[k]
        out.append(rows)
    return np.concatenate(out) if out else np.zeros((0, 4))


def side_oracle_ap(dset: DiagnosisSet, preds: Sequence[Detections], iou_threshold: float = 0.7,
                   min_iou: float = 0.1) -> dict[str, float]:
    """AP at ``iou_threshold`` with one box side of every matched prediction set exactly.

    An upper bound per side: how much AP a perfect localisation of that side alone would
    bring (matched as in :func:`matched_boxes`; unmatched predictions are left as they are).

    Returns:
        ``{"raw": AP, "far": AP with exact far sides, "near": ..., "left": ..., "right": ...}``.
    """
    from sar_atd.metrics import evaluate

    gts = [it.boxes for it in dset.images]
    matches = [match_detections(p.boxes, p.scores, g, min_iou)
               for p, g in zip(preds, gts, strict=True)]

    def ap(side_cols: tuple[int, ...]) -> float:
        fixed = []
        for p, g, r in zip(preds, gts, matches, strict=True):
            b = p.boxes.copy()
            k = np.nonzero(r.tp)[0]
            for c in side_cols:
                b[k, c] = g[r.matched_gt[k], c]
            fixed.append(Detections(b, p.scores))
        m = evaluate(fixed, gts, iou_thresholds=(iou_threshold,), ap_iou_thresholds=(0.5,))
        return float(m[f"AP{int(round(iou_threshold * 100))}"])

    out = {"raw": ap(())}
    out.update({side: ap((c,)) for side, c in zip(SIDES, (1, 3, 0, 2), strict=True)})
    return out


ORIENTATION_BINS = ("long axis ~cross-range", "diagonal (/)", "long axis ~range",
                    "diagonal (\\)")


def orientation_bin(deg: float | None) -> str:
    """Name of the 45-deg orientation bin (see :func:`~.boxes.mask_orientation_deg`)."""
    if deg is None:
        return "unknown"
    return ORIENTATION_BINS[int(((deg + 22.5) % 180.0) // 45.0)]


def _stack(boxes: Sequence[np.ndarray | None]) -> np.ndarray:
    return np.stack([np.full(4, np.nan) if b is None else np.asarray(b, np.float64)
                     for b in boxes]) if len(boxes) else np.zeros((0, 4))


def _diag_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ok = np.isfinite(a).all(1) & np.isfinite(b).all(1)
    out = np.full(len(a), np.nan)
    if ok.any():
        out[ok] = np.diag(box_iou(a[ok], b[ok]))
    return out


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    ra = np.argsort(np.argsort(a[ok])).astype(float)
    rb = np.argsort(np.argsort(b[ok])).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


@dataclass
class BoxDiagnosis:
    """Per-target measurements of one detector's matched boxes (T targets, M matched).

    Side arrays are (M, 4) float64 in :data:`~.boxes.SIDES` order, signed outwards.
    """

    name: str
    n_targets: int
    classes: np.ndarray
    orient: np.ndarray
    iou: np.ndarray
    err: np.ndarray
    gain: np.ndarray
    returns_dev: np.ndarray
    protrusion: np.ndarray
    err_vs_returns: np.ndarray
    far_to_shadow: np.ndarray
    iou_returns: np.ndarray
    iou_core: np.ndarray
    summary: dict = field(default_factory=dict)


def diagnose(dset: DiagnosisSet, preds: Sequence[Detections], name: str,
             min_iou: float = 0.1) -> BoxDiagnosis:
    """Measure the matched boxes of one detector against the SARBake references."""
    pred = matched_boxes(dset, preds, min_iou)
    ok = np.isfinite(pred).all(1)
    t = [x for x, k in zip(dset.targets, ok, strict=True) if k]
    p = pred[ok]
    gt = np.stack([x.gt for x in t]).astype(np.float64) if t else np.zeros((0, 4))
    ret, core = _stack([x.returns for x in t]), _stack([x.core for x in t])
    shadow = np.array([np.nan if x.shadow_start is None else x.shadow_start for x in t])
    d = BoxDiagnosis(
        name=name, n_targets=len(dset.targets),
        classes=np.array([x.class_name for x in t]),
        orient=np.array([orientation_bin(x.orientation_deg) for x in t]),
        iou=_diag_iou(p, gt), err=edge_errors(p, gt), gain=side_fix_iou_gain(p, gt),
        returns_dev=(ret[:, [1, 3, 0, 2]] - gt[:, [1, 3, 0, 2]]) * [-1, 1, -1, 1],
        protrusion=(gt[:, [1, 3, 0, 2]] - core[:, [1, 3, 0, 2]]) * [-1, 1, -1, 1],
        err_vs_returns=(p[:, [1, 3, 0, 2]] - ret[:, [1, 3, 0, 2]]) * [-1, 1, -1, 1],
        far_to_shadow=shadow - p[:, 1],
        iou_returns=_diag_iou(p, ret), iou_core=_diag_iou(p, core))
    return d


def _q(x: np.ndarray, q: float) -> float:
    x = x[np.isfinite(x)]
    return float(np.quantile(x, q)) if x.size else float("nan")


def _f(v: float, fmt: str = "6.2f") -> str:
    return f"{v:{fmt}}" if np.isfinite(v) else " " * (int(fmt.split(".")[0]) - 1) + "-"


def _group_rows(d: BoxDiagnosis, keys: np.ndarray, order: Sequence[str]) -> list[str]:
    rows = []
    for k in order:
        sel = keys == k
        if not sel.any():
            continue
        iou = d.iou[sel]
        med = [np.median(d.err[sel, s]) for s in range(4)]
        rows.append(f"{k:>24s} {sel.sum():5d} {_q(iou, 0.1):5.2f} {_q(iou, 0.5):5.2f} "
                    f"{_q(iou, 0.9):5.2f} {np.mean(iou >= 0.5):5.2f} {np.mean(iou >= 0.7):5.2f}"
                    + "".join(f" {m:+6.1f}" for m in med)
                    + f" {_q(d.returns_dev[sel, 0], .5):+6.1f}"
                    + f"  {SIDES[int(np.argmax(d.gain[sel].mean(0)))]:>5s}")
    return rows


def format_diagnosis(d: BoxDiagnosis, protrusion_px: float = 3.0) -> str:
    """Text tables of one detector's diagnosis (what ``bench_box_diagnosis`` prints)."""
    m = len(d.iou)
    lines = [f"== {d.name}: {m} of {d.n_targets} targets matched (IoU >= 0.1) ==",
             f"IoU of matched boxes: p10 {_q(d.iou, .1):.3f}  p25 {_q(d.iou, .25):.3f}  "
             f"median {_q(d.iou, .5):.3f}  p75 {_q(d.iou, .75):.3f}  p90 {_q(d.iou, .9):.3f}; "
             f">=0.5: {np.mean(d.iou >= .5):.3f}  >=0.7: {np.mean(d.iou >= .7):.3f}",
             f"median IoU with SARBake box {_q(d.iou, .5):.3f}, with the returns box "
             f"{_q(d.iou_returns, .5):.3f}, with the core (no-protrusion) box "
             f"{_q(d.iou_core, .5):.3f}", ""]
    head = (f"{'group':>24s} {'n':>5s} {'p10':>5s} {'med':>5s} {'p90':>5s} {'>=.5':>5s} "
            f"{'>=.7':>5s}" + "".join(f" {s:>6s}" for s in SIDES) + f" {'retFar':>6s}  worst")
    lines += ["By class: IoU quantiles, shares, median signed side error (px, + = box beyond "
              "SARBake),", "retFar: median returns-box far edge minus SARBake far edge (< 0: no "
              "visible returns there), side costing most IoU", head]
    lines += _group_rows(d, d.classes, sorted(set(d.classes.tolist())))
    lines += ["", "By target orientation (SARBake long axis; no azimuth metadata in the chips)",
              head]
    lines += _group_rows(d, d.orient, (*ORIENTATION_BINS, "unknown"))
    lines += ["", "By side: error against SARBake and measured causes (px, signed outwards)",
              f"{'side':>6s} {'med':>6s} {'p10':>6s} {'p90':>6s} {'|med|':>6s} {'gainIoU':>7s} "
              f"{'worst%':>6s} {'ret-mask':>8s} {'rho':>5s} {'vsRet':>6s} {'prot>=3':>7s} "
              f"{'errProt':>7s} {'errNoPr':>7s}"]
    worst = np.argmax(d.gain, axis=1) if m else np.zeros(0, int)
    for s, side in enumerate(SIDES):
        e, dev, prot = d.err[:, s], d.returns_dev[:, s], d.protrusion[:, s]
        has = prot >= protrusion_px
        lines.append(
            f"{side:>6s} {_q(e, .5):+6.1f} {_q(e, .1):+6.1f} {_q(e, .9):+6.1f} "
            f"{_q(np.abs(e), .5):6.1f} {np.mean(d.gain[:, s]):7.3f} "
            f"{100 * np.mean(worst == s):6.1f} {_q(dev, .5):+8.1f} {_spearman(e, dev):+5.2f} "
            f"{_q(d.err_vs_returns[:, s], .5):+6.1f} {int(has.sum()):7d} "
            f"{_f(_q(e[has], .5), '+7.1f')} {_f(_q(e[~has], .5), '+7.1f')}")
    lines += ["  ret-mask: returns box edge minus SARBake edge (< 0: mask extends beyond the "
              "visible returns, > 0: returns spill beyond the mask: blur/layover);",
              "  rho: Spearman correlation of the box error with ret-mask; vsRet: box edge "
              "minus returns edge; prot>=3: targets with a thin protrusion",
              f"  (mask minus opened-mask edge >= {protrusion_px:g} px, e.g. a gun barrel) on "
              "that side; errProt/errNoPr: median box error with/without one."]
    far_gt = -d.err[:, 0]  # pred far edge - GT far edge, in y (down = nearer)
    to_sh = d.far_to_shadow
    to_ret = -d.err_vs_returns[:, 0]
    dists = np.stack([np.abs(far_gt), np.abs(to_ret), np.abs(to_sh)], 1)
    ok = np.isfinite(dists).all(1)
    closest = np.argmin(dists[ok], 1) if ok.any() else np.zeros(0, int)
    lines += ["", "Far edge (top, shadow side): where does the predicted far edge sit?",
              f"  median |pred - SARBake far edge| {_q(dists[:, 0], .5):.1f} px, |pred - "
              f"returns far edge| {_q(dists[:, 1], .5):.1f} px, |pred - shadow start| "
              f"{_q(dists[:, 2], .5):.1f} px",
              f"  closest to: SARBake edge {np.mean(closest == 0):.2f}, returns edge "
              f"{np.mean(closest == 1):.2f}, shadow start {np.mean(closest == 2):.2f} "
              f"(of {int(ok.sum())} targets with a shadow behind them)",
              f"  shadow start lies {_q(to_sh + far_gt, .5):+.1f}"
              " px below (nearer than) the SARBake far edge (median)"]
    low = d.iou < 0.5
    if low.any():
        lines += ["", f"Boxes with IoU < 0.5 ({int(low.sum())}): median side errors "
                  + ", ".join(f"{s} {np.median(d.err[low, i]):+.1f}"
                              for i, s in enumerate(SIDES))
                  + "; classes " + ", ".join(f"{c} {n}" for c, n in zip(
                      *np.unique(d.classes[low], return_counts=True), strict=True))]
    return "\n".join(lines)
