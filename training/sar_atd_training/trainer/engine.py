"""Training and evaluation loops (torchvision ``references/detection/engine.py`` style).

``train_one_epoch`` runs optimizer steps ``[start_step, end_step)`` (an "epoch" here is the
stretch between two checkpoints/validations of an infinite synthetic stream);
``evaluate`` predicts on a fixed image list under ``torch.inference_mode()`` and scores the
predictions with the shared metrics (:func:`sar_atd.metrics.evaluate`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from sar_atd_training.trainer.config import TrainConfig
from sar_atd_training.trainer.data import DataStream
from sar_atd_training.trainer.fgsm import fgsm_perturb, pgd_perturb
from sar_atd_training.trainer.utils import DistInfo, MetricLogger, all_reduce_mean

log = logging.getLogger("sar_atd_training.trainer")


def step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    """Per-step RNG (FGSM sample choice): a function of (seed, rank, step) only, so a
    resumed run draws exactly what the uninterrupted one drew."""
    s = int(np.random.SeedSequence([seed, rank, step, 0xF65]).generate_state(1)[0])
    return torch.Generator().manual_seed(s)


def adversarial_indices(batch: int, fraction: float, gen: torch.Generator) -> list[int]:
    """``round(fraction * batch)`` distinct sample indices chosen with ``gen``."""
    n = int(round(fraction * batch))
    return sorted(torch.randperm(batch, generator=gen)[:n].tolist()) if n else []


def adversarial_batch(raw_model: nn.Module, xs: list[torch.Tensor],
                      ts: list[dict[str, Any]], cfg: TrainConfig, gen: torch.Generator,
                      autocast: Any = None) -> int:
    """Replace ``fgsm_fraction`` of ``xs`` (in place) by adversarial versions; returns how
    many.

    The samples, their budgets (``adv_epsilons`` drawn uniformly, else ``fgsm_epsilon``) and
    the PGD random starts are all drawn from ``gen`` (a function of seed, rank and step), so
    a resumed run draws exactly what the uninterrupted one drew.
    """
    if not cfg.adversarial:
        return 0
    idx = adversarial_indices(len(xs), cfg.fgsm_fraction, gen)
    if not idx:
        return 0
    if cfg.adv_epsilons:
        pick = torch.randint(len(cfg.adv_epsilons), (len(idx),), generator=gen).tolist()
        eps = [float(cfg.adv_epsilons[k]) for k in pick]
    else:
        eps = [float(cfg.fgsm_epsilon)] * len(idx)
    sub_x, sub_t = [xs[i] for i in idx], [ts[i] for i in idx]
    if cfg.adv_method == "pgd":
        adv = pgd_perturb(raw_model, sub_x, sub_t, eps, cfg.adv_steps, cfg.adv_step_size,
                          cfg.adv_random_start, gen, autocast)
    elif len(set(eps)) == 1:
        adv = fgsm_perturb(raw_model, sub_x, sub_t, eps[0], autocast)
    else:  # one FGSM pass per budget
        adv = list(sub_x)
        for e in sorted(set(eps)):
            js = [j for j, ej in enumerate(eps) if ej == e]
            for j, a in zip(js, fgsm_perturb(raw_model, [sub_x[j] for j in js],
                                             [sub_t[j] for j in js], e, autocast)):
                adv[j] = a
    for i, a in zip(idx, adv):
        xs[i] = a
    return len(idx)


def to_device(images: list[torch.Tensor], targets: list[dict[str, Any]],
              device: torch.device) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """uint8 (H, W) images -> float (1, H, W) in 8-bit units on ``device``; targets too."""
    xs = [im.to(device, non_blocking=True).float()[None] for im in images]
    ts = [{"boxes": t["boxes"].to(device).float().reshape(-1, 4),
           "labels": t["labels"].to(device).long()} for t in targets]
    return xs, ts


def train_one_epoch(model: nn.Module, raw_model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, scaler: Any, stream: DataStream, cfg: TrainConfig,
                    start_step: int, end_step: int, device: torch.device, dist: DistInfo,
                    use_amp: bool, on_step: Callable[[int, dict[str, float]], None] | None = None,
                    progress: Any = None) -> MetricLogger:
    """Run optimizer steps ``start_step .. end_step - 1``.

    Each step: next batch; FGSM or PGD on ``fgsm_fraction`` of it (:func:`adversarial_batch`
    with ``raw_model``, BatchNorm stats untouched); forward/backward of the mixed batch
    through ``model`` (DDP wrapper when distributed); gradient clipping; SGD step; scheduler
    step. ``on_step(step, row)`` gets every step's scalars (rank-0 logging). Raises
    FloatingPointError on a non-finite loss.
    """
    model.train()
    meters = MetricLogger()
    autocast: Any = None
    if use_amp:
        autocast = lambda: torch.autocast(device_type="cuda", dtype=torch.float16)  # noqa: E731
    for step in range(start_step, end_step):
        t0 = time.perf_counter()
        images, targets = stream.next()
        xs, ts = to_device(images, targets, device)
        t_data = time.perf_counter() - t0
        n_adv = adversarial_batch(raw_model, xs, ts, cfg,
                                  step_generator(cfg.seed, dist.rank, step), autocast)
        ctx = autocast() if autocast is not None else contextlib.nullcontext()
        with ctx:
            loss_dict = model(xs, ts)
            loss = sum(loss_dict.values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        grad_norm = float("nan")
        if cfg.grad_clip_norm is not None:
            scaler.unscale_(optimizer)
            grad_norm = float(nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip_norm))
        scaler.step(optimizer)
        scaler.update()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        loss_value = float(all_reduce_mean(loss.detach(), dist))
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"loss is {loss_value} at step {step}: "
                                     f"{ {k: float(v) for k, v in loss_dict.items()} }")
        dt = time.perf_counter() - t0
        row = {"loss": loss_value, **{k: float(v.detach()) for k, v in loss_dict.items()}, "lr": lr,
               "grad_norm": grad_norm, "n_adversarial": n_adv, "s_per_step": dt,
               "data_s": t_data, "images_per_s": len(xs) * dist.world_size / dt}
        meters.update(**{k: v for k, v in row.items() if k not in ("lr", "n_adversarial")})
        if on_step is not None:
            on_step(step, row)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{meters.meters['loss'].median:.3f}", lr=f"{lr:.2e}")
    return meters


@torch.inference_mode()
def predict(model: nn.Module, images: list[np.ndarray], device: torch.device,
            score_threshold: float, batch_size: int = 4) -> list[Any]:
    """Detections (``sar_atd.detectors.base.Detections``) of ``model`` on uint8 images."""
    from sar_atd.backends.base import check_image, filter_scores

    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(images), batch_size):
            xs = [torch.from_numpy(check_image(im))[None].to(device)
                  for im in images[i:i + batch_size]]
            for o in model(xs):
                out.append(filter_scores(o["boxes"].float().cpu().numpy(),
                                         o["scores"].float().cpu().numpy(), score_threshold))
    finally:
        model.train(was_training)
    return out


def evaluate(model: nn.Module, images: list[np.ndarray], gts: list[np.ndarray],
             device: torch.device, score_threshold: float = 0.01,
             iou_thresholds: tuple[float, ...] = (0.25, 0.5)) -> dict[str, Any]:
    """AP figures of ``model`` on (images, ground-truth boxes) with the shared metrics."""
    from sar_atd.metrics import evaluate as evaluate_detections  # lazy import

    t0 = time.perf_counter()
    preds = predict(model, images, device, score_threshold)
    res = evaluate_detections(preds, gts, iou_thresholds=iou_thresholds)
    res["seconds"] = time.perf_counter() - t0
    return res
