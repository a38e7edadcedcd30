"""Patchworks of real chips (paper test set 3, section II.C.3).

A patchwork is a ``grid x grid`` mosaic of real MSTAR chips, neighbours overlapping on
``overlap``-pixel strips in x and y. In the overlaps the chips are blended with a linear
fade whose weights sum to one, so the transition between two chips' clutter is smooth and
no overlay operation is involved (the targets stay in their original clutter). Boxes are the
tight boxes of the SARBake target masks (value 1), mapped to patchwork coordinates.

Choices (documented, deterministic):

* **Amplitude fade.** The paper weights the images' *amplitude*. The MSTAR JPEG chips are a
  linear, contrast-enhanced 8-bit mapping of magnitude, so the 8-bit value is taken as the
  amplitude (up to each chip's own gain, which no archive records): pixels are blended as
  ``sum_k w_k * v_k`` in float64 and rounded back to uint8. For a chip set rendered with the
  quarter-power LUT one would invert the LUT first; this module does not guess.
* **Chips of different sizes** (128 to 193 px): each chip (and its mask) is centre-cropped to
  a common square cell of ``cell_size`` pixels (default 128, the smallest MSTAR chip; the
  targets are centred in the chips, so a crop keeps them whole). A chip smaller than the cell
  is padded by reflection (mask padded with clutter). The box is computed *after* cropping.
* **Geometry.** Cells are placed with stride ``cell_size - overlap``; the patchwork side is
  ``grid * (cell_size - overlap) + overlap`` (464 px for 4 x 128 px with 16 px overlaps).
  Weights are separable: the 1-D profile of a cell is 1 in its interior and ramps linearly
  (pixel centres, ``(j + 0.5) / overlap``) over each overlap shared with a neighbour.
* **Sampling.** ``numpy.random.default_rng(seed)``; each patchwork draws ``grid**2`` distinct
  chips (with a SARBake mask holding target pixels) from the sorted chip list.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sar_atd.boxes import mask_box
from sar_atd.errors import ChipReadError
from sar_atd.evalset import read_eval_image
from sar_atd.sar.chips import ChipRecord, list_chips, read_sarbake_mask

log = logging.getLogger(__name__)

__all__ = ["Patchwork", "fade_profile", "patchwork_weights", "fit_to_cell",
           "compose_patchwork", "build_patchworks", "patchwork_size", "mosaic"]


@dataclass
class Patchwork:
    """One patchwork of real chips.

    Attributes:
        image: uint8 (H, W) patchwork.
        boxes: float32 (M, 4) xyxy pixel-edge boxes of the targets (SARBake value 1).
        chips: source chip names ``"<CLASS>/<file stem>"``, row-major over the grid.
        labels: class name of each box (M,).
        name: identifier, e.g. ``"patchwork_0007"``.
    """

    image: np.ndarray
    boxes: np.ndarray
    chips: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    name: str = ""


def patchwork_size(grid: int, cell_size: int, overlap: int) -> int:
    """Side in pixels of a ``grid x grid`` patchwork of ``cell_size`` cells."""
    return grid * (cell_size - overlap) + overlap


def fade_profile(cell_size: int, overlap: int, fade_in: bool, fade_out: bool) -> np.ndarray:
    """1-D blending weights, float64 (cell_size,), of one cell along x or y.

    Args:
        cell_size: cell side in pixels.
        overlap: overlap with each neighbour in pixels (0 <= overlap <= cell_size // 2).
        fade_in: ramp up over the first ``overlap`` pixels (a neighbour before).
        fade_out: ramp down over the last ``overlap`` pixels (a neighbour after).

    Returns:
        Weights in [0, 1]; the ramps are ``(j + 0.5) / overlap`` so that a cell's ramp-down
        plus its neighbour's ramp-up is exactly one.
    """
    if not 0 <= overlap <= cell_size // 2:
        raise ValueError(f"overlap must be in [0, cell_size // 2], got {overlap} for "
                         f"cell_size {cell_size}")
    w = np.ones(cell_size, np.float64)
    if overlap:
        ramp = (np.arange(overlap) + 0.5) / overlap
        if fade_in:
            w[:overlap] = ramp
        if fade_out:
            w[cell_size - overlap:] = ramp[::-1]
    return w


def patchwork_weights(grid: int, cell_size: int, overlap: int) -> list[np.ndarray]:
    """Per-cell 2-D weights, float64 (cell_size, cell_size), row-major; they sum to one."""
    prof = [fade_profile(cell_size, overlap, k > 0, k < grid - 1) for k in range(grid)]
    return [np.outer(prof[r], prof[c]) for r in range(grid) for c in range(grid)]


def fit_to_cell(chip: np.ndarray, mask: np.ndarray | None, cell_size: int
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Centre-crop (or reflect-pad) a chip and its mask to ``cell_size x cell_size``.

    Args:
        chip: uint8 (H, W).
        mask: uint8 (H, W) SARBake mask or None.
        cell_size: output side in pixels.

    Returns:
        (chip uint8 (cell, cell), mask uint8 (cell, cell) or None).
    """
    if mask is not None and mask.shape != chip.shape:
        raise ValueError(f"mask shape {mask.shape} != chip shape {chip.shape}")
    out_c, out_m = chip, mask
    for axis in (0, 1):
        n = out_c.shape[axis]
        if n > cell_size:
            start = (n - cell_size) // 2
            sl = [slice(None)] * 2
            sl[axis] = slice(start, start + cell_size)
            out_c = out_c[tuple(sl)]
            out_m = out_m[tuple(sl)] if out_m is not None else None
        elif n < cell_size:
            before = (cell_size - n) // 2
            pad = [(0, 0), (0, 0)]
            pad[axis] = (before, cell_size - n - before)
            out_c = np.pad(out_c, pad, mode="reflect" if n > 1 else "edge")
            out_m = np.pad(out_m, pad, constant_values=0) if out_m is not None else None
    return np.ascontiguousarray(out_c), (np.ascontiguousarray(out_m)
                                         if out_m is not None else None)


def compose_patchwork(cells: list[np.ndarray], masks: list[np.ndarray | None], grid: int,
                      overlap: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Blend ``grid**2`` equal-size cells into one patchwork.

    Args:
        cells: ``grid**2`` uint8 (C, C) chips, row-major.
        masks: matching SARBake masks (or None: no box for that cell).
        grid: cells per side.
        overlap: overlap in pixels.

    Returns:
        (image uint8 (S, S), boxes float32 (M, 4), cell index of each box), with
        ``S = patchwork_size(grid, C, overlap)``.
    """
    if len(cells) != grid * grid or len(masks) != len(cells):
        raise ValueError(f"need {grid * grid} cells and masks, got {len(cells)} and "
                         f"{len(masks)}")
    c = cells[0].shape[0]
    if any(x.shape != (c, c) for x in cells):
        raise ValueError("all cells must be square and of the same size "
                         f"(got {sorted({x.shape for x in cells})})")
    size = patchwork_size(grid, c, overlap)
    stride = c - overlap
    acc = np.zeros((size, size), np.float64)
    boxes, owners = [], []
    for k, (cell, m, w) in enumerate(zip(cells, masks, patchwork_weights(grid, c, overlap),
                                         strict=True)):
        r, col = divmod(k, grid)
        y0, x0 = r * stride, col * stride
        acc[y0:y0 + c, x0:x0 + c] += w * cell.astype(np.float64)
        if m is not None:
            b = mask_box(m)
            if b is not None:
                boxes.append(b + np.array([x0, y0, x0, y0], np.float32))
                owners.append(k)
    image = np.clip(np.rint(acc), 0, 255).astype(np.uint8)
    return image, np.asarray(boxes, np.float32).reshape(-1, 4), owners


def _load(rec: ChipRecord, cell_size: int) -> tuple[np.ndarray, np.ndarray]:
    chip = read_eval_image(rec.image_path)  # refuses truncated JPEG/PNG files
    mask = read_sarbake_mask(rec.mask_path, chip.shape) if rec.mask_path else None
    return fit_to_cell(chip, mask, cell_size)


def build_patchworks(chips_dir: str | Path, n: int = 200, seed: int = 0, grid: int = 4,
                     overlap: int = 16, cell_size: int = 128,
                     classes: tuple[str, ...] | None = None,
                     progress: bool = True) -> list[Patchwork]:
    """Build ``n`` patchworks of real chips with SARBake boxes (paper test set 3).

    Args:
        chips_dir: ``<dir>/<CLASS>/<NAME>.jpeg`` chips with ``<NAME>.mask.png`` masks
            (e.g. ``../shared/data/mstar_soc_17deg``).
        n: number of patchworks.
        seed: sampling seed (same seed -> identical patchworks).
        grid: chips per side.
        overlap: overlap of neighbouring chips in pixels.
        cell_size: common cell side (chips centre-cropped / reflect-padded to it).
        classes: restrict to these class folders.
        progress: show a tqdm bar.

    Returns:
        ``n`` :class:`Patchwork` objects, uint8 (S, S) with
        ``S = grid * (cell_size - overlap) + overlap``.

    Raises:
        ChipReadError: no chips, too few chips with target masks, unreadable files.
        ValueError: bad ``n``, ``grid``, ``overlap`` or ``cell_size``.
    """
    if n < 1 or grid < 1:
        raise ValueError(f"n and grid must be >= 1, got n={n}, grid={grid}")
    if cell_size < 8:
        raise ValueError(f"cell_size must be >= 8 pixels, got {cell_size}")
    fade_profile(cell_size, overlap, True, True)  # validates overlap
    listed = list_chips(chips_dir, classes)
    records = [r for r in listed if r.mask_path is not None]
    no_mask = [r for r in listed if r.mask_path is None]
    if no_mask:
        log.warning("%d chip(s) under %s have no SARBake mask (<name>.mask.png) and are left "
                    "out of the patchworks, e.g. %s", len(no_mask), chips_dir,
                    ", ".join(str(r.image_path) for r in no_mask[:3]))
    if len(records) < grid * grid:
        raise ChipReadError(f"{chips_dir}: need at least {grid * grid} chips with SARBake "
                            f"masks (<name>.mask.png), found {len(records)}")
    rng = np.random.default_rng(seed)
    picks = [rng.choice(len(records), grid * grid, replace=False) for _ in range(n)]
    out: list[Patchwork] = []
    from tqdm import tqdm

    for i, pick in enumerate(tqdm(picks, desc="patchworks", disable=not progress,
                                  leave=False)):
        cells, masks = [], []
        for j in pick:
            cell, mask = _load(records[int(j)], cell_size)
            cells.append(cell)
            masks.append(mask)
        image, boxes, owners = compose_patchwork(cells, masks, grid, overlap)
        names = [f"{records[j].class_name}/{records[j].image_path.stem}" for j in pick]
        out.append(Patchwork(image=image, boxes=boxes, chips=names,
                             labels=[records[int(pick[k])].class_name for k in owners],
                             name=f"patchwork_{i:04d}"))
    n_missing = sum(grid * grid - len(p.boxes) for p in out)
    if n_missing:
        log.warning("%d chip(s) in the patchworks have no target pixel in their mask "
                    "(no box)", n_missing)
    return out


def mosaic(pws: list[Patchwork], cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-size patchworks side by side, row-major, ``cols`` per row (a large scene of
    real targets, e.g. to evaluate through the tiler).

    Returns:
        (uint8 (rows * S, cols * S) image, float32 (M, 4) xyxy boxes in its coordinates).
    """
    if not pws or cols < 1:
        raise ValueError(f"need patchworks and cols >= 1, got {len(pws)}, {cols}")
    h, w = pws[0].image.shape
    rows = -(-len(pws) // cols)
    image = np.zeros((rows * h, cols * w), np.uint8)
    boxes = []
    for i, pw in enumerate(pws):
        if pw.image.shape != (h, w):
            raise ValueError(f"patchwork {i} is {pw.image.shape}, expected {(h, w)}")
        y0, x0 = (i // cols) * h, (i % cols) * w
        image[y0:y0 + h, x0:x0 + w] = pw.image
        boxes.append(pw.boxes + np.array([x0, y0, x0, y0], np.float32))
    return image, np.concatenate(boxes).astype(np.float32).reshape(-1, 4)
