"""Evaluation plots (matplotlib, Agg backend): PR curves, AP vs IoU, annotated images.

Figures are built as :class:`matplotlib.figure.Figure` objects on an explicit Agg canvas, so
importing this module never changes the process-wide matplotlib backend (no
``matplotlib.use``) and works without a display. PNGs are written atomically.

All functions take the dicts returned by :func:`sar_atd.metrics.evaluate` (one per
detector, keyed by the detector's name) so several detectors - CFAR beside the models -
share one figure, like the paper's Fig. 12 (AP vs IoU threshold) and Fig. 13 (precision x
recall at IoU 0.25 and 0.5). Each function writes a PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from sar_atd.atomic import atomic_path
from sar_atd.detectors.base import Detections

__all__ = ["plot_pr_curves", "plot_ap_vs_iou", "plot_detections", "new_figure", "save_png"]

_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink",
           "tab:olive", "tab:cyan"]


def _key(t: float) -> str:
    return f"{t:.2f}"


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A figure on its own Agg canvas (no pyplot state, no global backend change)."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: Path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def plot_pr_curves(results: Mapping[str, dict], path: str | Path,
                   iou_thresholds: Sequence[float] = (0.25, 0.5),
                   title: str = "Precision x recall") -> Path:
    """Precision x recall curves, one panel per IoU threshold, one line per detector.

    Args:
        results: detector name -> :func:`~sar_atd.metrics.evaluate` output (its
            ``pr_curves`` must hold the requested thresholds).
        path: output PNG.
        iou_thresholds: one panel each (paper Fig. 13: 0.25 and 0.5).
        title: figure title.
    """
    path = Path(path)
    fig = new_figure((5 * len(iou_thresholds), 4.6))
    axes = fig.subplots(1, len(iou_thresholds), squeeze=False)
    for ax, t in zip(axes[0], iou_thresholds, strict=True):
        for i, (name, res) in enumerate(results.items()):
            curve = res.get("pr_curves", {}).get(_key(t))
            if curve is None:
                raise KeyError(f"results of {name!r} have no PR curve at IoU {t}; "
                               f"evaluate() with iou_thresholds including {t}")
            r = np.asarray(curve["recall"], float)
            p = np.asarray(curve["precision"], float)
            ap = res.get(f"AP{int(round(t * 100))}", float("nan"))
            # start the curve at recall 0 with the first precision (a step plot)
            r = np.concatenate([[0.0], r]) if r.size else r
            p = np.concatenate([[p[0]], p]) if p.size else p
            ax.plot(r, p, color=_COLORS[i % len(_COLORS)], lw=1.6,
                    label=f"{name} (AP={ap:.3f})", drawstyle="steps-post")
        ax.set_xlim(0, 1.0)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"IoU {t:.2f}")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return save_png(fig, path)


def plot_ap_vs_iou(results: Mapping[str, dict], path: str | Path,
                   title: str = "AP vs IoU threshold") -> Path:
    """AP as a function of the IoU threshold (paper Fig. 12), one line per detector."""
    path = Path(path)
    fig = new_figure((6, 4.4))
    ax = fig.subplots()
    for i, (name, res) in enumerate(results.items()):
        curve = res["ap_vs_iou"]
        ax.plot(curve["iou"], curve["ap"], "o-", ms=3.5, color=_COLORS[i % len(_COLORS)],
                label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel("average precision")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)


def plot_detections(image: np.ndarray, gt_boxes: np.ndarray | None,
                    detections: Mapping[str, Detections] | Detections | None,
                    path: str | Path, score_threshold: float | None = None,
                    title: str = "", max_labels: int = 30) -> Path:
    """An image with ground truth (white, dashed) and predictions (colour per detector).

    Args:
        image: uint8 (H, W).
        gt_boxes: (M, 4) xyxy ground truth, or None.
        detections: one :class:`Detections` or detector name -> Detections.
        path: output PNG.
        score_threshold: hide predictions scored below it (None: show all).
        title: axes title.
        max_labels: write the score of at most this many best predictions per detector.
    """
    path = Path(path)
    if isinstance(detections, Detections):
        detections = {"prediction": detections}
    detections = detections or {}
    h, w = image.shape[:2]
    fig = new_figure((min(12, max(4, w / 80)), min(12, max(4, h / 80))))
    ax = fig.subplots()
    # extent puts pixel (r, c) on [c, c+1) x [r, r+1): the pixel-edge box convention
    ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest",
              extent=(0, w, h, 0))
    if gt_boxes is not None:
        for x0, y0, x1, y1 in np.asarray(gt_boxes, float).reshape(-1, 4):
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="white",
                                       lw=1.4, ls="--"))
    handles = [Line2D([], [], color="white", ls="--", label="ground truth")]
    for i, (name, det) in enumerate(detections.items()):
        c = _COLORS[i % len(_COLORS)]
        keep = np.ones(len(det), bool) if score_threshold is None else (
            det.scores >= score_threshold)
        boxes, scores = det.boxes[keep], det.scores[keep]
        top = set(np.argsort(-scores, kind="mergesort")[:max_labels].tolist())
        for j, ((x0, y0, x1, y1), s) in enumerate(zip(boxes, scores, strict=True)):
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=c, lw=1.2))
            if j in top:
                ax.text(x0, y0 - 1, f"{s:.3g}", color=c, fontsize=6, va="bottom")
        handles.append(Line2D([], [], color=c, label=name))
    ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.6)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_png(fig, path)
