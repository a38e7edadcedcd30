"""Evaluation datasets as COCO-JSON folders: the image type, a strict reader and a writer.

Layout written by :func:`write_coco_dataset` (read back by :func:`read_coco_dataset`)::

    DIR/annotations.json      images, annotations (bbox [x, y, w, h], area = w*h,
                              iscrowd 0, category 1 "target"), categories
    DIR/images/<name>.png     uint8 single-channel images

The reader also accepts what labelling tools and detection libraries export: an image
``file_name`` is looked up relative to the JSON file's folder, then in its ``images/``
sub-folder (bare names beside ``annotations.json`` or in ``images/``).

The reader refuses what cannot be measured honestly, naming the file or annotation: an
image file cut short (JPEG without its end-of-image marker, PNG without ``IEND``: decoders
return a partial image for these), an image whose size disagrees with the JSON, and boxes
that are zero-size, non-finite or outside their image (by more than ``BOX_TOLERANCE_PX``;
boxes within it are clipped).

COCO ``[x, y, w, h]`` boxes become SAR-ATD's xyxy pixel-edge boxes (``x1 = x + w``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sar_atd.boxes import xyxy_to_xywh
from sar_atd.errors import ChipReadError

log = logging.getLogger(__name__)

__all__ = ["EvalImage", "write_coco_dataset", "read_coco_dataset", "load_eval_dataset",
           "check_image_file_complete", "read_eval_image", "BOX_TOLERANCE_PX"]

BOX_TOLERANCE_PX = 1.0
"""A COCO box may exceed its image by this much (rounding of labelling tools); clipped."""


@dataclass
class EvalImage:
    """One evaluation image: uint8 (H, W) pixels and float32 (M, 4) xyxy GT boxes."""

    name: str
    image: np.ndarray
    boxes: np.ndarray


def check_image_file_complete(path: str | Path) -> None:
    """Refuse a JPEG or PNG file cut short (decoders return a partial image for these).

    A JPEG must end with its end-of-image marker (``FF D9``, trailing padding allowed), a
    PNG must hold its ``IEND`` chunk. Other formats are left to the decoder.

    Raises:
        ChipReadError: the file is missing, unreadable or truncated (naming it).
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 64))
            tail = fh.read()
    except OSError as err:
        raise ChipReadError(f"cannot read image {path}: {err.strerror or err}") from None
    if head[:2] == b"\xff\xd8":
        if b"\xff\xd9" not in tail.rstrip(b"\x00\r\n\t "):
            raise ChipReadError(f"truncated JPEG image {path} ({size} bytes, no end-of-image "
                                f"marker): refusing to score a partial image")
    elif head[:8] == b"\x89PNG\r\n\x1a\n":
        if b"IEND" not in tail:
            raise ChipReadError(f"truncated PNG image {path} ({size} bytes, no IEND chunk): "
                                f"refusing to score a partial image")


def read_eval_image(path: str | Path) -> np.ndarray:
    """Read an 8-bit single-channel image for evaluation, refusing truncated files."""
    from sar_atd.sar.chips import read_chip

    check_image_file_complete(path)
    return read_chip(path)


def write_coco_dataset(items: Sequence[Any], out_dir: str | Path, info: dict | None = None,
                       overwrite: bool = False) -> Path:
    """Write images as PNG plus ``annotations.json`` (COCO, one category "target").

    The folder is built in a hidden temporary sibling and renamed into place, so an
    interrupted write never leaves a mix of old and new files.

    Args:
        items: objects with ``name``, ``image`` uint8 (H, W) and ``boxes`` (M, 4) xyxy
            (:class:`EvalImage`, patchworks); optional ``chips`` (source chip names, stored
            per image) and ``labels`` (class name per box, stored per annotation).
        out_dir: output folder.
        info: extra fields of the COCO ``info`` block (e.g. seed, source folder).
        overwrite: replace an existing non-empty folder (refused otherwise).

    Returns:
        Path of ``annotations.json``.

    Raises:
        FileExistsError: ``out_dir`` exists and is not empty, without ``overwrite``.
    """
    import cv2

    from sar_atd.atomic import atomic_dir

    out_dir = Path(out_dir)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        (tmp / "images").mkdir()
        images, anns = [], []
        aid = 1
        for i, it in enumerate(items):
            name = it.name or f"image_{i:04d}"
            rel = f"images/{name}.png"
            if not cv2.imwrite(str(tmp / rel), it.image):
                raise OSError(f"cannot write image {out_dir / rel}")
            h, w = it.image.shape[:2]
            entry: dict[str, Any] = {"id": i + 1, "file_name": rel, "width": int(w),
                                     "height": int(h)}
            chips = getattr(it, "chips", None)
            if chips:
                entry["chips"] = list(chips)
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
        (tmp / "annotations.json").write_text(json.dumps(doc, indent=1))
    return out_dir / "annotations.json"


def _find_image(root: Path, file_name: str) -> Path | None:
    """``file_name`` relative to ``root``, else in ``root/images`` (bare names)."""
    for cand in (root / file_name, root / "images" / file_name,
                 root / "images" / Path(file_name).name):
        if cand.is_file():
            return cand
    return None


def _check_box(bbox: Any, ann_id: Any, img_name: str, hw: tuple[int, int], path: Path
               ) -> list[float]:
    where = f"{path}: annotation {ann_id} (image {img_name})"
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise ChipReadError(f"{where}: bbox must be [x, y, w, h], got {bbox!r}")
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise ChipReadError(f"{where}: bbox values must be numbers, got {bbox!r}") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ChipReadError(f"{where}: bbox {bbox!r} is not finite")
    if w <= 0 or h <= 0:
        raise ChipReadError(f"{where}: bbox {bbox!r} has zero or negative size")
    H, W = hw
    tol = BOX_TOLERANCE_PX
    if x < -tol or y < -tol or x + w > W + tol or y + h > H + tol:
        raise ChipReadError(f"{where}: bbox {bbox!r} lies outside the {W}x{H} image")
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(W), x + w), min(float(H), y + h)
    if x1 <= x0 or y1 <= y0:
        raise ChipReadError(f"{where}: bbox {bbox!r} lies outside the {W}x{H} image")
    return [x0, y0, x1, y1]


def read_coco_dataset(path: str | Path) -> list[EvalImage]:
    """Read a COCO-JSON dataset (every annotation is a target, whatever its category).

    Args:
        path: the JSON file, or a folder holding ``annotations.json``.

    Raises:
        ChipReadError: missing/invalid JSON, missing or truncated images, image sizes that
            disagree with the JSON, bad boxes (each names the file or annotation).
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
        if not isinstance(images, list) or not isinstance(anns, list):
            raise TypeError("'images' and 'annotations' must be lists")
        by_img: dict[int, list] = {int(im["id"]): [] for im in images}
        for im in images:
            if not isinstance(im.get("file_name"), str) or not im["file_name"]:
                raise KeyError(f"image {im.get('id')} has no file_name")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError,
            UnicodeDecodeError) as err:
        raise ChipReadError(f"{path}: not a COCO detection file ({err})") from None
    n_crowd = 0
    for a in anns:
        if not isinstance(a, dict) or "image_id" not in a or "bbox" not in a:
            raise ChipReadError(f"{path}: annotation {a.get('id') if isinstance(a, dict) else a!r}"
                                f" lacks image_id or bbox")
        if a.get("iscrowd", 0):
            n_crowd += 1
        try:
            iid = int(a["image_id"])
        except (TypeError, ValueError):
            iid = None
        if iid not in by_img:
            raise ChipReadError(f"{path}: annotation {a.get('id')} refers to unknown image "
                                f"{a['image_id']!r}")
        by_img[iid].append(a)
    if n_crowd:
        log.warning("%s: %d crowd annotations treated as ordinary targets", path, n_crowd)
    out = []
    for im in images:
        fname = im["file_name"]
        img_path = _find_image(path.parent, fname)
        if img_path is None:
            raise ChipReadError(f"{path}: image {fname!r} not found (looked beside the JSON "
                                f"file and in {path.parent / 'images'})")
        image = read_eval_image(img_path)
        hw = (int(image.shape[0]), int(image.shape[1]))
        for key, actual in (("height", hw[0]), ("width", hw[1])):
            if key in im and im[key] is not None and int(im[key]) != actual:
                raise ChipReadError(f"{path}: image {fname!r} is {hw[1]}x{hw[0]} px but the "
                                    f"JSON says {key} {im[key]}")
        boxes = [_check_box(a["bbox"], a.get("id"), fname, hw, path)
                 for a in by_img[int(im["id"])]]
        out.append(EvalImage(name=Path(fname).stem, image=image,
                             boxes=np.asarray(boxes, np.float32).reshape(-1, 4)))
    return out


def load_eval_dataset(path: str | Path) -> tuple[list[EvalImage], str]:
    """Load a COCO dataset (JSON file, or folder with ``annotations.json``).

    Returns:
        (images, description of the dataset for reports).

    Raises:
        ChipReadError: not found, or any problem of :func:`read_coco_dataset`.
    """
    path = Path(path)
    if not (path.is_file() or (path / "annotations.json").is_file()):
        raise ChipReadError(f"no COCO dataset at {path} (expected a JSON file or a folder "
                            f"with annotations.json)")
    items = read_coco_dataset(path)
    return items, f"COCO dataset {path} ({len(items)} images)"
