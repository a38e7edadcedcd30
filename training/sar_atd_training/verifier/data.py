"""Synthetic verifier samples: boxes on targets (positives), on simulated trees/houses and on
bright clutter (negatives), in overlay-pipeline images.

The images come from the overlay pipeline with the detector recipe's domain randomisation
(``training/configs/default_v3.yaml``'s ``data.overlay`` block: wide rendering, noise, 1-3
targets) and OOD objects of kind 'tree'/'house' placed unlabelled. With ``split_seed`` set,
only the training records of that azimuth-sector split are drawn (targets and OOD objects
alike), so the held-out sectors that ``sar-atd testset build ood --split-seed 0`` draws from
stay unseen; ``exclude_ood_kinds`` leaves whole OOD kinds out (to measure generalisation to
an unseen kind). Backgrounds are generated clutter scenes from ``background_seed`` (the test
sets use seed 1000 and up).

A pool of images is drawn once; training crops are cut from it with a random box jitter
(the detector's boxes are not the ground truth) and a cross-range mirror. With
``detector`` set, the detector's own detections on the same images (down to its score
floor) are added as samples labelled by what they hit (:func:`label_detections`): the crop
distribution the verifier sees at test time, hard negatives on trees, houses and clutter
included; these boxes are used as they are (mirror only, no jitter).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch

from sar_atd.errors import ConfigError
from sar_atd_training.overlay.pipeline import OverlayConfig

log = logging.getLogger(__name__)

KINDS = ("target", "tree", "house", "clutter")
"""Sample kinds; only 'target' is a positive."""


def _default_overlay() -> OverlayConfig:
    return OverlayConfig(image_size=320, targets_per_image=(1, 3), ood_per_image=(1, 3),
                         return_masks=False)


@dataclass(frozen=True)
class VerifierDataConfig:
    """Where verifier samples come from.

    Attributes:
        bank: signature bank folder (``sar-atd simulate``, with trees and houses); None: a
            toy bank with toy trees and houses made on the fly (tests, smoke runs).
        split_seed: azimuth-sector split whose training records are used (None: all).
        exclude_ood_kinds: OOD kinds never drawn (e.g. ``[house]``).
        generated_backgrounds: generated clutter scenes (when ``backgrounds`` is None).
        background_seed: seed of the first generated scene.
        background_size: (height, width) of each generated scene, pixels.
        backgrounds: folder of background files, or None for generated clutter.
        images: training pool size (images drawn once).
        val_images: validation images (their own seed) for the threshold and the record.
        generation_batch: images per overlay-pipeline call.
        clutter_per_image: clutter negatives per image: boxes of target-like sizes centred
            on bright clutter pixels away from every placed object.
        jitter_shift: box jitter, centre shift as a share of the box side (uniform +-), the
            same for every kind.
        jitter_scale: (min, max) box side scale (uniform, per side).
        hflip_prob: probability of a cross-range mirror of a crop.
        overlay: overlay-pipeline randomisation (the detector recipe's).
        detector: model file whose detections on the pool images become extra samples
            (None: ground-truth boxes only).
        detector_iou: IoU at which a detection hits an object (or its centre inside it),
            as the OOD scores count hits.
        detector_images: pool images the detector runs on (the first ones; None: all;
            validation images: all).
    """

    bank: str | None = None
    split_seed: int | None = 0
    exclude_ood_kinds: tuple[str, ...] = ()
    generated_backgrounds: int = 12
    background_seed: int = 0
    background_size: tuple[int, int] = (640, 640)
    backgrounds: str | None = None
    images: int = 400
    val_images: int = 80
    generation_batch: int = 8
    clutter_per_image: int = 3
    jitter_shift: float = 0.2
    jitter_scale: tuple[float, float] = (0.7, 1.3)
    hflip_prob: float = 0.5
    overlay: OverlayConfig = field(default_factory=_default_overlay)
    detector: str | None = None
    detector_iou: float = 0.25
    detector_images: int | None = None

    def __post_init__(self) -> None:
        bad = sorted(set(self.exclude_ood_kinds) - {"tree", "house"})
        if bad:
            raise ConfigError(f"data.exclude_ood_kinds: unknown kind(s) {bad}; known: "
                              "['house', 'tree']")
        if self.images < 1 or self.val_images < 1 or self.generation_batch < 1:
            raise ConfigError("data.images, data.val_images and data.generation_batch must "
                              "be >= 1")
        if self.clutter_per_image < 0:
            raise ConfigError("data.clutter_per_image must be >= 0")
        lo, hi = self.jitter_scale
        if not 0 < lo <= hi or not 0 <= self.jitter_shift < 1:
            raise ConfigError("data.jitter_scale must be 0 < min <= max and data.jitter_shift "
                              "in [0, 1)")


@dataclass
class SamplePool:
    """Images and labelled boxes to cut verifier crops from.

    Attributes:
        images: uint8 (M, H, W) images.
        image_index: int64 (N,) image of each sample.
        boxes: float32 (N, 4) xyxy boxes (pixel edges) before jitter.
        kinds: int64 (N,) index into :data:`KINDS`.
        scores: float32 (N,) detector score of detector boxes, NaN for ground-truth boxes
            (None: all ground truth).
    """

    images: np.ndarray
    image_index: np.ndarray
    boxes: np.ndarray
    kinds: np.ndarray
    scores: np.ndarray | None = None

    @property
    def from_detector(self) -> np.ndarray:
        """bool (N,): the sample is a detector box (used without jitter)."""
        if self.scores is None:
            return np.zeros(len(self.kinds), bool)
        return np.isfinite(self.scores)

    @property
    def labels(self) -> np.ndarray:
        """float32 (N,) 1 for targets, 0 otherwise."""
        return (self.kinds == KINDS.index("target")).astype(np.float32)

    def counts(self) -> dict[str, int]:
        return {k: int((self.kinds == i).sum()) for i, k in enumerate(KINDS)}


def build_pipeline(cfg: VerifierDataConfig, device: str = "cpu", bank: Any = None) -> Any:
    """The overlay pipeline drawing the split's training records (OOD kinds filtered);
    ``bank`` (an opened bank) replaces ``cfg.bank``."""
    from sar_atd_training.overlay import OverlayPipeline
    from sar_atd_training.segmentation.data import background_set
    from sar_atd_training.trainer.data import split_training_records

    if bank is None and cfg.bank:
        from sar_atd_training.simulator.bank import SignatureBank

        bank = SignatureBank.open(cfg.bank, verify="size")
    elif bank is None:
        from sar_atd_training.overlay import toybank

        bank = toybank.make_toy_bank(ood=True)
    if cfg.split_seed is not None:
        records, ood = split_training_records(bank, int(cfg.split_seed))
    else:
        records = bank.select(kind="target")
        ood = np.concatenate([bank.select(kind="tree"), bank.select(kind="house")])
    ood = np.asarray([i for i in np.asarray(ood, np.int64)
                      if bank.records[int(i)].kind not in cfg.exclude_ood_kinds], np.int64)
    if cfg.overlay.ood_per_image[1] > 0 and ood.size == 0:
        raise ConfigError(f"no OOD records left to draw (bank {cfg.bank}, excluded "
                          f"{list(cfg.exclude_ood_kinds)}): simulate the bank with its "
                          "trees and houses")
    kinds = sorted({bank.records[int(i)].kind for i in ood})
    log.info("verifier data: %d target and %d OOD records (%s)", len(records), ood.size, kinds)
    backgrounds = background_set(cfg.backgrounds, cfg.generated_backgrounds,
                                 cfg.background_size, cfg.background_seed).materialise()
    return OverlayPipeline(cfg.overlay, bank, backgrounds, device=device,
                           record_indices=records,
                           ood_indices=ood if ood.size else None)


def clutter_boxes(image: np.ndarray, avoid: np.ndarray, sizes: np.ndarray, n: int,
                  rng: np.random.Generator, margin: int = 4) -> np.ndarray:
    """``n`` boxes centred on bright clutter away from the ``avoid`` boxes.

    Args:
        image: uint8 (H, W).
        avoid: float (K, 4) boxes (placed objects) whose dilated area holds no centre.
        sizes: float (J, 2) (w, h) box sizes to draw from (J >= 1).
        n: boxes wanted (fewer when the image has too little free clutter).
        rng: random generator.
        margin: dilation of the avoided boxes, pixels.

    Returns:
        float32 (<= n, 4) xyxy boxes.
    """
    h, w = image.shape
    blur = cv2.blur(image.astype(np.float32), (5, 5))
    free = np.ones((h, w), bool)
    for b in np.asarray(avoid, np.float64).reshape(-1, 4):
        x0, y0 = max(int(b[0]) - margin, 0), max(int(b[1]) - margin, 0)
        x1, y1 = min(int(np.ceil(b[2])) + margin, w), min(int(np.ceil(b[3])) + margin, h)
        free[y0:y1, x0:x1] = False
    ys, xs = np.nonzero(free)
    if n <= 0 or ys.size == 0 or len(sizes) == 0:
        return np.zeros((0, 4), np.float32)
    v = blur[ys, xs]
    bright = v >= np.quantile(v, 0.98)  # half bright clutter, half anywhere free
    out = []
    for k in range(n):
        pool = np.nonzero(bright)[0] if k % 2 == 0 and bright.any() else np.arange(ys.size)
        j = int(pool[rng.integers(0, pool.size)])
        bw, bh = sizes[rng.integers(0, len(sizes))]
        cx, cy = xs[j] + 0.5, ys[j] + 0.5
        out.append([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
    return np.asarray(out, np.float32).reshape(-1, 4)


def generate_pool(cfg: VerifierDataConfig, n_images: int, seed: int, pipeline: Any,
                  progress: bool = False) -> SamplePool:
    """``n_images`` overlay images and their labelled boxes, deterministic by ``seed``."""
    from tqdm import tqdm

    g = torch.Generator().manual_seed(int(seed))
    rng = np.random.default_rng(seed)
    ims: list[np.ndarray] = []
    idx: list[int] = []
    boxes: list[np.ndarray] = []
    kinds: list[int] = []
    sizes: list[np.ndarray] = []
    with tqdm(total=n_images, desc="verifier images", disable=not progress, leave=False) as bar:
        while len(ims) < n_images:
            for s in pipeline.generate(min(cfg.generation_batch, n_images - len(ims)), g):
                img = s.image.cpu().numpy()
                k = len(ims)
                ims.append(img)
                tb = s.boxes.numpy().reshape(-1, 4)
                ob = s.ood_boxes.numpy().reshape(-1, 4)
                okinds = [o["kind"] for o in s.meta["objects"] if not o["is_target"]]
                for b in tb:
                    idx.append(k)
                    boxes.append(b)
                    kinds.append(KINDS.index("target"))
                for b, kd in zip(ob, okinds):
                    idx.append(k)
                    boxes.append(b)
                    kinds.append(KINDS.index(kd))
                if len(tb):
                    sizes.append(np.stack([tb[:, 2] - tb[:, 0], tb[:, 3] - tb[:, 1]], 1))
                sz = np.concatenate(sizes) if sizes else np.array([[32.0, 28.0]])
                for b in clutter_boxes(img, np.concatenate([tb, ob]), sz,
                                       cfg.clutter_per_image, rng):
                    idx.append(k)
                    boxes.append(b)
                    kinds.append(KINDS.index("clutter"))
            bar.update(len(ims) - bar.n)
    return SamplePool(images=np.stack(ims), image_index=np.asarray(idx, np.int64),
                      boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                      kinds=np.asarray(kinds, np.int64))


def label_detections(det_boxes: np.ndarray, gt_boxes: np.ndarray, gt_kinds: np.ndarray,
                     iou_threshold: float = 0.25) -> np.ndarray:
    """Kind of each detection by the placed object it hits.

    Args:
        det_boxes: float (N, 4) detection boxes.
        gt_boxes: float (M, 4) placed-object boxes (targets, trees, houses; clutter entries
            are ignored).
        gt_kinds: int (M,) index into :data:`KINDS` of each placed object.
        iou_threshold: a hit is IoU >= it or the detection centre inside the object.

    Returns:
        int64 (N,): 'target' if it hits a target and no OOD object, the OOD kind if it hits
        OOD objects of one kind and no target, 'clutter' if it hits nothing, -1 if it hits
        objects of several kinds (ambiguous: left out).
    """
    from sar_atd_training.testsets.ood import hits

    d = np.asarray(det_boxes, np.float32).reshape(-1, 4)
    g = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    k = np.asarray(gt_kinds, np.int64).reshape(-1)
    out = np.full(len(d), KINDS.index("clutter"), np.int64)
    hit_kinds = [(i, hits(d, g[k == i], iou_threshold)) for i in range(len(KINDS))
                 if KINDS[i] != "clutter" and (k == i).any()]
    n_hit = np.zeros(len(d), np.int64)
    for i, h in hit_kinds:
        out[h] = i
        n_hit += h
    out[n_hit > 1] = -1
    return out


def detector_pool(pool: SamplePool, detector: Any, iou_threshold: float = 0.25,
                  progress: bool = False, max_images: int | None = None) -> SamplePool:
    """``pool`` plus the detector's detections on its first ``max_images`` images (None:
    all), labelled by :func:`label_detections` (ambiguous ones left out), with their
    scores."""
    from tqdm import tqdm

    idx, boxes, kinds, scores = [], [], [], []
    clutter = KINDS.index("clutter")
    n_img = len(pool.images) if max_images is None else min(max_images, len(pool.images))
    for m in tqdm(range(n_img), desc="detector boxes", disable=not progress,
                  leave=False):
        det = detector.detect(pool.images[m])
        if not len(det):
            continue
        own = (pool.image_index == m) & (pool.kinds != clutter)
        lab = label_detections(det.boxes, pool.boxes[own], pool.kinds[own], iou_threshold)
        ok = lab >= 0
        idx.append(np.full(int(ok.sum()), m, np.int64))
        boxes.append(det.boxes[ok])
        kinds.append(lab[ok])
        scores.append(det.scores[ok])
    base = pool.scores if pool.scores is not None else np.full(len(pool.kinds), np.nan,
                                                                np.float32)
    return SamplePool(images=pool.images,
                      image_index=np.concatenate([pool.image_index, *idx]),
                      boxes=np.concatenate([pool.boxes, *boxes]).astype(np.float32),
                      kinds=np.concatenate([pool.kinds, *kinds]),
                      scores=np.concatenate([base, *scores]).astype(np.float32))


def jitter_boxes(boxes: np.ndarray, cfg: VerifierDataConfig, rng: np.random.Generator
                 ) -> np.ndarray:
    """Random centre shift and side scale per box, the same law for every kind (a kind-
    dependent jitter would let the network tell kinds apart by how well the box fits)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    lo, hi = cfg.jitter_scale
    scale = lo + (hi - lo) * rng.random((len(b), 2))
    d = (rng.random((len(b), 2)) * 2 - 1) * cfg.jitter_shift
    cx, cy = cx + d[:, 0] * w, cy + d[:, 1] * h
    w, h = np.maximum(w * scale[:, 0], 4), np.maximum(h * scale[:, 1], 4)
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).astype(np.float32)


def crops_of(pool: SamplePool, sel: np.ndarray, crop_size: int, cfg: VerifierDataConfig,
             rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (B, S, S) crops and masks of pool samples ``sel``; with ``rng``: jittered
    ground-truth boxes (detector boxes as they are) and random cross-range mirrors
    (training), else the boxes as they are."""
    from sar_atd.verifier import extract_crops

    boxes = pool.boxes[sel]
    if rng is not None:
        jit = jitter_boxes(boxes, cfg, rng)
        gt = ~pool.from_detector[sel]
        boxes = np.where(gt[:, None], jit, boxes)
    crops = np.empty((len(sel), crop_size, crop_size), np.uint8)
    masks = np.empty_like(crops)
    img_of = pool.image_index[sel]
    for i in np.unique(img_of):  # one call per image: its fill level is computed once
        at = np.nonzero(img_of == i)[0]
        crops[at], masks[at] = extract_crops(pool.images[int(i)], boxes[at], crop_size)
    if rng is not None:
        flip = rng.random(len(sel)) < cfg.hflip_prob
        crops[flip], masks[flip] = crops[flip, :, ::-1], masks[flip, :, ::-1]
    return crops, masks
