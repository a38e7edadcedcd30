"""Synthetic vehicle-class samples for the box calibrator's classifier.

Images come from the overlay pipeline with the detector recipe's domain randomisation
(``training/configs/default_v4.yaml``'s ``data.overlay`` block: wide rendering gamma/level,
black point, noise, 1-3 targets, 0-2 unlabelled trees/houses). With ``split_seed`` set only
the training records of that azimuth-sector split are drawn. Backgrounds are generated
clutter scenes from ``background_seed`` (the test sets use seed 1000 and up). Real data is
never used here.

A pool of images is drawn once; training windows are cut from it around each target's box
with a random box jitter (the detector's boxes are not the ground truth) and a cross-range
mirror (columns flipped: the radar stays at the bottom, so range and the shadow side are
kept; a mirrored vehicle is the same class seen from the mirrored azimuth).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sar_atd.errors import ConfigError
from sar_atd_training.overlay.pipeline import OverlayConfig

log = logging.getLogger(__name__)


def _default_overlay() -> OverlayConfig:
    return OverlayConfig(image_size=320, targets_per_image=(1, 3), ood_per_image=(0, 2),
                         return_masks=False)


@dataclass(frozen=True)
class BoxCalDataConfig:
    """Where classifier samples come from.

    Attributes:
        bank: signature bank folder (``sar-atd simulate``); None: a toy bank made on the fly
            (tests, smoke runs).
        split_seed: azimuth-sector split whose training records are used (None: all).
        generated_backgrounds: generated clutter scenes (when ``backgrounds`` is None).
        background_seed: seed of the first generated scene.
        background_size: (height, width) of each generated scene, pixels.
        backgrounds: folder of background files, or None for generated clutter.
        images: training pool size (images drawn once).
        val_images: validation images (their own seed).
        generation_batch: images per overlay-pipeline call.
        jitter_shift: box jitter, centre shift as a share of the box side (uniform +-).
        jitter_scale: (min, max) box side scale (uniform, per axis).
        hflip_prob: probability of a cross-range mirror of a window.
        scale_jitter: (min, max) image scale applied to a training window (uniform; (1, 1):
            none). Loosens the network's reliance on the simulator's exact vehicle sizes;
            test windows are never resampled.
        overlay: overlay-pipeline randomisation (the detector recipe's).
    """

    bank: str | None = None
    split_seed: int | None = 0
    generated_backgrounds: int = 12
    background_seed: int = 0
    background_size: tuple[int, int] = (640, 640)
    backgrounds: str | None = None
    images: int = 400
    val_images: int = 80
    generation_batch: int = 8
    jitter_shift: float = 0.1
    jitter_scale: tuple[float, float] = (0.8, 1.2)
    hflip_prob: float = 0.5
    scale_jitter: tuple[float, float] = (1.0, 1.0)
    overlay: OverlayConfig = field(default_factory=_default_overlay)

    def __post_init__(self) -> None:
        if self.images < 1 or self.val_images < 1 or self.generation_batch < 1:
            raise ConfigError("data.images, data.val_images and data.generation_batch must "
                              "be >= 1")
        lo, hi = self.jitter_scale
        if not 0 < lo <= hi or not 0 <= self.jitter_shift < 1:
            raise ConfigError("data.jitter_scale must be 0 < min <= max and data.jitter_shift "
                              "in [0, 1)")
        if not 0.5 <= self.scale_jitter[0] <= self.scale_jitter[1] <= 2:
            raise ConfigError("data.scale_jitter must be 0.5 <= min <= max <= 2")
        if not 0 <= self.hflip_prob <= 1:
            raise ConfigError("data.hflip_prob must be in [0, 1]")
        if self.overlay.targets_per_image[1] < 1:
            raise ConfigError("data.overlay.targets_per_image must allow >= 1 target")


@dataclass
class ClassPool:
    """Images and class-labelled target boxes to cut windows from.

    Attributes:
        images: uint8 (M, H, W) images.
        image_index: int64 (N,) image of each sample.
        boxes: float32 (N, 4) xyxy boxes (pixel edges) before jitter.
        labels: int64 (N,) index into ``classes``.
        classes: class names.
    """

    images: np.ndarray
    image_index: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def counts(self) -> dict[str, int]:
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.classes)}


def open_bank(cfg: BoxCalDataConfig) -> Any:
    """The configured signature bank, or a toy bank of three classes when ``cfg.bank`` is
    None."""
    if cfg.bank:
        from sar_atd_training.simulator.bank import SignatureBank

        return SignatureBank.open(cfg.bank, verify="size")
    from sar_atd_training.overlay import toybank

    return toybank.make_toy_bank(ood=cfg.overlay.ood_per_image[1] > 0)


def bank_classes(bank: Any) -> tuple[str, ...]:
    """Sorted target class names of ``bank`` (the classifier's output order)."""
    return tuple(sorted({r.class_name for r in bank.records if r.kind == "target"}))


def build_pipeline(cfg: BoxCalDataConfig, bank: Any, device: str = "cpu") -> Any:
    """The overlay pipeline drawing the split's training records (targets and OOD objects)."""
    from sar_atd_training.overlay import OverlayPipeline
    from sar_atd_training.segmentation.data import background_set
    from sar_atd_training.trainer.data import split_training_records

    if cfg.split_seed is not None:
        records, ood = split_training_records(bank, int(cfg.split_seed))
    else:
        records = bank.select(kind="target")
        ood = np.concatenate([bank.select(kind="tree"), bank.select(kind="house")])
    ood = np.asarray(ood, np.int64)
    log.info("box-calibrator data: %d target and %d OOD records", len(records), ood.size)
    backgrounds = background_set(cfg.backgrounds, cfg.generated_backgrounds,
                                 cfg.background_size, cfg.background_seed).materialise()
    return OverlayPipeline(cfg.overlay, bank, backgrounds, device=device,
                           record_indices=records, ood_indices=ood if ood.size else None)


def generate_pool(cfg: BoxCalDataConfig, n_images: int, seed: int, pipeline: Any,
                  classes: tuple[str, ...], progress: bool = False) -> ClassPool:
    """``n_images`` overlay images and their targets' boxes and classes, deterministic by
    ``seed``."""
    from tqdm import tqdm

    g = torch.Generator().manual_seed(int(seed))
    ims: list[np.ndarray] = []
    idx: list[int] = []
    boxes: list[np.ndarray] = []
    labels: list[int] = []
    with tqdm(total=n_images, desc="box-calibrator images", disable=not progress,
              leave=False) as bar:
        while len(ims) < n_images:
            for s in pipeline.generate(min(cfg.generation_batch, n_images - len(ims)), g):
                k = len(ims)
                ims.append(s.image.cpu().numpy())
                names = [o["class_name"] for o in s.meta["objects"] if o["is_target"]]
                tb = s.boxes.numpy().reshape(-1, 4)
                if len(names) != len(tb):
                    raise RuntimeError(f"{len(tb)} target boxes for {len(names)} targets")
                for b, c in zip(tb, names, strict=True):
                    idx.append(k)
                    boxes.append(b)
                    labels.append(classes.index(c))
            bar.update(len(ims) - bar.n)
    return ClassPool(images=np.stack(ims), image_index=np.asarray(idx, np.int64),
                     boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                     labels=np.asarray(labels, np.int64), classes=classes)


def jitter_boxes(boxes: np.ndarray, cfg: BoxCalDataConfig, rng: np.random.Generator
                 ) -> np.ndarray:
    """Random centre shift (share of the side) and per-axis side scale of each box."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    lo, hi = cfg.jitter_scale
    scale = lo + (hi - lo) * rng.random((len(b), 2))
    d = (rng.random((len(b), 2)) * 2 - 1) * cfg.jitter_shift
    cx, cy = cx + d[:, 0] * w, cy + d[:, 1] * h
    w, h = np.maximum(w * scale[:, 0], 4), np.maximum(h * scale[:, 1], 4)
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).astype(np.float32)


def windows_of(pool: ClassPool, sel: np.ndarray, window: int, cfg: BoxCalDataConfig,
               rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (B, S, S) windows and box masks of pool samples ``sel``; with ``rng``: jittered
    boxes and random cross-range mirrors (training), else the boxes as they are."""
    from sar_atd.verifier import extract_crops

    boxes = pool.boxes[sel]
    if rng is not None:
        boxes = jitter_boxes(boxes, cfg, rng)
    lo, hi = cfg.scale_jitter
    scaled = rng is not None and hi > lo
    cut = int(np.ceil(window / lo)) if scaled else window  # covers the smallest scale
    crops = np.empty((len(sel), cut, cut), np.uint8)
    masks = np.empty_like(crops)
    img_of = pool.image_index[sel]
    for i in np.unique(img_of):
        at = np.nonzero(img_of == i)[0]
        crops[at], masks[at] = extract_crops(pool.images[int(i)], boxes[at], cut)
    if scaled:
        import cv2

        assert rng is not None
        out_c = np.empty((len(sel), window, window), np.uint8)
        out_m = np.empty_like(out_c)
        for j, s in enumerate(lo + (hi - lo) * rng.random(len(sel))):
            n = max(window, int(round(cut * s)))
            o = (n - window) // 2
            out_c[j] = cv2.resize(crops[j], (n, n), interpolation=cv2.INTER_LINEAR)[
                o:o + window, o:o + window]
            out_m[j] = cv2.resize(masks[j], (n, n), interpolation=cv2.INTER_NEAREST)[
                o:o + window, o:o + window]
        crops, masks = out_c, out_m
    if rng is not None:
        flip = rng.random(len(sel)) < cfg.hflip_prob
        crops[flip], masks[flip] = crops[flip, :, ::-1], masks[flip, :, ::-1]
    return crops, masks
