"""``sar-atd segment``: score the segmenter on real chips, or predict masks.

Examples::

    sar-atd segment eval --chips ../shared/data/mstar_soc_17deg \
        --model runs/seg/segmenter.pt --out seg_eval
    sar-atd segment predict --chips DIR --model M --out masks/

``eval`` compares the predicted labels with the chips' SARBake masks (0 clutter, 1 target,
2 shadow) and writes ``metrics.json`` (IoU and Dice of target and shadow: pooled over all
pixels, mean over chips, and per vehicle class), ``report.md`` and ``examples.png`` (rows:
chip, SARBake, prediction). ``predict`` writes ``<CLASS>/<NAME>.pred.png`` label maps.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from sar_atd.errors import SarAtdError

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("segment", help="target/shadow segmentation of real chips",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="segment_command", metavar="SUBCOMMAND", required=True)
    e = sub.add_parser("eval", help="IoU/Dice of target and shadow against SARBake masks")
    _common(e)
    e.add_argument("--examples", type=int, default=8, help="chips in the example sheet")
    e.set_defaults(func=run_eval)
    q = sub.add_parser("predict", help="write predicted label maps (PNG, values 0/1/2)")
    _common(q)
    q.set_defaults(func=run_predict)


class OutputExistsError(SarAtdError, FileExistsError):
    """The output folder exists already (a run is never overwritten)."""


def _fresh(out: Path) -> Path:
    """``out`` if it is absent or empty; else :class:`OutputExistsError`."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputExistsError(f"output folder {out} already exists: choose a new --out")
    return out


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chips", type=Path, required=True,
                   help="folder of <CLASS>/<NAME>.jpeg chips (with <NAME>.mask.png for eval)")
    p.add_argument("--model", type=Path, required=True, help="segmenter.pt")
    p.add_argument("--out", type=Path, required=True, help="output folder (must not exist)")
    p.add_argument("--n", type=int, default=0, help="score a random subset of N chips (0: all)")
    p.add_argument("--seed", type=int, default=0, help="subset seed")
    p.add_argument("--device", default="cpu")
    p.add_argument("--window", type=int, default=-1,
                   help="sliding-window side in pixels for chips larger than it (default: "
                        "the model's training vignette size; 0: predict chips whole)")
    p.add_argument("--no-progress", action="store_true")


def _select(chips: Path, n: int, seed: int, need_masks: bool) -> list:
    from sar_atd.errors import ChipReadError
    from sar_atd.sar.chips import list_chips

    if not chips.is_dir():
        raise ChipReadError(f"chips folder not found: {chips}")
    recs = list_chips(chips)
    if need_masks:
        recs = [r for r in recs if r.mask_path is not None]
    if not recs:
        what = "chips with SARBake masks (<NAME>.mask.png)" if need_masks else "chips"
        raise ChipReadError(f"no {what} under {chips}")
    if n < 0:
        raise ValueError(f"--n must be >= 0, got {n}")
    if n and n < len(recs):
        idx = np.sort(np.random.default_rng(seed).choice(len(recs), n, replace=False))
        recs = [recs[i] for i in idx]
    return recs


def _load(args: argparse.Namespace):  # noqa: ANN202 - lazy import of the model module
    from sar_atd_training.segmentation.model import Segmenter

    if args.window < -1:
        raise ValueError(f"--window must be >= 0 (or -1 for the model's), got {args.window}")
    return Segmenter.load(args.model, device=args.device, window=args.window)


def colour_labels(lab: np.ndarray) -> np.ndarray:
    """BGR uint8 (H, W, 3) of a label map: target red, shadow green, clutter blue (the
    paper's Figure 5 colours)."""
    out = np.zeros(lab.shape + (3,), np.uint8)
    out[lab == 0] = (96, 0, 0)
    out[lab == 1] = (0, 0, 255)
    out[lab == 2] = (0, 200, 0)
    return out


def evaluate_segmenter(seg, recs: list, progress: bool = True  # noqa: ANN001
                       ) -> tuple[dict, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Score ``seg`` on chips with SARBake masks.

    Returns:
        (metrics dict, list of (chip, truth, prediction) for every chip in order).
    """
    from collections import defaultdict

    from tqdm import tqdm

    from sar_atd.sar.chips import read_chip, read_sarbake_mask
    from sar_atd_training.segmentation.metrics import confusion, summarise
    from sar_atd_training.segmentation.model import CLASS_NAMES

    cms, by_class, triples = [], defaultdict(list), []
    for r in tqdm(recs, desc="segment", disable=not progress, leave=False):
        im = read_chip(r.image_path)
        truth = read_sarbake_mask(r.mask_path, shape=im.shape)
        pred = seg.predict([im])[0]
        cm = confusion(pred, truth)
        cms.append(cm)
        by_class[r.class_name].append(cm)
        triples.append((im, truth, pred))
    metrics = summarise(cms, CLASS_NAMES)
    metrics["per_vehicle_class"] = {c: summarise(v, CLASS_NAMES)["pooled"]
                                    for c, v in sorted(by_class.items())}
    return metrics, triples


def _sheet(triples: list, k: int) -> np.ndarray:
    """Rows chip / SARBake / prediction for the first ``k`` chips (cells 128 px, BGR)."""
    import cv2

    cells = []
    for im, truth, pred in triples[:k]:
        def fit(a: np.ndarray, interp: int) -> np.ndarray:
            return cv2.resize(a, (128, 128), interpolation=interp)
        g = fit(im, cv2.INTER_AREA)
        cells.append(np.concatenate([cv2.cvtColor(g, cv2.COLOR_GRAY2BGR),
                                     fit(colour_labels(truth), cv2.INTER_NEAREST),
                                     fit(colour_labels(pred), cv2.INTER_NEAREST)], 0))
    return np.concatenate(cells, 1) if cells else np.zeros((384, 128, 3), np.uint8)


def run_eval(args: argparse.Namespace) -> int:
    import time

    from sar_atd.atomic import atomic_dir, atomic_write_json, atomic_write_text
    from sar_atd_training.evaluation.runner import to_jsonable
    from sar_atd_training.segmentation.train import write_png

    seg = _load(args)
    recs = _select(args.chips, args.n, args.seed, need_masks=True)
    with atomic_dir(_fresh(args.out)) as tmp:
        t0 = time.perf_counter()
        metrics, triples = evaluate_segmenter(seg, recs, progress=not args.no_progress)
        ms = (time.perf_counter() - t0) * 1e3 / len(recs)
        metrics.update({"chips": str(args.chips), "model": str(args.model),
                        "window": seg.window,
                        "n_requested": args.n, "seed": args.seed, "ms_per_chip": ms})
        atomic_write_json(tmp / "metrics.json", to_jsonable(metrics))
        write_png(tmp / "examples.png", _sheet(triples, args.examples))
        atomic_write_text(tmp / "report.md", _report(metrics))
    p, m = metrics["pooled"], metrics["mean_over_chips"]
    print(f"{len(recs)} chips: target IoU {p['target']['iou']:.3f} (mean over chips "
          f"{m['target']['iou']:.3f}), shadow IoU {p['shadow']['iou']:.3f} "
          f"({m['shadow']['iou']:.3f}); Dice target {p['target']['dice']:.3f} shadow "
          f"{p['shadow']['dice']:.3f}; {ms:.1f} ms/chip -> {args.out}")
    return 0


def _report(m: dict) -> str:
    lines = ["# Segmenter on real chips (SARBake masks as truth)", "",
             f"Chips: {m['n_chips']} from `{m['chips']}`; model `{m['model']}`; "
             f"sliding window {m.get('window') or 'none (chips whole)'}.", "",
             "| aggregation | target IoU | target Dice | shadow IoU | shadow Dice |",
             "|---|---|---|---|---|"]
    for agg in ("pooled", "mean_over_chips"):
        a = m[agg]
        lines.append(f"| {agg} | {a['target']['iou']:.3f} | {a['target']['dice']:.3f} | "
                     f"{a['shadow']['iou']:.3f} | {a['shadow']['dice']:.3f} |")
    lines += ["", "| vehicle class | target IoU | shadow IoU |", "|---|---|---|"]
    for c, a in m["per_vehicle_class"].items():
        lines.append(f"| {c} | {a['target']['iou']:.3f} | {a['shadow']['iou']:.3f} |")
    lines += ["", "![examples](examples.png) (rows: chip, SARBake, prediction; red target, "
              "green shadow, blue clutter)", ""]
    return "\n".join(lines)


def run_predict(args: argparse.Namespace) -> int:
    from sar_atd.atomic import atomic_dir
    from sar_atd.sar.chips import read_chip
    from sar_atd_training.segmentation.train import write_png

    seg = _load(args)
    recs = _select(args.chips, args.n, args.seed, need_masks=False)
    with atomic_dir(_fresh(args.out)) as tmp:
        for r in recs:
            lab = seg.predict([read_chip(r.image_path)])[0]
            write_png(tmp / r.class_name / (r.image_path.stem + ".pred.png"), lab)
    print(f"wrote {len(recs)} label maps (0 clutter, 1 target, 2 shadow) -> {args.out}")
    return 0
