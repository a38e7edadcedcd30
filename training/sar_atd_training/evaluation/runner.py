"""Run detectors over an evaluation set and write a report folder.

Used by ``sar-atd eval`` and ``benchmarks/bench_real_patchworks.py``. A report folder holds
``report.md`` (summary table + figures), ``metrics.json`` (every number, per detector),
``pr_curves.png`` (IoU 0.25 and 0.5), ``ap_vs_iou.png`` and a few annotated examples.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sar_atd.detectors.base import Detections, Detector
from sar_atd.runtime import resolve_detector
from sar_atd_training.evaluation.dataset import EvalImage

log = logging.getLogger(__name__)

__all__ = ["DetectorRun", "resolve_detector", "run_detector", "evaluate_runs",
           "write_report", "to_jsonable", "tiled_detector", "TiledDetector"]


@dataclass
class DetectorRun:
    """One detector's predictions on an evaluation set and its metrics."""

    name: str
    spec: str
    preds: list[Detections]
    ms_per_image: float
    metrics: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)


class TiledDetector:
    """A detector run through the scene detector (tiler, batched inference, cross-seam
    merge): ``detect(image)`` on scenes of any size, as ``sar-atd detect`` runs them."""

    def __init__(self, scene_detector: object, name: str) -> None:
        self.scene = scene_detector
        self.name = name
        self.model_info = getattr(scene_detector, "info", None)

    def detect(self, image: np.ndarray) -> Detections:
        return self.scene.detect(image).to_detections()  # type: ignore[attr-defined]


def tiled_detector(detector: Detector, tile: int, overlap: int, batch: int = 8,
                   device: str = "cpu") -> TiledDetector:
    """``detector`` behind the scene detector with ``tile`` x ``tile`` tiles, keeping
    every score (the evaluation sweeps the threshold)."""
    from sar_atd.config import SceneDetectorConfig, TilerConfig
    from sar_atd.runtime import resolve_device_name
    from sar_atd.scene import SceneDetector

    cfg = TilerConfig(tile_size=tile, overlap=overlap, batch_size=batch,
                      device=resolve_device_name(device))
    sd = SceneDetector(detector, cfg, SceneDetectorConfig(score_threshold=0.0))
    return TiledDetector(sd, f"{detector.name} (tiles {tile}/{overlap})")


def run_detector(detector: Detector, images: Sequence[EvalImage], progress: bool = True
                 ) -> tuple[list[Detections], float]:
    """Detect on every image; returns (detections, mean milliseconds per image)."""
    from tqdm import tqdm

    preds: list[Detections] = []
    t0 = time.perf_counter()
    for it in tqdm(images, desc=f"detect {detector.name}", disable=not progress, leave=False):
        preds.append(detector.detect(it.image))
    ms = (time.perf_counter() - t0) * 1e3 / max(1, len(images))
    return preds, ms


def evaluate_runs(runs: Sequence[DetectorRun], images: Sequence[EvalImage],
                  iou_thresholds: Sequence[float] = (0.25, 0.5), method: str = "all-point"
                  ) -> None:
    """Fill each run's ``metrics`` with :func:`sar_atd.metrics.evaluate`."""
    from sar_atd.metrics import evaluate

    gts = [it.boxes for it in images]
    for r in runs:
        r.metrics = evaluate(r.preds, gts, iou_thresholds=iou_thresholds, method=method)


def to_jsonable(x: object) -> object:
    """Convert numpy scalars/arrays and non-finite floats (-> None) for strict JSON."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _fmt(v: float) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"


def _at_operating_point(run: DetectorRun, i: int) -> Detections:
    """Predictions of image ``i`` scored at least the run's best-F1 threshold at IoU 0.5.

    Scores of different detectors live on different scales (CFAR contrast vs probability),
    so each one is shown at its own operating point; without one, all are shown.
    """
    det = run.preds[i]
    op = (run.metrics.get("operating_points") or {}).get("0.50") or {}
    thr = op.get("score_threshold")
    if thr is None or not np.isfinite(thr):
        return det
    keep = det.scores >= thr
    return Detections(det.boxes[keep], det.scores[keep])


def write_report(out_dir: str | Path, runs: Sequence[DetectorRun],
                 images: Sequence[EvalImage], dataset_desc: str, n_examples: int = 4,
                 extra: dict | None = None) -> Path:
    """Write ``report.md``, ``metrics.json`` and the PNG figures into ``out_dir``.

    The folder is built in a hidden temporary sibling and swapped in whole, replacing an
    earlier one (callers decide whether replacing is allowed).

    Returns:
        Path of ``report.md``.
    """
    from sar_atd.atomic import atomic_dir

    final = Path(out_dir)
    with atomic_dir(final, overwrite=True) as tmp:
        _write_report_files(tmp, runs, images, dataset_desc, n_examples, extra)
    return final / "report.md"


def _write_report_files(out: Path, runs: Sequence[DetectorRun], images: Sequence[EvalImage],
                        dataset_desc: str, n_examples: int, extra: dict | None) -> None:
    from sar_atd.plots import plot_ap_vs_iou, plot_detections, plot_pr_curves

    results = {r.name: r.metrics for r in runs}
    plot_pr_curves(results, out / "pr_curves.png")
    plot_ap_vs_iou(results, out / "ap_vs_iou.png")
    examples = []
    for i in range(min(n_examples, len(images))):
        p = plot_detections(images[i].image, images[i].boxes,
                            {r.name: _at_operating_point(r, i) for r in runs},
                            out / f"example_{i}.png",
                            title=f"{images[i].name} (each detector at its best-F1 "
                                  "threshold, IoU 0.5)")
        examples.append(p.name)
    doc = {"dataset": dataset_desc, "n_images": len(images),
           "detectors": {r.name: {"spec": r.spec, "config": r.config,
                                  "ms_per_image": r.ms_per_image, "metrics": r.metrics}
                         for r in runs},
           **(extra or {})}
    (out / "metrics.json").write_text(json.dumps(to_jsonable(doc), indent=1))
    lines = ["# SAR-ATD evaluation report", "", f"Dataset: {dataset_desc}", "",
             f"Images: {len(images)}, ground-truth targets: "
             f"{sum(len(it.boxes) for it in images)}", "",
             "AP: area under the precision x recall curve (all-point interpolation unless "
             "stated), greedy matching by decreasing confidence, match when IoU >= threshold.",
             "", "| detector | AP25 | AP50 | AP70 | AP50:95 | predictions/image | ms/image |",
             "|---|---|---|---|---|---|---|"]
    for r in runs:
        m = r.metrics
        lines.append(f"| {r.name} | {_fmt(m['AP25'])} | {_fmt(m['AP50'])} | "
                     f"{_fmt(m['AP70'])} | {_fmt(m['ap_50_95'])} | "
                     f"{m['n_pred'] / max(1, m['n_images']):.1f} | {r.ms_per_image:.1f} |")
    lines += ["", "## Best-F1 operating points", "",
              "| detector | IoU | score threshold | precision | recall | F1 |",
              "|---|---|---|---|---|---|"]
    for r in runs:
        for key, op in r.metrics.get("operating_points", {}).items():
            lines.append(f"| {r.name} | {key} | {op['score_threshold']:.3g} | "
                         f"{op['precision']:.3f} | {op['recall']:.3f} | {op['f1']:.3f} |")
    lines += ["", "## Precision x recall (IoU 0.25 and 0.5)", "", "![PR](pr_curves.png)", "",
              "## AP vs IoU threshold", "", "![AP vs IoU](ap_vs_iou.png)", "",
              "## Examples (white dashed: ground truth)", ""]
    lines += [f"![{e}]({e})" for e in examples]
    lines += ["", "All numbers: `metrics.json`.", ""]
    (out / "report.md").write_text("\n".join(lines))
