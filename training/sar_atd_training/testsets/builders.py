"""The paper's four test sets (section II.C), built deterministically from a seed.

* ``real-in-background``: real targets and shadows cut from real chips with the segmenter
  (:mod:`.extract`) pasted into held-out background crops, boxes from the predicted target
  masks (and, as a check, from the chips' SARBake masks);
* ``synthetic-in-background``: simulator targets from held-out azimuth sectors overlaid by the
  overlay pipeline into held-out backgrounds;
* ``patchwork``: 4x4 patchworks of real chips (16-pixel linear fade), SARBake boxes, plus the
  segmenter's boxes when a segmenter is given;
* ``ood``: simulated out-of-distribution objects overlaid into backgrounds (which also hold
  buildings, fences, poles and tree lines), with or without targets: trees and houses by
  default, or the kinds ``ood_kinds`` names (``all``: every OOD kind the bank holds, e.g. the
  man-made clutter kinds container, wall, lamp_posts); the OOD objects are recorded
  (``ood.json``, COCO, category "ood", each annotation with its ``kind``) so detections on
  them are counted, per kind too.

Every set is a folder: ``annotations.json`` + ``images/`` (COCO, the targets: what
``sar-atd eval`` scores), ``manifest.json`` (kind, seed, configuration, per image the source
of every object and both kinds of boxes) and, per kind, ``ood.json`` or
``annotations_sarbake.json`` / ``annotations_segmenter.json``.

Rendering: all sets are rendered the same way, like the real MSTAR chips (linear magnitude,
the image median at 8-bit level 30; ``render_gamma`` / ``render_level`` change it), through
:func:`sar_atd.sar.lut.power_law_render`. Held-out backgrounds: generated clutter scenes from
``background_seed`` (default 1000; the training recipes use seeds 0-11) or a folder.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sar_atd.errors import ConfigError, SarAtdError

log = logging.getLogger(__name__)

KINDS = ("real-in-background", "synthetic-in-background", "patchwork", "ood")


class TestSetError(SarAtdError, ValueError):
    """Inputs cannot make the requested test set (missing or inconsistent)."""

    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class TestSetConfig:
    """What to build.

    Attributes:
        kind: one of :data:`KINDS`.
        n: images.
        seed: seed of every random choice.
        image_size: side of the (square) images, pixels (overlay sets).
        targets_per_image: (min, max) targets per image (overlay sets; (0, 0) for an OOD set
            without targets).
        ood_per_image: (min, max) OOD objects per image (``ood`` only).
        ood_kinds: OOD object kinds placed (``ood`` only; ``simulator.models.OBJECT_NAMES``);
            empty: tree and house (the set's meaning before other kinds existed, so its
            scores stay comparable); ``("all",)``: every OOD kind the bank holds. Each named
            kind must have held-out records in the bank.
        chips: folder of real chips (+ SARBake masks) for ``real-in-background`` and
            ``patchwork``.
        segmenter: segmenter checkpoint (required by ``real-in-background`` unless
            ``cut_with`` is ``sarbake``).
        cut_with: ``segmenter`` (the paper's way) or ``sarbake`` (oracle cut-outs from the
            chips' SARBake masks, to measure what segmentation errors cost).
        bank: signature bank folder (``synthetic-in-background``, ``ood``).
        backgrounds: background folder, or None for generated clutter.
        generated_backgrounds: generated scenes (when ``backgrounds`` is None).
        background_seed: seed of the first generated scene.
        background_size: (height, width) of generated scenes.
        split_seed: seed of the azimuth-sector split whose test records are used.
        chip_gamma: amplitude exponent of the chips' 8-bit rendering (1 = linear).
        render_gamma: amplitude exponent of the rendering of the built images.
        render_level: 8-bit level of the image median amplitude.
        min_gap_px: minimum gap between pasted objects.
        noise_db: thermal noise range of the overlay pipeline (dB).
    """

    __test__ = False  # not a pytest test class

    kind: str
    n: int = 50
    seed: int = 0
    image_size: int = 640
    targets_per_image: tuple[int, int] = (1, 3)
    ood_per_image: tuple[int, int] = (1, 3)
    ood_kinds: tuple[str, ...] = ()
    chips: str | None = None
    segmenter: str | None = None
    cut_with: str = "segmenter"
    bank: str | None = None
    backgrounds: str | None = None
    generated_backgrounds: int = 4
    background_seed: int = 1000
    background_size: tuple[int, int] = (1478, 1784)
    split_seed: int = 0
    chip_gamma: float = 1.0
    render_gamma: float = 1.0
    render_level: float = 30.0
    min_gap_px: int = 8
    noise_db: tuple[float, float] = (-43.0, -33.0)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown test set {self.kind!r}; choose from {list(KINDS)}")
        if self.n < 1:
            raise ConfigError(f"n must be >= 1, got {self.n}")
        if self.image_size < 64:
            raise ConfigError(f"image_size must be >= 64, got {self.image_size}")
        for name in ("targets_per_image", "ood_per_image"):
            lo, hi = getattr(self, name)
            if lo < 0 or hi < lo:
                raise ConfigError(f"{name} must be 0 <= min <= max, got {(lo, hi)}")
        if self.ood_kinds and self.ood_kinds != ("all",):
            from sar_atd_training.simulator.models import check_object_kinds

            try:
                check_object_kinds(self.ood_kinds, "ood_kinds")
            except ValueError as err:
                raise ConfigError(f"{err} (or 'all')") from None
        if self.ood_kinds and self.kind != "ood":
            raise ConfigError("ood_kinds applies to the ood set only")
        if self.cut_with not in ("segmenter", "sarbake"):
            raise ConfigError(f"cut_with must be 'segmenter' or 'sarbake', got "
                              f"{self.cut_with!r}")
        if self.kind == "real-in-background" and not (
                self.chips and (self.segmenter or self.cut_with == "sarbake")):
            raise TestSetError("real-in-background needs --chips (real chips) and "
                               "--segmenter (a segmenter.pt) to cut the targets out")
        if self.kind == "real-in-background" and self.targets_per_image[1] < 1:
            raise TestSetError("real-in-background needs at least one target per image")
        if self.kind == "patchwork" and not self.chips:
            raise TestSetError("patchwork needs --chips (real chips with SARBake masks)")
        if self.kind in ("synthetic-in-background", "ood") and not self.bank:
            raise TestSetError(f"{self.kind} needs --bank (a signature bank from "
                               "`sar-atd simulate`)")
        if self.kind == "synthetic-in-background" and self.targets_per_image[1] < 1:
            raise TestSetError("synthetic-in-background needs at least one target per image")
        if self.kind == "ood" and self.ood_per_image[1] < 1:
            raise TestSetError("ood needs at least one OOD object per image (ood_per_image)")
        if not (self.render_gamma > 0 and 0 < self.render_level <= 255 and self.chip_gamma > 0):
            raise ConfigError("render_gamma and chip_gamma must be > 0, render_level in "
                              "(0, 255]")


@dataclass
class BuiltImage:
    """One test image: uint8 (H, W), target boxes float32 (M, 4), per-object records."""

    name: str
    image: np.ndarray
    boxes: np.ndarray
    labels: list[str] = field(default_factory=list)
    ood_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    ood_kinds: list[str] = field(default_factory=list)
    check_boxes: np.ndarray | None = None
    objects: list[dict[str, Any]] = field(default_factory=list)
    chips: list[str] = field(default_factory=list)


def render(amplitude: np.ndarray | torch.Tensor, gamma: float, level: float) -> np.ndarray:
    """8-bit rendering: the median amplitude at ``level``, amplitude exponent ``gamma``."""
    from sar_atd.sar.lut import power_law_render

    a = np.asarray(amplitude, np.float32)
    med = float(np.median(a))
    ref = max(med, 1e-12) ** gamma * 255.0 / level
    return power_law_render(a, gamma, ref)


def _backgrounds(cfg: TestSetConfig):  # noqa: ANN202 - lazy import of the clutter package
    from sar_atd_training.segmentation.data import background_set

    bgs = background_set(cfg.backgrounds, cfg.generated_backgrounds, cfg.background_size,
                         cfg.background_seed)
    if len(bgs) == 0:
        raise TestSetError(f"no backgrounds in {cfg.backgrounds}")
    for i in range(len(bgs)):
        hb, wb = bgs[i].shape[-2:]
        if hb < cfg.image_size or wb < cfg.image_size:
            raise TestSetError(f"background {bgs.names[i]!r} is {hb} x {wb}, smaller than "
                               f"the {cfg.image_size} px images")
    return bgs


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- real targets
def load_cutouts(cfg: TestSetConfig, progress: bool = False) -> list:
    """Cut-outs of every real chip (sorted by name) with the segmenter."""
    from tqdm import tqdm

    from sar_atd.sar.chips import list_chips, read_chip, read_sarbake_mask
    from sar_atd_training.segmentation.model import Segmenter
    from sar_atd_training.testsets.extract import make_cutout

    root = Path(cfg.chips or "")
    if not root.is_dir():
        raise TestSetError(f"chips folder not found: {root}")
    recs = list_chips(root)
    if not recs:
        raise TestSetError(f"no chips under {root}")
    seg = Segmenter.load(cfg.segmenter or "") if cfg.cut_with == "segmenter" else None
    rng = np.random.default_rng([cfg.seed, 1])
    # only as many chips as the set can use (segmenting all 3,671 costs minutes on a CPU)
    need = min(len(recs), cfg.n * cfg.targets_per_image[1] * 2)
    order = np.sort(rng.choice(len(recs), need, replace=False))
    cuts = []
    for i in tqdm(order, desc="segment chips", disable=not progress, leave=False):
        r = recs[int(i)]
        chip = read_chip(r.image_path)
        sb = read_sarbake_mask(r.mask_path, shape=chip.shape) if r.mask_path else None
        if seg is None and sb is None:
            raise TestSetError(f"cut_with sarbake: chip {r.image_path} has no SARBake mask")
        labels = seg.predict([chip])[0] if seg is not None else sb
        c = make_cutout(f"{r.class_name}/{r.image_path.stem}", r.class_name, chip, labels,
                        sb, cfg.chip_gamma)
        if c is not None:
            cuts.append(c)
    if not cuts:
        raise TestSetError("the segmenter found no target in the sampled chips")
    return cuts


def _place(boxes_hw: list[tuple[int, int]], size: int, gap: int,
           rng: np.random.Generator, tries: int = 200) -> list[tuple[int, int]]:
    """Top-left (row, col) of non-overlapping (h, w) rectangles inside a size x size image."""
    placed: list[tuple[int, int, int, int]] = []
    out = []
    for h, w in boxes_hw:
        if h > size or w > size:
            raise TestSetError(f"an object of {h} x {w} px does not fit a {size} px image")
        for _ in range(tries):
            r, c = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
            if all(r >= pr + ph + gap or pr >= r + h + gap or c >= pc + pw + gap
                   or pc >= c + w + gap for pr, pc, ph, pw in placed):
                placed.append((r, c, h, w))
                out.append((r, c))
                break
        else:
            raise TestSetError(f"cannot place {len(boxes_hw)} objects without overlap in a "
                               f"{size} px image; lower targets_per_image")
    return out


def build_real_in_background(cfg: TestSetConfig, progress: bool = False) -> list[BuiltImage]:
    """Test set 1: real targets (segmenter cut-outs) pasted into held-out backgrounds."""
    from sar_atd_training.testsets.extract import paste_cutout

    cuts = load_cutouts(cfg, progress)
    bgs = _backgrounds(cfg)
    rng = np.random.default_rng([cfg.seed, 2])
    n = cfg.image_size
    out = []
    for k in range(cfg.n):
        bi = int(rng.integers(0, len(bgs)))
        bg = bgs[bi]
        hb, wb = bg.shape[-2:]
        r0, c0 = int(rng.integers(0, hb - n + 1)), int(rng.integers(0, wb - n + 1))
        canvas = np.abs(np.asarray(bg[r0:r0 + n, c0:c0 + n])).astype(np.float32)
        m = int(rng.integers(cfg.targets_per_image[0], cfg.targets_per_image[1] + 1))
        picks = [cuts[int(j)] for j in rng.choice(len(cuts), m, replace=False)]
        sboxes = [c.support_box.astype(int) for c in picks]
        pos = _place([(b[3] - b[1], b[2] - b[0]) for b in sboxes], n, cfg.min_gap_px, rng)
        boxes, checks, objs = [], [], []
        for c, sb, (r, cc) in zip(picks, sboxes, pos):
            row, col = r - sb[1], cc - sb[0]  # chip top-left in the image (may be < 0)
            h, w = c.amplitude.shape
            # paste through a padded canvas: the chip may hang over the image border
            pad = max(h, w)
            big = np.pad(canvas, pad, mode="reflect")
            paste_cutout(big, c, row + pad, col + pad)
            canvas = big[pad:pad + n, pad:pad + n]
            off = np.array([col, row, col, row], np.float32)
            tb = c.target_box + off
            boxes.append(tb)
            chk = c.sarbake_box + off if c.sarbake_box is not None else None
            checks.append(chk if chk is not None else np.full(4, np.nan, np.float32))
            objs.append({"chip": c.name, "class": c.class_name, "chip_row": int(row),
                         "chip_col": int(col), "box": tb.tolist(),
                         "sarbake_box": None if chk is None else chk.tolist()})
        out.append(BuiltImage(
            name=f"real_bg_{k:04d}", image=render(canvas, cfg.render_gamma, cfg.render_level),
            boxes=np.array(boxes, np.float32).reshape(-1, 4),
            labels=[c.class_name for c in picks],
            check_boxes=np.array(checks, np.float32).reshape(-1, 4), objects=objs,
            chips=[c.name for c in picks]))
        out[-1].objects.insert(0, {"background": bgs.names[bi], "crop": [r0, c0]})
    return out


# --------------------------------------------------------------------------- overlay sets
def _overlay_set(cfg: TestSetConfig, with_ood: bool, prefix: str) -> list[BuiltImage]:
    from sar_atd_training.overlay import OverlayConfig, OverlayPipeline
    from sar_atd_training.overlay.pipeline import ood_records
    from sar_atd_training.overlay.splits import make_split
    from sar_atd_training.simulator.bank import SignatureBank

    bank = SignatureBank.open(cfg.bank or "", verify="size")
    kinds = _ood_kinds(cfg, bank) if with_ood else ()
    bgs = _backgrounds(cfg)
    split = make_split(bank, seed=cfg.split_seed)
    test = np.asarray(split.test_records, np.int64)
    targets = np.array([i for i in test if bank.records[int(i)].kind == "target"], np.int64)
    ood = ood_records(bank, kinds, among=test) if with_ood else np.zeros(0, np.int64)
    if with_ood and ood.size == 0:
        raise TestSetError(f"bank {cfg.bank} holds no held-out tree/house records: simulate "
                           "it with the OOD objects (without --no-objects)")
    if cfg.targets_per_image[1] > 0 and targets.size == 0:
        raise TestSetError(f"bank {cfg.bank} holds no held-out target records")
    ov = OverlayConfig(
        image_size=cfg.image_size, targets_per_image=cfg.targets_per_image,
        ood_per_image=cfg.ood_per_image if with_ood else (0, 0),
        noise_db=cfg.noise_db, min_gap_px=cfg.min_gap_px,
        render_gamma_range=(cfg.render_gamma, cfg.render_gamma), render_ref="quantile",
        render_ref_quantile_range=(0.5, 0.5),
        render_ref_level_range=(cfg.render_level, cfg.render_level), return_masks=False)
    pipe = OverlayPipeline(ov, bank, bgs, record_indices=targets if targets.size else None,
                           ood_indices=ood if ood.size else None)
    g = torch.Generator().manual_seed(int(cfg.seed))
    out = []
    for k in range(cfg.n):
        s = pipe.generate(1, g)[0]
        objs = [{"background": s.meta["background_name"], "crop": list(s.meta["crop"])}]
        objs += [dict(o) for o in s.meta["objects"]]
        out.append(BuiltImage(
            name=f"{prefix}_{k:04d}", image=s.image.cpu().numpy(),
            boxes=s.boxes.numpy().astype(np.float32),
            labels=[o["class_name"] for o in s.meta["objects"] if o["is_target"]],
            ood_boxes=s.ood_boxes.numpy().astype(np.float32), objects=objs,
            ood_kinds=[o["kind"] for o in s.meta["objects"] if not o["is_target"]]))
    return out


def _ood_kinds(cfg: TestSetConfig, bank: Any) -> tuple[str, ...]:
    """The OOD kinds of ``cfg`` resolved against ``bank`` (``all``: every OOD kind it holds,
    in bank order; empty stays empty: tree and house).

    Raises:
        TestSetError: a named kind the bank lacks, naming it and how to add it.
    """
    held = list(dict.fromkeys(r.kind for r in bank.records if r.kind != "target"))
    if cfg.ood_kinds == ("all",):
        if not held:
            raise TestSetError(f"bank {cfg.bank} holds no OOD objects: simulate it with them "
                               "(without --no-objects)")
        return tuple(held)
    missing = [k for k in cfg.ood_kinds if k not in held]
    if missing:
        raise TestSetError(f"bank {cfg.bank} has no {', '.join(repr(k) for k in missing)} "
                           f"records (it holds {held or 'no OOD objects'}): add them with "
                           f"`sar-atd simulate --out {cfg.bank} --add-objects "
                           f"{' '.join(missing)}`")
    return tuple(cfg.ood_kinds)


def build_synthetic_in_background(cfg: TestSetConfig, progress: bool = False
                                  ) -> list[BuiltImage]:
    """Test set 2: held-out synthetic targets in held-out backgrounds."""
    return _overlay_set(cfg, with_ood=False, prefix="synth_bg")


def build_ood(cfg: TestSetConfig, progress: bool = False) -> list[BuiltImage]:
    """Test set 4: trees and houses in backgrounds, with or without targets."""
    return _overlay_set(cfg, with_ood=True, prefix="ood")


def build_patchwork_set(cfg: TestSetConfig, progress: bool = False) -> list[BuiltImage]:
    """Test set 3: 4x4 patchworks of real chips, SARBake boxes (+ segmenter boxes)."""
    from sar_atd.sar.chips import list_chips, read_chip
    from sar_atd_training.evaluation.patchwork import (
        build_patchworks,
        fit_to_cell,
        patchwork_size,
    )

    root = Path(cfg.chips or "")
    if not root.is_dir():
        raise TestSetError(f"chips folder not found: {root}")
    pws = build_patchworks(root, n=cfg.n, seed=cfg.seed, progress=progress)
    seg = None
    if cfg.segmenter:
        from sar_atd_training.segmentation.model import Segmenter

        seg = Segmenter.load(cfg.segmenter)
    paths = {f"{r.class_name}/{r.image_path.stem}": r.image_path for r in list_chips(root)}
    cell, overlap, grid = 128, 16, 4  # build_patchworks' defaults
    if patchwork_size(grid, cell, overlap) != pws[0].image.shape[0]:
        raise TestSetError("patchwork geometry differs from the 4 x 128 px / 16 px layout")
    out = []
    for p in pws:
        checks = None
        if seg is not None:
            from sar_atd_training.testsets.extract import clean_labels, mask_box_xyxy

            cb = []
            for j, name in enumerate(p.chips):
                chip, _ = fit_to_cell(read_chip(paths[name]), None, cell)
                tgt, _ = clean_labels(seg.predict([chip])[0])
                if tgt.any():
                    r, c = divmod(j, grid)
                    off = np.array([c, r, c, r], np.float32) * (cell - overlap)
                    cb.append(mask_box_xyxy(tgt) + off)
            checks = np.array(cb, np.float32).reshape(-1, 4)
        out.append(BuiltImage(name=p.name, image=p.image, boxes=p.boxes.astype(np.float32),
                              labels=list(p.labels), check_boxes=checks, chips=list(p.chips)))
    return out


BUILDERS = {
    "real-in-background": build_real_in_background,
    "synthetic-in-background": build_synthetic_in_background,
    "patchwork": build_patchwork_set,
    "ood": build_ood,
}


def build_testset(cfg: TestSetConfig, progress: bool = False) -> list[BuiltImage]:
    """Build the images of ``cfg.kind`` (deterministic in ``cfg.seed``)."""
    return BUILDERS[cfg.kind](cfg, progress)


def _coco_boxes(images: list[BuiltImage], attr: str) -> list[Any]:
    from sar_atd.evalset import EvalImage

    out = []
    for it in images:
        b = getattr(it, attr)
        b = np.zeros((0, 4), np.float32) if b is None else b[np.isfinite(b).all(1)]
        out.append(EvalImage(it.name, it.image, b))
    return out


def _coco_json(items: list[Any], category: str, kinds: list[list[str]] | None = None) -> dict:
    """COCO document of ``items``' boxes in one category; ``kinds`` (per item, per box) adds
    a ``kind`` field to each annotation."""
    from sar_atd.boxes import xyxy_to_xywh

    images, anns = [], []
    for i, it in enumerate(items):
        h, w = it.image.shape
        images.append({"id": i + 1, "file_name": f"images/{it.name}.png", "width": int(w),
                       "height": int(h)})
        for j, b in enumerate(xyxy_to_xywh(np.asarray(it.boxes, np.float64).reshape(-1, 4))):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1,
                         "iscrowd": 0, "bbox": [float(v) for v in b],
                         "area": float(b[2] * b[3])})
            if kinds is not None:
                anns[-1]["kind"] = kinds[i][j]
    return {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": category}]}


def write_testset(images: list[BuiltImage], cfg: TestSetConfig, out: str | Path) -> Path:
    """Write images + ``annotations.json`` + ``manifest.json`` (+ per-kind extras) into a
    new folder ``out``, atomically (refused if ``out`` exists and is not empty)."""
    import dataclasses

    from sar_atd.atomic import atomic_dir, atomic_write_json
    from sar_atd.config import to_dict
    from sar_atd.evalset import write_coco_dataset
    from sar_atd_training.evaluation.runner import to_jsonable

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TestSetError(f"output folder {out} already exists: choose a new --out")
    info = {"kind": cfg.kind, "seed": cfg.seed, "n": cfg.n}
    with atomic_dir(out) as tmp:
        write_coco_dataset(images, tmp, info=info, overwrite=True)
        if cfg.kind == "ood":
            atomic_write_json(tmp / "ood.json", _coco_json(
                [dataclasses.replace(it, boxes=it.ood_boxes) for it in images], "ood",
                [it.ood_kinds or ["ood"] * len(it.ood_boxes) for it in images]))
        if any(it.check_boxes is not None for it in images):
            name = ("annotations_sarbake.json" if cfg.kind == "real-in-background"
                    else "annotations_segmenter.json")
            atomic_write_json(tmp / name, _coco_json(_coco_boxes(images, "check_boxes"),
                                                     "target"))
        manifest = {
            "format": "sar-atd-testset", "version": 1, "kind": cfg.kind,
            "config": to_dict(cfg),
            "segmenter_sha256": file_sha256(cfg.segmenter) if cfg.segmenter else None,
            "n_images": len(images), "n_targets": int(sum(len(it.boxes) for it in images)),
            "n_ood_objects": int(sum(len(it.ood_boxes) for it in images)),
            "images": [{"name": it.name, "boxes": it.boxes.tolist(),
                        "ood_boxes": it.ood_boxes.tolist(),
                        "check_boxes": None if it.check_boxes is None
                        else [[None if not np.isfinite(v) else float(v) for v in b]
                              for b in it.check_boxes],
                        "chips": it.chips, "objects": to_jsonable(it.objects)}
                       for it in images]}
        if cfg.kind in ("real-in-background", "patchwork") and any(
                it.check_boxes is not None for it in images):
            manifest["box_agreement"] = box_agreement(images)
        atomic_write_json(tmp / "manifest.json", manifest)
    return out / "annotations.json"


def box_agreement(images: list[BuiltImage]) -> dict:
    """Mean best IoU between the primary boxes and the check boxes (both directions' match
    of each primary box to its best check box), per set."""
    from sar_atd.boxes import box_iou

    ious = []
    for it in images:
        if it.check_boxes is None or not len(it.boxes):
            continue
        cb = it.check_boxes[np.isfinite(it.check_boxes).all(1)]
        if not len(cb):
            ious += [0.0] * len(it.boxes)
            continue
        m = np.asarray(box_iou(it.boxes, cb))
        ious += m.max(1).tolist()
    a = np.array(ious)
    return {"n": int(a.size), "mean_iou": float(a.mean()) if a.size else None,
            "share_iou_ge_0.5": float((a >= 0.5).mean()) if a.size else None}
