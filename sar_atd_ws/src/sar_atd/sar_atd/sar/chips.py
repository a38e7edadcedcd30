"""Readers for 8-bit SAR chip images and SARBake target/shadow masks.

A chip is any single-channel 8-bit rendering of SAR magnitude (the MSTAR JPEG chips use a
linear, contrast-enhanced mapping, not the quarter-power LUT). A SARBake mask has the same
shape with values 0 = clutter, 1 = target, 2 = shadow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from sar_atd.errors import ChipReadError

MASK_CLUTTER, MASK_TARGET, MASK_SHADOW = 0, 1, 2

MSTAR_CLASSES = ("2S1", "BMP2", "BRDM_2", "BTR70", "BTR_60", "D7", "T62", "T72", "ZIL131",
                 "ZSU_23_4")
"""Folder names of the ten MSTAR SOC classes."""


def _imread(path: Path, what: str) -> np.ndarray:
    """``cv2.imread(path, IMREAD_UNCHANGED)``; raises ChipReadError naming ``what`` and the
    path when the file is missing or cannot be decoded."""
    if not path.is_file():
        raise ChipReadError(f"{what} not found: {path}")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ChipReadError(f"cannot decode {what} {path} (corrupt or not an image)")
    return img


def read_chip(path: str | Path) -> np.ndarray:
    """Read an 8-bit single-channel chip as uint8 (H, W).

    Raises:
        ChipReadError: missing/undecodable file, or a colour image whose channels differ.
    """
    path = Path(path)
    img = _imread(path, "chip image")
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = img[:, :, :3]
        if not (np.array_equal(img[:, :, 0], img[:, :, 1])
                and np.array_equal(img[:, :, 0], img[:, :, 2])):
            raise ChipReadError(f"{path}: expected a single-channel SAR image, got colour "
                                f"{img.shape}")
        img = img[:, :, 0]
    if img.dtype != np.uint8:
        raise ChipReadError(f"{path}: expected 8-bit pixels, got {img.dtype}")
    return np.ascontiguousarray(img)


def read_sarbake_mask(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a SARBake mask as uint8 (H, W) with values in {0, 1, 2}.

    Args:
        path: PNG mask.
        shape: expected (H, W) (the chip's); checked when given.

    Raises:
        ChipReadError: missing/undecodable file, values outside {0,1,2}, wrong shape.
    """
    path = Path(path)
    mask = _imread(path, "mask")
    if mask.ndim != 2:
        raise ChipReadError(f"{path}: mask must be single-channel, got shape {mask.shape}")
    bad = np.setdiff1d(np.unique(mask), [0, 1, 2])
    if bad.size:
        raise ChipReadError(f"{path}: mask values must be 0/1/2, found {bad[:5].tolist()}")
    if shape is not None and mask.shape != tuple(shape):
        raise ChipReadError(f"{path}: mask shape {mask.shape} != chip shape {tuple(shape)}")
    return mask.astype(np.uint8)


@dataclass(frozen=True)
class ChipRecord:
    """One real chip: class folder name, image path and (optional) SARBake mask path."""

    class_name: str
    image_path: Path
    mask_path: Path | None


def list_chips(root: str | Path, classes: tuple[str, ...] | None = None) -> list[ChipRecord]:
    """List ``<root>/<CLASS>/<NAME>.jpeg`` chips (with ``<NAME>.mask.png`` when present).

    Sorted by class then name, so the order is reproducible.

    Raises:
        ChipReadError: if ``root`` is not a folder or holds no chips.
    """
    root = Path(root)
    if not root.is_dir():
        raise ChipReadError(f"chip folder not found: {root}")
    out: list[ChipRecord] = []
    for cls_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if classes is not None and cls_dir.name not in classes:
            continue
        for img in sorted(cls_dir.glob("*.jpeg")) + sorted(cls_dir.glob("*.jpg")) + sorted(
                cls_dir.glob("*.png")):
            if img.name.endswith(".mask.png"):
                continue
            stem = img.name[: -len(img.suffix)]
            mask = cls_dir / f"{stem}.mask.png"
            out.append(ChipRecord(cls_dir.name, img, mask if mask.is_file() else None))
    if not out:
        raise ChipReadError(f"no chips (<class>/<name>.jpeg) found under {root}")
    return out
