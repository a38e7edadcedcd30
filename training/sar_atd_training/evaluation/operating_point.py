"""A model's operating score threshold: best F1 at IoU 0.5 on its synthetic validation set.

The validation images are made exactly as the trainer makes its synthetic validation split
(``sar_atd_training.trainer.train``): the recipe's overlay pipeline (``data`` section stored
in the model file), the first ``n`` images of the stream seeded with the recipe's
``val_seed``. The signature bank is given explicitly (the one the model was trained with,
or a regenerated one). The result is recorded in the model file as
:class:`sar_atd.models.metadata.ModelInfo` (weights untouched)::

    sar-atd eval operating-point --model models/default.pt --bank BANK --n 200 --write

Only synthetic data is used: the threshold never sees a real target.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["recipe_factory", "synthetic_validation_set", "measure_operating_point",
           "record_model_info",
           "register_operating_point"]


def recipe_factory(train_config: dict[str, Any], bank: str | Path | None,
                   image_size: int | None = None) -> tuple[Any, Any]:
    """The training-data stream factory of a stored recipe, with ``bank`` replacing the
    recipe's signature bank (overlay recipes). Returns ``(factory, TrainConfig)``."""
    from sar_atd.config import from_dict
    from sar_atd_training.trainer.config import TrainConfig
    from sar_atd_training.trainer.data import build_dataset_factory

    cfg = from_dict(TrainConfig, dict(train_config), where="model recipe")
    data = dict(cfg.data)
    if data.get("kind", "overlay") == "overlay" and bank is not None:
        data["bank"] = str(bank)
    return build_dataset_factory(data, image_size or cfg.input_size), cfg


def synthetic_validation_set(train_config: dict[str, Any], bank: str | Path, n: int,
                             seed: int | None = None) -> tuple[list[np.ndarray],
                                                               list[np.ndarray]]:
    """The first ``n`` images (uint8 (S, S)) and boxes of the recipe's validation stream.

    Args:
        train_config: the recipe (``TrainConfig`` fields) stored in the model file.
        bank: signature bank folder replacing the recipe's.
        n: number of images.
        seed: stream seed (default: the recipe's ``val_seed``).
    """
    from sar_atd_training.trainer.data import take

    factory, cfg = recipe_factory(train_config, bank)
    samples = take(factory, cfg.val_seed if seed is None else seed, n)
    images = [s[0].numpy().reshape(s[0].shape[-2:]).astype(np.uint8) for s in samples]
    boxes = [s[1]["boxes"].numpy().astype(np.float32) for s in samples]
    return images, boxes


def measure_operating_point(detector: Any, images: list[np.ndarray],
                            boxes: list[np.ndarray]) -> dict[str, Any]:
    """Best-F1 point at IoU 0.5 of ``detector`` on (images, boxes), with AP figures."""
    from sar_atd.metrics import evaluate

    preds = [detector.detect(im) for im in images]
    m = evaluate(preds, boxes, iou_thresholds=(0.25, 0.5))
    op = dict(m["operating_points"]["0.50"])
    return {"score_threshold": op["score_threshold"], "precision": op["precision"],
            "recall": op["recall"], "f1": op["f1"], "AP25": m["AP25"], "AP50": m["AP50"],
            "n_images": m["n_images"], "n_gt": m["n_gt"]}


def record_model_info(path: str | Path, info: dict[str, Any], out: str | Path | None = None
                      ) -> Path:
    """Write ``info`` (ModelInfo fields) into a ``.pt`` weights file; weights unchanged.

    Written atomically to ``out`` (default: ``path`` itself).
    """
    import torch

    from sar_atd.models.checkpoint import atomic_save, read_checkpoint
    from sar_atd.models.metadata import METADATA_KEY, ModelInfo

    ckpt = read_checkpoint(path)
    ckpt[METADATA_KEY] = ModelInfo.from_dict(info).to_dict() | {"model_hash": ""}
    for v in ckpt["model"].values():
        if not isinstance(v, torch.Tensor):
            raise TypeError("unexpected non-tensor in the state dict")
    return atomic_save(ckpt, out or path)


def register_operating_point(sub: Any) -> None:
    """Add ``sar-atd eval operating-point``."""
    p = sub.add_parser("operating-point",
                       help="measure a model's best-F1 threshold (IoU 0.5) on its synthetic "
                            "validation set and record it in the model file",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help=".pt weights/checkpoint")
    p.add_argument("--bank", type=Path, required=True, help="signature bank folder")
    p.add_argument("--n", type=int, default=200, help="validation images (default 200)")
    p.add_argument("--seed", type=int, default=None, help="stream seed (default: val_seed)")
    p.add_argument("--write", action="store_true",
                   help="record the result (and the MSTAR geometry) in the model file")
    p.add_argument("--out", type=Path, default=None,
                   help="write the annotated model here instead of in place")
    p.set_defaults(func=run_operating_point)


def run_operating_point(args: argparse.Namespace) -> int:
    from sar_atd.models.checkpoint import read_checkpoint
    from sar_atd.models.metadata import METADATA_KEY, MSTAR_PIXEL_SPACING_M
    from sar_atd.runtime import resolve_detector

    if args.n < 1:
        print(f"sar-atd eval operating-point: error: --n must be >= 1, got {args.n}",
              file=sys.stderr)
        return 2
    ckpt = read_checkpoint(args.model)
    recipe = ckpt.get("config")
    if not isinstance(recipe, dict):
        print(f"sar-atd eval operating-point: error: {args.model} stores no training recipe "
              f"(config): cannot rebuild its validation set", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    images, boxes = synthetic_validation_set(recipe, args.bank, args.n, args.seed)
    det, _ = resolve_detector(str(args.model), device="cpu", score_threshold=0.01)
    op = measure_operating_point(det, images, boxes)
    data = recipe.get("data", {}).get("overlay", {})
    seed = recipe.get("val_seed") if args.seed is None else args.seed
    op.update({"set": "synthetic validation (overlay pipeline of the recipe)",
               "seed": seed, "bank": str(args.bank), "image_size": recipe.get("input_size"),
               "seconds": round(time.perf_counter() - t0, 1)})
    print(f"{args.model}: best F1 {op['f1']:.3f} at IoU 0.5 at score threshold "
          f"{op['score_threshold']:.4f} (precision {op['precision']:.3f}, recall "
          f"{op['recall']:.3f}; AP50 {op['AP50']:.3f}) on {op['n_images']} synthetic images, "
          f"{op['n_gt']} targets")
    if args.write:
        gammas = data.get("render_gamma_range", [0.5, 0.5])
        levels = data.get("render_ref_level_range")
        render: dict[str, float] = {"gamma": float(np.mean(gammas)), "amplitude_ref": 1.0}
        if data.get("render_ref") == "quantile" and levels:
            render.update(amplitude_ref=0.0, ref_quantile=float(np.mean(
                data.get("render_ref_quantile_range", [0.5, 0.5]))),
                ref_level=float(np.mean(levels)))
        prior = ckpt.get(METADATA_KEY) or {}
        info = {**prior, "pixel_spacing_m": list(MSTAR_PIXEL_SPACING_M),
                "orientation": "bottom", "render": render,
                "operating_threshold": op["score_threshold"], "operating_point": op,
                "model_name": ckpt["model_name"]}
        path = record_model_info(args.model, info, args.out)
        print(f"recorded in {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
