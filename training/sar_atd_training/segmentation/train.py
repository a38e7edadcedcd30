"""``sar-atd train segmenter``: train the U-Net on synthetic vignettes only.

Reads a recipe (``training/configs/segmenter.yaml`` -> :class:`SegmenterConfig`), draws a
pool of synthetic vignettes with the overlay pipeline, trains with Dice + cross-entropy
(deep supervision on the two coarser decoder outputs), and writes into ``--out``:
``segmenter.pt`` (weights, architecture, recipe, record), ``record.json`` (loss curve,
synthetic validation scores, wall time, hardware) and ``vignettes.png`` (a sheet of training
vignettes with their labels). Real chips are never seen here; measure them with
``sar-atd segment eval``.
"""

from __future__ import annotations

import argparse
import logging
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sar_atd.config import ConfigError, from_dict, load_yaml, to_dict
from sar_atd_training.cliutil import apply_recipe_overrides
from sar_atd_training.segmentation.data import VignetteConfig, augment, generate_vignettes
from sar_atd_training.segmentation.metrics import confusion, summarise
from sar_atd_training.segmentation.model import CLASS_NAMES, UNet, UNetConfig, save_segmenter
from sar_atd_training.trainer.record import loss_summary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SegmenterConfig:
    """A segmenter training recipe.

    Attributes:
        unet: architecture.
        data: synthetic vignettes.
        steps: optimiser steps.
        batch_size: vignettes per step.
        lr: AdamW learning rate (polynomial decay to 0, exponent 0.9, as nnU-Net).
        weight_decay: AdamW weight decay.
        dice_weight, ce_weight: weights of the soft Dice (target and shadow classes,
            computed over the batch) and of the cross-entropy.
        ds_weights: loss weights of the full, half and quarter resolution outputs.
        val_vignettes: held-out synthetic vignettes (their own seed) scored at the end.
        seed: seed of the pool, the batches and the initialisation.
        threads: torch CPU threads.
        device: ``cpu`` or ``cuda``.
        log_interval: steps between log lines.
        checkpoint_every: steps between snapshots ``checkpoint.pt`` in the output folder
            (a loadable segmenter with its step in the metadata; 0: none), so that a long
            run can be scored before it ends.
    """

    unet: UNetConfig = field(default_factory=UNetConfig)
    data: VignetteConfig = field(default_factory=VignetteConfig)
    steps: int = 1000
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    dice_weight: float = 1.0
    ce_weight: float = 1.0
    ds_weights: tuple[float, ...] = (1.0, 0.5, 0.25)
    val_vignettes: int = 128
    seed: int = 0
    threads: int = 2
    device: str = "cpu"
    log_interval: int = 20
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError("steps and batch_size must be >= 1")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")


def load_segmenter_config(path: str | Path) -> SegmenterConfig:
    """Recipe from YAML (unknown keys are errors)."""
    return from_dict(SegmenterConfig, load_yaml(path), where=str(path))


def soft_dice_loss(logits: torch.Tensor, labels: torch.Tensor,
                   classes: tuple[int, ...] = (1, 2), eps: float = 1e-5) -> torch.Tensor:
    """1 - mean soft Dice over ``classes``, pooled over the batch (nnU-Net's batch Dice).

    Args:
        logits: float (B, C, H, W).
        labels: int64 (B, H, W).
    """
    p = torch.softmax(logits, 1)
    one = F.one_hot(labels, logits.shape[1]).permute(0, 3, 1, 2).to(p.dtype)
    idx = list(classes)
    inter = (p[:, idx] * one[:, idx]).sum((0, 2, 3))
    denom = p[:, idx].sum((0, 2, 3)) + one[:, idx].sum((0, 2, 3))
    return 1.0 - ((2 * inter + eps) / (denom + eps)).mean()


def segmentation_loss(outputs: torch.Tensor | list[torch.Tensor], labels: torch.Tensor,
                      cfg: SegmenterConfig) -> torch.Tensor:
    """Dice + cross-entropy, summed over deep-supervision outputs with ``ds_weights``."""
    outs = outputs if isinstance(outputs, list) else [outputs]
    total = labels.new_zeros((), dtype=torch.float32)
    wsum = 0.0
    for k, o in enumerate(outs):
        w = cfg.ds_weights[k] if k < len(cfg.ds_weights) else 0.0
        if w == 0:
            continue
        lab = labels if o.shape[-2:] == labels.shape[-2:] else F.interpolate(
            labels[:, None].float(), size=o.shape[-2:], mode="nearest")[:, 0].long()
        total = total + w * (cfg.ce_weight * F.cross_entropy(o, lab)
                             + cfg.dice_weight * soft_dice_loss(o, lab))
        wsum += w
    return total / max(wsum, 1e-12)


def write_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a uint8 (H, W) or (H, W, 3) image as PNG atomically."""
    import cv2

    from sar_atd.atomic import atomic_write_bytes

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        raise OSError(f"cannot encode PNG for {path}")
    return atomic_write_bytes(path, buf.tobytes())


def _sheet(images: np.ndarray, labels: np.ndarray, path: Path, n: int = 8) -> None:
    """Two rows: vignettes and their labels (grey = target, white = shadow)."""
    k = min(n, len(images))
    top = np.concatenate(list(images[:k]), 1)
    bot = np.concatenate([(lab * 120).astype(np.uint8) for lab in labels[:k]], 1)
    write_png(path, np.concatenate([top, bot], 0))


def train_segmenter(cfg: SegmenterConfig, out: str | Path, progress: bool = True) -> dict:
    """Train per ``cfg``; write ``segmenter.pt``, ``record.json``, ``vignettes.png``.

    Returns:
        The training record (also saved).
    """
    from tqdm import tqdm

    from sar_atd.atomic import atomic_write_json
    from sar_atd_training.segmentation.data import build_pipeline

    out = Path(out)
    if (out / "segmenter.pt").exists():
        raise FileExistsError(f"{out / 'segmenter.pt'} exists: choose a new --out folder")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    t_start = time.perf_counter()
    pipe = build_pipeline(cfg.data, device=cfg.device)
    images, labels = generate_vignettes(cfg.data, cfg.data.vignettes, cfg.seed, pipe, progress)
    val_im, val_lab = generate_vignettes(cfg.data, cfg.val_vignettes, cfg.seed + 10_007, pipe)
    t_data = time.perf_counter() - t_start
    _sheet(images, labels, out / "vignettes.png")
    frac = np.bincount(labels.ravel(), minlength=3) / labels.size
    log.info("%d vignettes in %.0f s; label shares %s", len(images), t_data,
             dict(zip(CLASS_NAMES, np.round(frac, 4).tolist())))

    dev = torch.device(cfg.device)
    model = UNet(cfg.unet).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (1 - s / cfg.steps) ** 0.9)
    rng = np.random.default_rng(cfg.seed)
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="train segmenter", disable=not progress)
    for step in bar:
        idx = rng.integers(0, len(images), cfg.batch_size)
        xb, yb = augment(images[idx], labels[idx], cfg.data, rng)
        x = torch.from_numpy(xb.astype(np.float32))[:, None].to(dev)
        y = torch.from_numpy(yb.astype(np.int64)).to(dev)
        loss = segmentation_loss(model(x), y, cfg)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"segmenter loss is not finite at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % cfg.log_interval == 0 or step == cfg.steps - 1:
            avg = float(np.mean(losses[-cfg.log_interval:]))
            bar.set_postfix(loss=f"{avg:.3f}")
            log.info("step %d/%d loss %.4f", step, cfg.steps, avg)
        if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 \
                and step + 1 < cfg.steps:
            save_segmenter(out / "checkpoint.pt", model, {"step": step + 1,
                                                          "recipe": to_dict(cfg)},
                           window=cfg.data.overlay.image_size)
    t_train = time.perf_counter() - t0

    model.eval()
    from sar_atd_training.segmentation.model import Segmenter

    seg = Segmenter(model, device=dev, window=cfg.data.overlay.image_size)
    preds = seg.predict(list(val_im))
    val = summarise([confusion(p, t) for p, t in zip(preds, val_lab)], CLASS_NAMES)
    record = {"recipe": to_dict(cfg), "steps": cfg.steps, "seed": cfg.seed,
              "data_seconds": round(t_data, 1), "train_seconds": round(t_train, 1),
              "seconds_per_step": round(t_train / cfg.steps, 4),
              "hardware": {"platform": platform.platform(), "device": str(dev),
                           "threads": torch.get_num_threads(),
                           "cuda": torch.cuda.get_device_name(0)
                           if dev.type == "cuda" else None},
              "torch": str(torch.__version__), "label_shares": frac.tolist(),
              **loss_summary(losses),
              "synthetic_validation": val}
    model.cpu()
    save_segmenter(out / "segmenter.pt", model, {"record": {k: v for k, v in record.items()
                                                            if k != "loss_curve"}},
                   window=cfg.data.overlay.image_size)
    atomic_write_json(out / "record.json", record)
    return record


def main(args: argparse.Namespace) -> int:
    cfg = load_segmenter_config(args.config)
    cfg = apply_recipe_overrides(cfg, args)
    rec = train_segmenter(cfg, args.out, progress=not args.no_progress)
    v = rec["synthetic_validation"]["pooled"]
    print(f"segmenter: {args.out / 'segmenter.pt'} ({rec['steps']} steps, "
          f"{rec['train_seconds']:.0f} s); loss {rec['loss_first_50']:.3f} -> "
          f"{rec['loss_last_50']:.3f}; synthetic validation IoU target "
          f"{v['target']['iou']:.3f} shadow {v['shadow']['iou']:.3f}")
    return 0
