"""``sar-atd train box-calibrator``: the class-aware box calibrator.

Two stages, in that order:

1. the vehicle-class classifier (:class:`sar_atd.box_calibration.ClassNet`) is trained on
   **synthetic** windows only (:mod:`sar_atd_training.boxcal.data`), cross-entropy with
   label smoothing on class-balanced batches of jittered, mirrored windows;
2. with ``calibration.detector`` set and the real chips present, the side offsets are fitted
   on that detector's matched boxes on ``calibration.n_tune`` patchworks of the **tune**
   chip split (:mod:`sar_atd_training.boxcal.calibrate`) and the candidate with the best
   tune AP70 is stored. Without it the file holds zero offsets (no correction).

Writes into ``--out``: ``box_calibrator.pt`` (:func:`sar_atd.box_calibration.
save_box_calibrator`) and ``record.json`` (loss curve, synthetic validation accuracy per
class, tune-set figures per candidate, timings, hardware).
"""

from __future__ import annotations

import argparse
import logging
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sar_atd.config import ConfigError, from_dict, load_yaml, to_dict
from sar_atd_training.boxcal.data import (
    BoxCalDataConfig,
    ClassPool,
    bank_classes,
    build_pipeline,
    generate_pool,
    open_bank,
    windows_of,
)
from sar_atd_training.cliutil import apply_recipe_overrides
from sar_atd_training.trainer.record import loss_summary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibrationConfig:
    """Offset fitting on real tune-split patchworks.

    Attributes:
        detector: detector spec whose boxes are calibrated (e.g. ``models/default.pt``, as
            the runtime resolves it); None: no fitting (zero offsets).
        n_tune: tune-split patchworks.
        seed: patchwork sampling seed.
        min_iou: matching IoU of detections to targets.
        mode: stored candidate (:data:`~.calibrate.CANDIDATES`), or ``auto``: the best tune
            AP70.
    """

    detector: str | None = None
    n_tune: int = 100
    seed: int = 0
    min_iou: float = 0.1
    mode: str = "auto"

    def __post_init__(self) -> None:
        from sar_atd_training.boxcal.calibrate import CANDIDATES

        if self.mode != "auto" and self.mode not in CANDIDATES:
            raise ConfigError(f"calibration.mode must be auto or one of {CANDIDATES}, got "
                              f"{self.mode!r}")
        if self.n_tune < 1 or not 0 < self.min_iou <= 1:
            raise ConfigError("calibration.n_tune must be >= 1 and min_iou in (0, 1]")


@dataclass(frozen=True)
class BoxCalTrainConfig:
    """A box-calibrator recipe.

    Attributes:
        data: where the synthetic samples come from.
        calibration: offset fitting on real tune patchworks.
        window: window side S in pixels (multiple of 16).
        channels: conv block widths of :class:`sar_atd.box_calibration.ClassNet`.
        steps: optimiser steps.
        batch_size: windows per step (classes drawn uniformly).
        lr: AdamW learning rate (cosine decay to 1 %).
        weight_decay: AdamW weight decay.
        label_smoothing: cross-entropy label smoothing (softer probabilities for ``soft``).
        seed: seed of the pools, the batches and the initialisation.
        threads: torch CPU threads.
        device: ``cpu`` or ``cuda``.
        log_interval: steps between log lines.
    """

    data: BoxCalDataConfig = field(default_factory=BoxCalDataConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    window: int = 96
    channels: tuple[int, ...] = (16, 32, 48, 64, 96)
    steps: int = 800
    batch_size: int = 48
    lr: float = 2e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    seed: int = 0
    threads: int = 1
    device: str = "cpu"
    log_interval: int = 50

    def __post_init__(self) -> None:
        if self.window < 16 or self.window % 16:
            raise ConfigError(f"window must be a multiple of 16, got {self.window}")
        if self.steps < 1 or self.batch_size < 2:
            raise ConfigError("steps must be >= 1 and batch_size >= 2")
        if not self.lr > 0 or not 0 <= self.label_smoothing < 1:
            raise ConfigError("lr must be > 0 and label_smoothing in [0, 1)")
        if not self.channels or any(c < 1 for c in self.channels):
            raise ConfigError("channels must be positive widths")


def load_boxcal_config(path: str | Path) -> BoxCalTrainConfig:
    """Recipe from YAML (unknown keys are errors)."""
    return from_dict(BoxCalTrainConfig, load_yaml(path), where=str(path))


def draw_batch(pool: ClassPool, batch: int, rng: np.random.Generator) -> np.ndarray:
    """Sample indices of one batch: a class drawn uniformly (among those present), then a
    sample of it."""
    present = [np.nonzero(pool.labels == c)[0] for c in range(len(pool.classes))]
    present = [p for p in present if p.size]
    which = rng.integers(0, len(present), batch)
    return np.array([present[w][rng.integers(0, present[w].size)] for w in which], np.int64)


def predict_pool(net: torch.nn.Module, pool: ClassPool, cfg: BoxCalTrainConfig,
                 rng: np.random.Generator | None, device: torch.device) -> np.ndarray:
    """float32 (N, C) class probabilities of every pool sample (jittered boxes with
    ``rng``)."""
    from sar_atd.verifier import crops_to_tensor

    out = []
    net.eval()
    with torch.inference_mode():
        for s in range(0, len(pool.labels), 256):
            sel = np.arange(s, min(s + 256, len(pool.labels)))
            c, m = windows_of(pool, sel, cfg.window, cfg.data, rng)
            out.append(torch.softmax(net(crops_to_tensor(c, m).to(device)), 1).cpu().numpy())
    return (np.concatenate(out) if out else np.zeros((0, len(pool.classes)))).astype(
        np.float32)


def per_class_accuracy(labels: np.ndarray, probs: np.ndarray, classes: tuple[str, ...]
                       ) -> dict[str, Any]:
    """Overall and per-class argmax accuracy."""
    pred = np.argmax(probs, 1) if len(probs) else np.zeros(0, np.int64)
    per = {c: (float((pred[labels == i] == i).mean()) if (labels == i).any() else None)
           for i, c in enumerate(classes)}
    return {"accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
            "per_class": per}


def train_classifier(cfg: BoxCalTrainConfig, progress: bool = True, bank: Any = None
                     ) -> tuple[torch.nn.Module, tuple[str, ...], dict]:
    """Train the classifier per ``cfg`` on synthetic windows (``bank``: an opened bank in
    place of ``cfg.data.bank``). Returns (network on the CPU in eval mode, class names,
    record)."""
    from tqdm import tqdm

    from sar_atd.box_calibration import ClassNet
    from sar_atd.verifier import crops_to_tensor

    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    t_start = time.perf_counter()
    bank = open_bank(cfg.data) if bank is None else bank
    classes = bank_classes(bank)
    if len(classes) < 2:
        raise ConfigError(f"the bank holds {len(classes)} target class(es); need >= 2")
    pipe = build_pipeline(cfg.data, bank)
    pool = generate_pool(cfg.data, cfg.data.images, cfg.seed, pipe, classes, progress)
    val = generate_pool(cfg.data, cfg.data.val_images, cfg.seed + 10_007, pipe, classes)
    t_data = time.perf_counter() - t_start
    log.info("box-calibrator pool: %d images, %d targets; validation %d targets (%.0f s)",
             len(pool.images), len(pool.labels), len(val.labels), t_data)

    dev = torch.device(cfg.device)
    net = ClassNet(len(classes), cfg.channels).to(dev).train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps)
                                                         / cfg.steps)))
    rng = np.random.default_rng(cfg.seed)
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="train box-calibrator", disable=not progress)
    for step in bar:
        net.train()
        sel = draw_batch(pool, cfg.batch_size, rng)
        c, m = windows_of(pool, sel, cfg.window, cfg.data, rng)
        x = crops_to_tensor(c, m).to(dev)
        y = torch.from_numpy(pool.labels[sel]).to(dev)
        loss = F.cross_entropy(net(x), y, label_smoothing=cfg.label_smoothing)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"box-calibrator loss is not finite at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % cfg.log_interval == 0 or step == cfg.steps - 1:
            avg = float(np.mean(losses[-cfg.log_interval:]))
            bar.set_postfix(loss=f"{avg:.3f}")
            log.info("step %d/%d loss %.4f", step, cfg.steps, avg)
    t_train = time.perf_counter() - t0
    p_jit = predict_pool(net, val, cfg, np.random.default_rng(cfg.seed + 1), dev)
    p_exact = predict_pool(net, val, cfg, None, dev)
    net = net.cpu().eval()
    record = {"recipe": to_dict(cfg), "classes": list(classes), "steps": cfg.steps,
              "seed": cfg.seed, "data_seconds": round(t_data, 1),
              "train_seconds": round(t_train, 1),
              "seconds_per_step": round(t_train / cfg.steps, 4),
              "parameters": int(sum(p.numel() for p in net.parameters())),
              "hardware": {"platform": platform.platform(), "device": str(dev),
                           "threads": torch.get_num_threads()},
              "torch": str(torch.__version__), "pool": pool.counts(),
              **loss_summary(losses),
              "synthetic_validation_jittered": per_class_accuracy(val.labels, p_jit, classes),
              "synthetic_validation_exact_boxes": per_class_accuracy(val.labels, p_exact,
                                                                     classes)}
    return net, classes, record


def fit_on_tune(calibrator: Any, cfg: CalibrationConfig) -> dict | None:
    """Fit the candidates on the tune-split patchworks, store the chosen one in
    ``calibrator`` and return the tune figures (None when the real chips are absent)."""
    from sar_atd_training.boxcal.calibrate import (
        ap_triplet,
        confusion,
        corrected,
        fit_candidates,
        match,
    )
    from sar_atd_training.evaluation.runner import resolve_detector, run_detector
    from sar_atd_training.paths import mstar_chips_dir
    from sar_atd_training.quality.diagnosis import chip_records, sample_patchworks

    chips = mstar_chips_dir()
    if chips is None or cfg.detector is None:
        return None
    dset = sample_patchworks(chip_records(chips, "tune"), cfg.n_tune, cfg.seed)
    det, _ = resolve_detector(cfg.detector)
    preds, _ = run_detector(det, dset.images, progress=False)
    names = [t.class_name for t in dset.targets]
    m = match(dset.images, names, preds, calibrator, cfg.min_iou)
    cands = fit_candidates(m, len(calibrator.classes))
    figs: dict[str, Any] = {"raw": ap_triplet(preds, dset.images)}
    for name, (mode, off, lin) in cands.items():
        figs[name] = ap_triplet(corrected(preds, m.all_probs, mode, off, lin), dset.images)
    choice = max(cands, key=lambda k: figs[k][2]) if cfg.mode == "auto" else cfg.mode
    calibrator.mode, calibrator.offsets, calibrator.linear = cands[choice]
    cm = confusion(m.labels, m.probs, len(calibrator.classes))
    return {"detector": cfg.detector, "n_tune": cfg.n_tune, "seed": cfg.seed,
            "matched": int(len(m.err)), "ap25_50_70": figs, "chosen": choice,
            "tune_confusion": cm.tolist(),
            "tune_accuracy": float(np.trace(cm) / max(1, cm.sum()))}


def train_box_calibrator(cfg: BoxCalTrainConfig, out: str | Path, progress: bool = True,
                         bank: Any = None) -> dict:
    """Train the classifier, fit the offsets (when configured) and write ``out``.

    Returns:
        The record.
    """
    from sar_atd.atomic import atomic_write_json
    from sar_atd.box_calibration import BoxCalibrator, save_box_calibrator

    out = Path(out)
    if (out / "box_calibrator.pt").exists():
        raise FileExistsError(f"{out / 'box_calibrator.pt'} exists: choose a new --out folder")
    out.mkdir(parents=True, exist_ok=True)
    net, classes, record = train_classifier(cfg, progress, bank)
    cal = BoxCalibrator(net, classes, cfg.window, "soft")
    t0 = time.perf_counter()
    tune = fit_on_tune(cal, cfg.calibration)
    record["calibration"] = tune
    record["calibration_seconds"] = round(time.perf_counter() - t0, 1)
    record["mode"] = cal.mode
    record["offsets"] = cal.offsets.tolist()
    record["linear"] = cal.linear.tolist()
    cal.record = {k: v for k, v in record.items() if k != "loss_curve"}
    save_box_calibrator(out / "box_calibrator.pt", cal)
    atomic_write_json(out / "record.json", record)
    return record


def main(args: argparse.Namespace) -> int:
    cfg = load_boxcal_config(args.config)
    cfg = apply_recipe_overrides(cfg, args)
    rec = train_box_calibrator(cfg, args.out, progress=not args.no_progress)
    v = rec["synthetic_validation_jittered"]
    cal = rec["calibration"]
    tail = ("no offsets fitted (calibration.detector unset or real chips absent)"
            if cal is None else
            f"stored {cal['chosen']} (tune AP70 raw {cal['ap25_50_70']['raw'][2]:.3f} -> "
            f"{cal['ap25_50_70'][cal['chosen']][2]:.3f}; tune class accuracy "
            f"{cal['tune_accuracy']:.3f})")
    print(f"box calibrator: {args.out / 'box_calibrator.pt'} ({rec['steps']} steps, "
          f"{rec['train_seconds']:.0f} s); loss {rec['loss_first_50']:.3f} -> "
          f"{rec['loss_last_50']:.3f}; synthetic validation accuracy {v['accuracy']:.3f}; "
          + tail)
    return 0
