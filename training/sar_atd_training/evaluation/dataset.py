"""Evaluation datasets: COCO-JSON folders (write/read) and folders of chips + masks.

COCO layout written by :func:`write_coco_dataset` (and read by :func:`read_coco_dataset`)::

    DIR/annotations.json      images, annotations (bbox [x, y, w, h], area = w*h,
                              iscrowd 0, category 1 "target"), categories
    DIR/images/<name>.png     uint8 single-channel images

COCO ``[x, y, w, h]`` boxes are converted to SAR-ATD's xyxy pixel-edge boxes
(``x1 = x + w``); the two conventions describe the same rectangle.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sar_atd.boxes import xywh_to_xyxy, xyxy_to_xywh
from sar_atd.errors import ChipReadError
from sar_atd.sar.chips import read_chip
from sar_atd_training.evaluation.patchwork import Patchwork, build_patchworks

log = logging.getLogger(__name__)

__all__ = ["EvalImage", "write_coco_dataset", "read_coco_dataset", "load_eval_dataset"]


@dataclass
class EvalImage:
    """One evaluation image: uint8 (H, W) pixels and float32 (M, 4) xyxy GT boxes."""

    name: str
    image: np.ndarray
    boxes: np.ndarray


def write_coco_dataset(items: Sequence[Patchwork | EvalImage], out_dir: str | Path,
                       info: dict | None = None) -> Path:
    """Write images as PNG plus ``annotations.json`` (COCO, one category "target").

    Args:
        items: patchworks (their source chips are stored per image as ``"chips"``) or
            :class:`EvalImage` objects.
        out_dir: output folder (created).
        info: extra fields for the COCO ``info`` block (e.g. seed, source folder).

    Returns:
        Path of ``annotations.json``.
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    aid = 1
    for i, it in enumerate(items):
        name = it.name or f"image_{i:04d}"
        rel = f"images/{name}.png"
        if not cv2.imwrite(str(out_dir / rel), it.image):
            raise OSError(f"cannot write image {out_dir / rel}")
        h, w = it.image.shape[:2]
        entry = {"id": i + 1, "file_name": rel, "width": int(w), "height": int(h)}
        if isinstance(it, Patchwork):
            entry["chips"] = list(it.chips)
        images.append(entry)
        labels = getattr(it, "labels", None) or [None] * len(it.boxes)
        for b, lab in zip(xyxy_to_xywh(it.boxes), labels, strict=True):
            ann = {"id": aid, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                   "bbox": [float(v) for v in b], "area": float(b[2] * b[3])}
            if lab:
                ann["source_class"] = lab
            anns.append(ann)
            aid += 1
    doc = {"info": {"description": "SAR-ATD evaluation set", **(info or {})},
           "images": images, "annotations": anns,
           "categories": [{"id": 1, "name": "target", "supercategory": "vehicle"}]}
    path = out_dir / "annotations.json"
    path.write_text(json.dumps(doc, indent=1))
    return path


def read_coco_dataset(path: str | Path) -> list[EvalImage]:
    """Read a COCO-JSON dataset (every annotation is a target, whatever its category).

    Args:
        path: the JSON file, or a folder holding ``annotations.json``. Image
            ``file_name`` entries are relative to the JSON file's folder.

    Raises:
        ChipReadError: missing/invalid JSON, missing images, bad boxes.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "annotations.json"
    if not path.is_file():
        raise ChipReadError(f"COCO annotations not found: {path}")
    try:
        doc = json.loads(path.read_text())
        images = doc["images"]
        anns = doc.get("annotations", [])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ChipReadError(f"{path}: not a COCO detection file ({err})") from None
    by_img: dict[int, list] = {int(im["id"]): [] for im in images}
    n_crowd = 0
    for a in anns:
        if a.get("iscrowd", 0):
            n_crowd += 1
        if int(a["image_id"]) not in by_img:
            raise ChipReadError(f"{path}: annotation {a.get('id')} refers to unknown image "
                                f"{a['image_id']}")
        by_img[int(a["image_id"])].append(a["bbox"])
    if n_crowd:
        log.warning("%s: %d crowd annotations treated as ordinary targets", path, n_crowd)
    out = []
    for im in images:
        img_path = path.parent / im["file_name"]
        image = read_chip(img_path)
        try:
            boxes = xywh_to_xyxy(np.asarray(by_img[int(im["id"])], np.float64).reshape(-1, 4))
        except ValueError as err:
            raise ChipReadError(f"{path}: image {im['file_name']}: {err}") from None
        out.append(EvalImage(name=Path(im["file_name"]).stem, image=image,
                             boxes=boxes.astype(np.float32)))
    return out


def load_eval_dataset(path: str | Path, n: int = 200, seed: int = 0,
                      progress: bool = True) -> tuple[list[EvalImage], str]:
    """Load a COCO dataset, or build ``n`` patchworks from a folder of chips + masks.

    Args:
        path: COCO JSON / folder with ``annotations.json``, or ``<CLASS>/<NAME>.jpeg`` chips
            with ``<NAME>.mask.png`` SARBake masks.
        n: number of patchworks (chips folders only).
        seed: patchwork seed (chips folders only).
        progress: progress bars.

    Returns:
        (images, description of the dataset for reports).
    """
    path = Path(path)
    if path.is_file() or (path / "annotations.json").is_file():
        items = read_coco_dataset(path)
        return items, f"COCO dataset {path} ({len(items)} images)"
    if not path.is_dir():
        raise ChipReadError(f"dataset not found: {path}")
    pws = build_patchworks(path, n=n, seed=seed, progress=progress)
    items = [EvalImage(p.name, p.image, p.boxes) for p in pws]
    return items, (f"{n} patchworks (4x4 chips, 16 px overlaps, linear amplitude fade, "
                   f"SARBake boxes) of {path}, seed {seed}")
