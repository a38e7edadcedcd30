"""``sar-atd train verifier``: train the second-stage target verifier on synthetic data only.

Reads a recipe (``training/configs/verifier.yaml`` -> :class:`VerifierTrainConfig`), draws a
pool of overlay images (targets, unlabelled trees/houses, bright clutter; see
:mod:`sar_atd_training.verifier.data`), trains :class:`sar_atd.verifier.VerifierNet` with
binary cross-entropy on class-balanced batches of jittered crops, picks the rejection
threshold on held-out synthetic images (the largest threshold that keeps
``positive_recall`` of their target boxes, at most ``max_threshold``) and writes into
``--out``: ``verifier.pt`` (:func:`sar_atd.verifier.save_verifier`), ``verifier.onnx``
(the same network and rule for ONNX Runtime, :func:`sar_atd.verifier.export_onnx`) and
``record.json`` (loss curve, validation per kind, timings, hardware). Real data is never
used.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from sar_atd_training.cliutil import apply_recipe_overrides
from sar_atd_training.trainer.record import loss_summary
from sar_atd_training.verifier.data import (
    KINDS,
    SamplePool,
    VerifierDataConfig,
    build_pipeline,
    crops_of,
    generate_pool,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifierTrainConfig:
    """A verifier training recipe.

    Attributes:
        data: where the samples come from.
        crop_size: window side S in pixels (multiple of 16).
        channels: conv block widths of :class:`sar_atd.verifier.VerifierNet`.
        steps: optimiser steps.
        batch_size: crops per step, half targets and half negatives.
        ood_share: share of the negatives drawn from trees/houses (the rest: clutter) while
            the pool holds both.
        lr: AdamW learning rate (cosine decay to 1 %).
        weight_decay: AdamW weight decay.
        detector_share: share of each batch part (targets, OOD objects, clutter) drawn from
            the detector's boxes when ``data.detector`` is set (the rest: jittered
            ground-truth boxes).
        positive_recall: share of held-out synthetic target boxes the threshold keeps.
        max_threshold: upper bound of the chosen threshold.
        threshold_rule: ``jittered``: the quantile is taken over jittered ground-truth
            target boxes; ``detector``: over the detector's boxes on validation targets
            scored at or above ``rule_min_score`` (the boxes the verifier will judge;
            needs ``data.detector``).
        rule_min_score: detector score floor of the ``detector`` rule's boxes (None: the
            model's operating threshold from its metadata).
        rescore: the stored rule also multiplies kept scores by p(vehicle).
        seed: seed of the pools, the batches and the initialisation.
        threads: torch CPU threads.
        device: ``cpu`` or ``cuda``.
        log_interval: steps between log lines.
    """

    data: VerifierDataConfig = field(default_factory=VerifierDataConfig)
    crop_size: int = 64
    channels: tuple[int, ...] = (8, 16, 32, 32)
    steps: int = 600
    batch_size: int = 32
    ood_share: float = 0.5
    lr: float = 2e-3
    weight_decay: float = 1e-4
    detector_share: float = 0.0
    positive_recall: float = 0.99
    max_threshold: float = 0.5
    threshold_rule: str = "jittered"
    rule_min_score: float | None = None
    rescore: bool = False
    seed: int = 0
    threads: int = 1
    device: str = "cpu"
    log_interval: int = 50

    def __post_init__(self) -> None:
        if self.crop_size < 16 or self.crop_size % 16:
            raise ConfigError(f"crop_size must be a multiple of 16, got {self.crop_size}")
        if self.steps < 1 or self.batch_size < 2:
            raise ConfigError("steps must be >= 1 and batch_size >= 2")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.ood_share <= 1 or not 0 < self.positive_recall <= 1:
            raise ConfigError("ood_share must be in [0, 1] and positive_recall in (0, 1]")
        if not 0 <= self.max_threshold <= 1:
            raise ConfigError("max_threshold must be in [0, 1]")
        if not self.channels or any(c < 1 for c in self.channels):
            raise ConfigError("channels must be positive widths")
        if not 0 <= self.detector_share <= 1:
            raise ConfigError("detector_share must be in [0, 1]")
        if self.threshold_rule not in ("jittered", "detector"):
            raise ConfigError(f"threshold_rule must be 'jittered' or 'detector', got "
                              f"{self.threshold_rule!r}")
        if (self.detector_share > 0 or self.threshold_rule == "detector") and \
                not self.data.detector:
            raise ConfigError("detector_share > 0 and threshold_rule 'detector' need "
                              "data.detector (a model file)")


def load_verifier_config(path: str | Path) -> VerifierTrainConfig:
    """Recipe from YAML (unknown keys are errors)."""
    return from_dict(VerifierTrainConfig, load_yaml(path), where=str(path))


def draw_batch(pool: SamplePool, cfg: VerifierTrainConfig, rng: np.random.Generator
               ) -> np.ndarray:
    """Sample indices of one class-balanced batch (half targets; negatives split between
    OOD objects and clutter by ``ood_share``; each part split between detector boxes and
    ground-truth boxes by ``detector_share``)."""
    pos = np.nonzero(pool.kinds == KINDS.index("target"))[0]
    ood = np.nonzero(np.isin(pool.kinds, (KINDS.index("tree"), KINDS.index("house"))))[0]
    clu = np.nonzero(pool.kinds == KINDS.index("clutter"))[0]
    from_det = pool.from_detector
    n_pos = cfg.batch_size // 2
    n_neg = cfg.batch_size - n_pos
    n_ood = int(round(n_neg * cfg.ood_share)) if ood.size and clu.size else (
        n_neg if ood.size else 0)

    def pick(cand: np.ndarray, n: int) -> list[np.ndarray]:
        det, gt = cand[from_det[cand]], cand[~from_det[cand]]
        n_det = int(round(n * cfg.detector_share)) if det.size and gt.size else (
            n if det.size else 0)
        return [rng.choice(a, k) for a, k in ((det, n_det), (gt, n - n_det)) if k]

    parts = pick(pos, n_pos)
    if n_ood:
        parts += pick(ood, n_ood)
    if n_neg - n_ood:
        parts += pick(clu if clu.size else ood, n_neg - n_ood)
    return np.concatenate(parts)


def roc_auc(p_pos: np.ndarray, p_neg: np.ndarray) -> float:
    """Area under the ROC curve (probability a positive outscores a negative; ties half)."""
    if not len(p_pos) or not len(p_neg):
        return float("nan")
    allp = np.concatenate([p_pos, p_neg])
    ranks = np.empty(len(allp))
    order = np.argsort(allp, kind="mergesort")
    ranks[order] = np.arange(1, len(allp) + 1)
    for v in np.unique(allp):  # average ranks of ties
        t = allp == v
        if t.sum() > 1:
            ranks[t] = ranks[t].mean()
    return float((ranks[:len(p_pos)].sum() - len(p_pos) * (len(p_pos) + 1) / 2)
                 / (len(p_pos) * len(p_neg)))


def predict_pool(net: torch.nn.Module, pool: SamplePool, cfg: VerifierTrainConfig,
                 rng: np.random.Generator | None, device: torch.device) -> np.ndarray:
    """float32 (N,) p(vehicle) of every pool sample (jittered boxes with ``rng``)."""
    from sar_atd.verifier import crops_to_tensor

    out = []
    net.eval()
    with torch.inference_mode():
        for s in range(0, len(pool.kinds), 256):
            sel = np.arange(s, min(s + 256, len(pool.kinds)))
            c, m = crops_of(pool, sel, cfg.crop_size, cfg.data, rng)
            out.append(torch.sigmoid(net(crops_to_tensor(c, m).to(device))).cpu().numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def choose_threshold(p: np.ndarray, pool: SamplePool, cfg: VerifierTrainConfig,
                     rule_boxes: np.ndarray | None = None) -> tuple[float, dict]:
    """Threshold keeping ``positive_recall`` of the positives among ``rule_boxes`` (bool
    (N,); None: every target sample) (<= ``max_threshold``) and the validation figures at
    it over the samples given: AUC and the share kept per kind."""
    pos = pool.kinds == KINDS.index("target")
    rule = pos if rule_boxes is None else pos & rule_boxes
    if not rule.any():
        raise ConfigError("no validation target boxes for the threshold rule: more "
                          "data.val_images or a lower rule_min_score")
    thr = float(min(cfg.max_threshold, np.quantile(p[rule], 1 - cfg.positive_recall)))
    kept = {k: (float((p[pool.kinds == i] >= thr).mean()) if (pool.kinds == i).any()
                else None) for i, k in enumerate(KINDS)}
    return thr, {"auc_all": roc_auc(p[pos], p[~pos]),
                 "auc_ood": roc_auc(p[pos], p[np.isin(pool.kinds, (1, 2))]),
                 "auc_clutter": roc_auc(p[pos], p[pool.kinds == 3]),
                 "kept_at_threshold": kept, "counts": pool.counts(),
                 "rule_boxes": int(rule.sum())}


def subset(pool: SamplePool, sel: np.ndarray) -> SamplePool:
    """The samples ``sel`` (bool or index array) of ``pool``, the same images."""
    return SamplePool(pool.images, pool.image_index[sel], pool.boxes[sel], pool.kinds[sel],
                      None if pool.scores is None else pool.scores[sel])


def _pool_key(cfg: VerifierTrainConfig) -> str:
    import json

    return json.dumps({"data": to_dict(cfg.data), "seed": cfg.seed}, sort_keys=True)


def save_pools(path: str | Path, cfg: VerifierTrainConfig, pool: SamplePool,
               val: SamplePool) -> None:
    """Write the training and validation pools (images, boxes, kinds, detector scores) with
    the data recipe they were drawn with (``.npz``, atomically)."""
    from sar_atd.atomic import atomic_path

    arrays = {"key": np.array(_pool_key(cfg))}
    for name, p in (("pool", pool), ("val", val)):
        arrays.update({f"{name}_images": p.images, f"{name}_image_index": p.image_index,
                       f"{name}_boxes": p.boxes, f"{name}_kinds": p.kinds,
                       f"{name}_scores": (p.scores if p.scores is not None else
                                          np.full(len(p.kinds), np.nan, np.float32))})
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def load_pools(path: str | Path, cfg: VerifierTrainConfig
               ) -> tuple[SamplePool, SamplePool] | None:
    """The pools of :func:`save_pools` (None when the file is missing).

    Raises:
        ConfigError: the file was drawn with another data recipe or seed.
    """
    if not Path(path).is_file():
        return None
    z = np.load(path)
    if str(z["key"]) != _pool_key(cfg):
        raise ConfigError(f"pool cache {path} was drawn with another data recipe or seed")
    out = tuple(SamplePool(z[f"{n}_images"], z[f"{n}_image_index"], z[f"{n}_boxes"],
                           z[f"{n}_kinds"], z[f"{n}_scores"]) for n in ("pool", "val"))
    return out[0], out[1]


def train_verifier(cfg: VerifierTrainConfig, out: str | Path, progress: bool = True,
                   bank: Any = None, pool_cache: str | Path | None = None) -> dict:
    """Train per ``cfg``; write ``verifier.pt``, ``verifier.onnx`` and ``record.json`` into
    ``out``
    (``bank``: an opened signature bank in place of ``cfg.data.bank``; ``pool_cache``: an
    ``.npz`` of the drawn pools, read when present, else written, so that recipes differing
    only in training settings share one draw).

    Returns:
        The training record.
    """
    from tqdm import tqdm

    from sar_atd.atomic import atomic_write_json
    from sar_atd.verifier import (
        VerifierNet,
        crops_to_tensor,
        export_onnx,
        load_verifier,
        save_verifier,
    )

    out = Path(out)
    if (out / "verifier.pt").exists():
        raise FileExistsError(f"{out / 'verifier.pt'} exists: choose a new --out folder")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    t_start = time.perf_counter()
    cached = load_pools(pool_cache, cfg) if pool_cache is not None else None
    if cached is not None:
        pool, val = cached
    else:
        pipe = build_pipeline(cfg.data, device="cpu", bank=bank)
        pool = generate_pool(cfg.data, cfg.data.images, cfg.seed, pipe, progress)
        val = generate_pool(cfg.data, cfg.data.val_images, cfg.seed + 10_007, pipe)
    rule_min = None
    if cfg.data.detector:
        from sar_atd.runtime import resolve_detector
        from sar_atd_training.verifier.data import detector_pool

        det, _ = resolve_detector(cfg.data.detector)
        info = getattr(det, "model_info", None)
        rule_min = cfg.rule_min_score if cfg.rule_min_score is not None else getattr(
            info, "operating_threshold", None)
        if cfg.threshold_rule == "detector" and rule_min is None:
            raise ConfigError(f"{cfg.data.detector} stores no operating threshold: set "
                              "rule_min_score")
        if cached is None:
            pool = detector_pool(pool, det, cfg.data.detector_iou, progress,
                                 cfg.data.detector_images)
            val = detector_pool(val, det, cfg.data.detector_iou)
    if pool_cache is not None and cached is None:
        save_pools(pool_cache, cfg, pool, val)
    t_data = time.perf_counter() - t_start
    log.info("verifier pool: %d images %s; validation %d images %s (%.0f s)",
             len(pool.images), pool.counts(), len(val.images), val.counts(), t_data)
    if not (pool.kinds == KINDS.index("target")).any() or (pool.kinds == 0).all():
        raise ConfigError("the verifier pool needs targets and negatives: check "
                          "data.overlay.targets_per_image / ood_per_image / clutter_per_image")

    dev = torch.device(cfg.device)
    net = VerifierNet(cfg.channels).to(dev).train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps)
                                                         / cfg.steps)))
    rng = np.random.default_rng(cfg.seed)
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="train verifier", disable=not progress)
    for step in bar:
        net.train()
        sel = draw_batch(pool, cfg, rng)
        c, m = crops_of(pool, sel, cfg.crop_size, cfg.data, rng)
        x = crops_to_tensor(c, m).to(dev)
        y = torch.from_numpy(pool.labels[sel]).to(dev)
        loss = F.binary_cross_entropy_with_logits(net(x), y)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"verifier loss is not finite at step {step}")
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

    gt_val = subset(val, ~val.from_detector)
    p_val = predict_pool(net, gt_val, cfg, np.random.default_rng(cfg.seed + 1), dev)
    thr, vfig = choose_threshold(p_val, gt_val, cfg)
    p_exact = predict_pool(net, gt_val, cfg, None, dev)
    _, vexact = choose_threshold(p_exact, gt_val, dataclasses.replace(cfg,
                                                                       max_threshold=thr))
    vdet = None
    if val.from_detector.any():
        det_val = subset(val, val.from_detector)
        p_det = predict_pool(net, det_val, cfg, None, dev)
        assert det_val.scores is not None
        at_op = det_val.scores >= (rule_min if rule_min is not None else 0.0)
        thr_d, vdet = choose_threshold(p_det, det_val, cfg, at_op)
        if cfg.threshold_rule == "detector":
            thr = thr_d
        _, vd = choose_threshold(p_det, det_val, dataclasses.replace(cfg,
                                                                     max_threshold=thr), at_op)
        vdet = {"rule_min_score": rule_min, "threshold_by_rule": thr_d,
                "at_stored_threshold": vd,
                "kept_at_op_score": {k: (float((p_det[at_op & (det_val.kinds == i)]
                                                >= thr).mean())
                                         if (at_op & (det_val.kinds == i)).any() else None)
                                     for i, k in enumerate(KINDS)}}
        log.info("detector boxes (validation): %s", vdet)
    net.cpu().eval()
    x = crops_to_tensor(*crops_of(val, np.arange(min(64, len(val.kinds))), cfg.crop_size,
                                  cfg.data, None))
    with torch.inference_mode():
        net(x)
        t1 = time.perf_counter()
        for _ in range(5):
            net(x)
    ms_crop = (time.perf_counter() - t1) * 1e3 / (5 * len(x))
    record = {"recipe": to_dict(cfg), "steps": cfg.steps, "seed": cfg.seed,
              "threshold": thr, "data_seconds": round(t_data, 1),
              "train_seconds": round(t_train, 1),
              "seconds_per_step": round(t_train / cfg.steps, 4),
              "ms_per_crop_cpu_batch64": round(ms_crop, 3),
              "parameters": int(sum(p.numel() for p in net.parameters())),
              "hardware": {"platform": platform.platform(), "device": str(dev),
                           "threads": torch.get_num_threads()},
              "torch": str(torch.__version__), "pool": pool.counts(),
              **loss_summary(losses),
              "synthetic_validation_jittered": vfig,
              "synthetic_validation_exact_boxes": vexact,
              "synthetic_validation_detector_boxes": vdet}
    save_verifier(out / "verifier.pt", net, cfg.crop_size, thr, cfg.rescore,
                  {k: v for k, v in record.items() if k != "loss_curve"})
    export_onnx(load_verifier(out / "verifier.pt"), out / "verifier.onnx")
    atomic_write_json(out / "record.json", record)
    return record


def add_args(parser: argparse.ArgumentParser) -> None:
    """``sar-atd train verifier``'s arguments: the recipe ones plus ``--pool-cache``."""
    from sar_atd_training.cliutil import add_recipe_args

    add_recipe_args(parser)
    parser.add_argument("--pool-cache", type=Path, default=None, metavar="NPZ",
                        help="drawn pools (images, boxes, detector boxes): read when the file "
                             "exists (same data recipe and seed), else written")


def main(args: argparse.Namespace) -> int:
    cfg = load_verifier_config(args.config)
    cfg = apply_recipe_overrides(cfg, args)
    rec = train_verifier(cfg, args.out, progress=not args.no_progress,
                         pool_cache=getattr(args, "pool_cache", None))
    v = rec["synthetic_validation_jittered"]
    kept = {k: (round(x, 3) if x is not None else None)
            for k, x in v["kept_at_threshold"].items()}
    print(f"verifier: {args.out / 'verifier.pt'} ({rec['steps']} steps, "
          f"{rec['train_seconds']:.0f} s, {rec['ms_per_crop_cpu_batch64']:.2f} ms/crop); loss "
          f"{rec['loss_first_50']:.3f} -> {rec['loss_last_50']:.3f}; threshold "
          f"{rec['threshold']:.3f}; synthetic validation AUC {v['auc_all']:.3f} "
          f"(OOD {v['auc_ood']:.3f}, clutter {v['auc_clutter']:.3f}), kept {kept}")
    return 0
