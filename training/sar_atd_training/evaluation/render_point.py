"""A model's recorded rendering of non-8-bit scenes, chosen on its synthetic validation set.

The runtime renders complex, float and uint16 scenes with the power law recorded in the
model file (``ModelInfo.render``: amplitude exponent ``gamma``, the scene's median
amplitude shown at 8-bit level ``ref_level``); uint8 scenes pass through. This command
chooses that pair without real data:

1. the recipe's synthetic validation stream (the images ``sar-atd eval operating-point``
   uses) is regenerated with each image's amplitude before the 8-bit rendering;
2. each amplitude is rendered by the tiler (:func:`sar_atd.tiling.Tiler.prepare`, content
   anchor at the recipe's reference quantile) for every candidate ``(gamma, ref_level)`` of
   a grid inside the recipe's training randomisation (bin centres: linear in gamma,
   geometric in level; black point 0 as in the runtime);
3. the detector runs on each rendering; a point's score is ``(AP50 + AP70) / 2``, smoothed
   by the mean over the point and its grid neighbours (a broad optimum, not a lucky
   point; a point on the grid's edge has fewer neighbours, so a good edge point needs only
   good neighbours on one side); the best smoothed score wins, ties going to the point
   nearest the grid centre.

::

    sar-atd eval render-point --model M.pt --bank BANK --n 100 --out M_rendered.pt
    sar-atd eval render-point --model M.pt --bank BANK --n 100 --write   # in place

``--match-reference REF.json`` also writes the grey-level quantiles of the validation images
rendered with the chosen record: a reference for the tiler's opt-in ``uint8_match``
(histogram matching of uint8 scenes to the look the model scored best on), made without
real data.

Without ``--out``/``--write`` nothing is written. The weights, operating threshold and the
rest of the model's record are unchanged; the grid's scores go to
``operating_point["render_point"]``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["stream_amplitudes", "candidate_grid", "score_render_points",
           "choose_render_point", "render_record", "register_render_point"]


def stream_amplitudes(dataset: Any, n: int) -> list[Any]:
    """The first ``n`` samples of an overlay dataset's single-process stream, each with its
    complex image before the LUT (``Sample.complex_image``, complex64 (S, S)).

    Same images, boxes and order as iterating ``dataset`` in the main process (as
    :func:`sar_atd_training.trainer.data.take` does).

    Args:
        dataset: :class:`sar_atd_training.overlay.OverlayDataset`.
        n: number of samples (>= 0).
    """
    import torch

    from sar_atd_training.overlay.dataset import worker_seed

    pipe = dataset._pipeline  # the dataset's own pipeline: same state as its iterator
    if pipe is None:
        from sar_atd_training.overlay.pipeline import OverlayPipeline

        pipe = OverlayPipeline(dataset.config, dataset.bank, dataset.backgrounds,
                               dataset.device, **dataset._kw)
    g = torch.Generator().manual_seed(worker_seed(dataset.seed, dataset.epoch, 0))
    out: list[Any] = []
    while len(out) < n:  # whole batches, as the endless iterator draws them
        out += pipe.generate(dataset.batch_size, g, keep_complex=True)
    return out[:n]


def _bin_centres(lo: float, hi: float, k: int, geometric: bool) -> list[float]:
    """Centres of ``k`` equal bins of [lo, hi] (in log space when ``geometric``)."""
    if hi <= lo or k == 1:
        return [float(np.sqrt(lo * hi) if geometric else (lo + hi) / 2)]
    t = (np.arange(k) + 0.5) / k
    v = np.exp(np.log(lo) + t * np.log(hi / lo)) if geometric else lo + t * (hi - lo)
    return [round(float(x), 3) for x in v]


def candidate_grid(overlay: dict[str, Any], n_gamma: int = 3, n_level: int = 4
                   ) -> tuple[list[float], list[float]]:
    """Candidate gammas and median levels inside a recipe's rendering randomisation.

    Args:
        overlay: the recipe's ``data.overlay`` mapping (``render_gamma_range``,
            ``render_ref_level_range``).
        n_gamma, n_level: grid size (>= 1 each).

    Returns:
        (gammas, levels): bin centres, linear in gamma, geometric in level.

    Raises:
        ValueError: the recipe does not anchor its rendering on an image quantile
            (``render_ref: quantile``), so there is no level to choose.
    """
    if n_gamma < 1 or n_level < 1:
        raise ValueError(f"grid size must be >= 1, got {n_gamma} x {n_level}")
    if overlay.get("render_ref") != "quantile" or not overlay.get("render_ref_level_range"):
        raise ValueError("the recipe renders with a fixed white point (no render_ref: "
                         "quantile and render_ref_level_range): no median level to choose")
    g_lo, g_hi = (float(v) for v in overlay.get("render_gamma_range", (0.5, 0.5)))
    l_lo, l_hi = (float(v) for v in overlay["render_ref_level_range"])
    return (_bin_centres(g_lo, g_hi, n_gamma, False), _bin_centres(l_lo, l_hi, n_level, True))


def render_record(gamma: float, level: float, quantile: float = 0.5) -> dict[str, float]:
    """``ModelInfo.render`` for the content anchor: quantile ``quantile`` of the scene's
    amplitude at 8-bit level ``level``, power law ``gamma``."""
    return {"gamma": float(gamma), "amplitude_ref": 0.0, "ref_quantile": float(quantile),
            "ref_level": float(level)}


def score_render_points(detector: Any, amplitudes: Sequence[np.ndarray],
                        boxes: Sequence[np.ndarray], gammas: Sequence[float],
                        levels: Sequence[float], quantile: float = 0.5,
                        progress: bool = False) -> list[dict[str, float]]:
    """AP25/AP50/AP70 of ``detector`` on the amplitudes rendered at each grid point.

    Args:
        detector: anything with ``detect(uint8 (H, W)) -> Detections``.
        amplitudes: float32 or complex (H, W) images (the runtime's input).
        boxes: float32 (N, 4) xyxy ground truth per image.
        gammas, levels: the grid.
        quantile: the anchor quantile.

    Returns:
        One dict per point (gamma-major order): gamma, level, AP25, AP50, AP70, score
        ``(AP50 + AP70) / 2``, median (median 8-bit level of the renderings).
    """
    from sar_atd.metrics import evaluate
    from sar_atd_training.quality.renderings import render_like_runtime

    rows = []
    for g in gammas:
        for lv in levels:
            rec = render_record(g, lv, quantile)
            imgs = [render_like_runtime(a, rec) for a in amplitudes]
            preds = [detector.detect(im) for im in imgs]
            m = evaluate(preds, list(boxes), iou_thresholds=(0.25, 0.5, 0.7))
            rows.append({"gamma": float(g), "level": float(lv), "AP25": m["AP25"],
                         "AP50": m["AP50"], "AP70": m["AP70"],
                         "score": (m["AP50"] + m["AP70"]) / 2,
                         "median": float(np.median(np.concatenate([i.ravel() for i in imgs])))})
            if progress:
                r = rows[-1]
                print(f"  gamma {g:5.3f} level {lv:6.1f}: AP25 {r['AP25']:.3f} AP50 "
                      f"{r['AP50']:.3f} AP70 {r['AP70']:.3f} (8-bit median {r['median']:.0f})",
                      flush=True)
    return rows


def choose_render_point(rows: Sequence[dict[str, float]], n_gamma: int, n_level: int
                        ) -> dict[str, float]:
    """The grid point with the best neighbourhood-mean score (module doc, step 3).

    Args:
        rows: :func:`score_render_points` output, gamma-major, ``n_gamma * n_level`` rows.

    Returns:
        The chosen row, with ``smoothed`` (its neighbourhood-mean score) added.
    """
    if len(rows) != n_gamma * n_level or not rows:
        raise ValueError(f"expected {n_gamma} x {n_level} rows, got {len(rows)}")
    s = np.array([r["score"] for r in rows], np.float64).reshape(n_gamma, n_level)
    sm = np.empty_like(s)
    for i in range(n_gamma):
        for j in range(n_level):
            sm[i, j] = s[max(0, i - 1):i + 2, max(0, j - 1):j + 2].mean()
    ci, cj = (n_gamma - 1) / 2, (n_level - 1) / 2
    order = sorted((-round(sm[i, j], 9), (i - ci) ** 2 + (j - cj) ** 2, i, j)
                    for i in range(n_gamma) for j in range(n_level))
    i, j = order[0][2], order[0][3]
    return dict(rows[i * n_level + j]) | {"smoothed": float(sm[i, j])}


def register_render_point(sub: Any) -> None:
    """Add ``sar-atd eval render-point``."""
    p = sub.add_parser("render-point",
                       help="choose the rendering a model records for non-8-bit scenes on its "
                            "synthetic validation set (no real data)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help=".pt weights/checkpoint")
    p.add_argument("--bank", type=Path, required=True, help="signature bank folder")
    p.add_argument("--n", type=int, default=100, help="validation images (default 100)")
    p.add_argument("--seed", type=int, default=None, help="stream seed (default: val_seed)")
    p.add_argument("--n-gamma", type=int, default=3, help="gamma grid size (default 3)")
    p.add_argument("--n-level", type=int, default=4, help="level grid size (default 4)")
    p.add_argument("--gammas", type=float, nargs="+", default=None,
                   help="explicit gamma grid (replaces --n-gamma's bin centres)")
    p.add_argument("--levels", type=float, nargs="+", default=None,
                   help="explicit median-level grid (replaces --n-level's bin centres)")
    p.add_argument("--match-reference", type=Path, default=None,
                   help="also write the grey-level quantiles of the validation images "
                        "rendered with the chosen record (a TilerConfig.uint8_match file; "
                        "refused if it exists)")
    p.add_argument("--out", type=Path, default=None,
                   help="write a copy of the model with the chosen record here (refused if "
                        "it exists)")
    p.add_argument("--write", action="store_true", help="record it in the model file itself")
    p.set_defaults(func=run_render_point)


def _err(msg: str, code: int) -> int:
    print(f"sar-atd eval render-point: error: {msg}", file=sys.stderr)
    return code


def run_render_point(args: argparse.Namespace) -> int:
    from sar_atd.models.checkpoint import read_checkpoint
    from sar_atd.models.metadata import METADATA_KEY, ModelInfo
    from sar_atd.runtime import resolve_detector
    from sar_atd_training.evaluation.operating_point import recipe_factory, record_model_info

    if args.n < 1 or args.n_gamma < 1 or args.n_level < 1:
        return _err("--n, --n-gamma and --n-level must be >= 1", 2)
    if args.out is not None and args.write:
        return _err("give --out (a copy) or --write (in place), not both", 2)
    for opt, path in (("--out", args.out), ("--match-reference", args.match_reference)):
        if path is not None and path.exists():
            return _err(f"{opt} {path} exists; choose a new path", 2)
    for opt, vals, lo, hi in (("--gammas", args.gammas, 0.0, float("inf")),
                              ("--levels", args.levels, 0.0, 255.0)):
        if vals is not None and not all(lo < v <= hi and np.isfinite(v) for v in vals):
            return _err(f"{opt} values must be in ({lo:g}, {hi:g}], got {vals}", 2)
    ckpt = read_checkpoint(args.model)
    recipe = ckpt.get("config")
    if not isinstance(recipe, dict) or recipe.get("data", {}).get("kind", "overlay") != "overlay":
        return _err(f"{args.model} stores no overlay training recipe: no synthetic amplitudes "
                    "to render", 1)
    overlay = dict(recipe["data"].get("overlay") or {})
    try:
        gammas, levels = candidate_grid(overlay, args.n_gamma, args.n_level)
    except ValueError as err:
        return _err(f"{args.model}: {err}", 1)
    gammas, levels = args.gammas or gammas, args.levels or levels
    q_lo, q_hi = overlay.get("render_ref_quantile_range", (0.5, 0.5))
    quantile = (float(q_lo) + float(q_hi)) / 2
    t0 = time.perf_counter()
    factory, cfg = recipe_factory(recipe, args.bank)
    seed = cfg.val_seed if args.seed is None else args.seed
    samples = stream_amplitudes(factory(seed), args.n)
    amps = [s.complex_image.abs().numpy().astype(np.float32) for s in samples]
    boxes = [s.boxes.numpy().astype(np.float32) for s in samples]
    det, _ = resolve_detector(str(args.model), device="cpu", score_threshold=0.01)
    prior = ckpt.get(METADATA_KEY) or {}
    old = ModelInfo.from_dict(prior).render
    print(f"{args.model}: {len(amps)} synthetic validation amplitudes ({sum(map(len, boxes))} "
          f"targets, seed {seed}); grid gamma {gammas} x median level {levels}; current "
          f"record {old}", flush=True)
    rows = score_render_points(det, amps, boxes, gammas, levels, quantile, progress=True)
    best = choose_render_point(rows, len(gammas), len(levels))
    rec = render_record(best["gamma"], best["level"], quantile)
    print(f"chosen: gamma {best['gamma']:.3f}, median at level {best['level']:.1f} "
          f"(AP50 {best['AP50']:.3f}, AP70 {best['AP70']:.3f}; neighbourhood score "
          f"{best['smoothed']:.3f}) -> render {rec}")
    if args.match_reference is not None:
        from sar_atd.sar.lut import write_match_reference
        from sar_atd_training.quality.renderings import reference_quantiles, render_like_runtime

        q = reference_quantiles([render_like_runtime(a, rec) for a in amps])
        write_match_reference(args.match_reference, q, f"{len(amps)} synthetic validation "
                              f"images of {args.model.name} (seed {seed}) rendered with {rec}")
        print(f"match reference written to {args.match_reference}")
    if args.out is None and not args.write:
        print("model not written (give --out PATH for a copy or --write for the file itself)")
        return 0
    op = dict(prior.get("operating_point") or {})
    op["render_point"] = {"grid": rows, "chosen": best, "n_images": len(amps), "seed": seed,
                          "bank": str(args.bank), "rule": "max over the grid of the 3x3 "
                          "neighbourhood mean of (AP50 + AP70) / 2",
                          "previous_render": dict(old),
                          "seconds": round(time.perf_counter() - t0, 1)}
    info = {**prior, "render": rec, "operating_point": op,
            "model_name": prior.get("model_name") or ckpt.get("model_name", "")}
    path = record_model_info(args.model, info, args.out)
    print(f"recorded in {path}")
    return 0
