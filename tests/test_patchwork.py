"""Patchworks of real chips: fade weights, box mapping, chip sizes, determinism, COCO I/O."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from sar_atd.errors import ChipReadError
from sar_atd_training.evaluation.dataset import read_coco_dataset, write_coco_dataset
from sar_atd_training.evaluation.patchwork import (
    build_patchworks,
    fade_profile,
    fit_to_cell,
    patchwork_size,
    patchwork_weights,
)

BG, TGT = 50, 250


def _make_chips(root: Path, n: int = 20, shape: tuple[int, int] = (128, 128),
                shapes: list[tuple[int, int]] | None = None) -> dict[str, np.ndarray]:
    """Constant-clutter chips with a bright target block at a per-chip position.

    Returns chip name -> expected target box (xyxy) in the *cell* (after centre-crop/pad to
    128) coordinates.
    """
    rng = np.random.default_rng(123)
    expected = {}
    for i in range(n):
        h, w = shapes[i % len(shapes)] if shapes else shape
        cls = root / ("A" if i % 2 else "B")
        cls.mkdir(parents=True, exist_ok=True)
        chip = np.full((h, w), BG, np.uint8)
        mask = np.zeros((h, w), np.uint8)
        # target well inside the central 96 px of the cell (away from the overlaps)
        oy, ox = (h - 128) // 2, (w - 128) // 2
        y0, x0 = int(rng.integers(30, 80)), int(rng.integers(30, 80))
        th, tw = int(rng.integers(5, 15)), int(rng.integers(5, 15))
        chip[oy + y0:oy + y0 + th, ox + x0:ox + x0 + tw] = TGT
        mask[oy + y0:oy + y0 + th, ox + x0:ox + x0 + tw] = 1
        mask[oy + y0 + th:oy + y0 + th + 4, ox + x0:ox + x0 + tw] = 2  # shadow: no box
        name = f"chip{i:02d}"
        cv2.imwrite(str(cls / f"{name}.png"), chip)
        cv2.imwrite(str(cls / f"{name}.mask.png"), mask)
        expected[f"{cls.name}/{name}"] = np.array([x0, y0, x0 + tw, y0 + th], np.float32)
    return expected


def test_fade_weights_sum_to_one() -> None:
    """The per-cell weights, placed on the patchwork, add up to exactly one everywhere."""
    for grid, cell, overlap in [(4, 128, 16), (3, 40, 7), (2, 10, 5), (1, 16, 4)]:
        size = patchwork_size(grid, cell, overlap)
        acc = np.zeros((size, size))
        for k, w in enumerate(patchwork_weights(grid, cell, overlap)):
            r, c = divmod(k, grid)
            s = cell - overlap
            acc[r * s:r * s + cell, c * s:c * s + cell] += w
        np.testing.assert_allclose(acc, 1.0, atol=1e-12)
    p = fade_profile(128, 16, True, True)
    assert np.all(np.diff(p[:16]) > 0) and np.all(p[16:112] == 1.0)
    with pytest.raises(ValueError, match="overlap"):
        fade_profile(20, 11, True, True)


def test_boxes_map_to_patchwork_coordinates(tmp_path: Path) -> None:
    """Each chip's mask box lands at its cell offset; the bright pixels are there too."""
    expected = _make_chips(tmp_path)
    pws = build_patchworks(tmp_path, n=3, seed=1, progress=False)
    for pw in pws:
        assert pw.image.shape == (464, 464) and pw.image.dtype == np.uint8
        assert len(pw.boxes) == 16 and len(pw.chips) == 16
        # constant clutter stays constant through the fade (weights sum to one)
        assert np.count_nonzero(pw.image == BG) + np.count_nonzero(pw.image == TGT) == 464**2
        for k, (name, box) in enumerate(zip(pw.chips, pw.boxes, strict=True)):
            r, c = divmod(k, 4)
            want = expected[name] + np.array([c, r, c, r], np.float32) * 112
            np.testing.assert_array_equal(box, want)
            x0, y0, x1, y1 = box.astype(int)
            assert np.all(pw.image[y0:y1, x0:x1] == TGT)
        assert np.count_nonzero(pw.image == TGT) == int(
            sum((b[2] - b[0]) * (b[3] - b[1]) for b in pw.boxes))


def test_chips_of_different_sizes(tmp_path: Path) -> None:
    """Larger chips are centre-cropped, smaller ones reflect-padded, boxes follow."""
    shapes = [(128, 128), (129, 128), (158, 158), (193, 192), (140, 150)]
    expected = _make_chips(tmp_path, n=20, shapes=shapes)
    pw = build_patchworks(tmp_path, n=1, seed=0, progress=False)[0]
    for k, (name, box) in enumerate(zip(pw.chips, pw.boxes, strict=True)):
        r, c = divmod(k, 4)
        np.testing.assert_array_equal(box, expected[name] + np.array([c, r, c, r]) * 112)
    small = np.arange(120 * 110, dtype=np.int64).reshape(120, 110).astype(np.uint8)
    cell, mask = fit_to_cell(small, np.ones_like(small), 128)
    assert cell.shape == mask.shape == (128, 128)
    np.testing.assert_array_equal(cell[4:124, 9:119], small)
    assert mask[:4].sum() == 0 and mask[4:124, 9:119].all()


def test_deterministic_with_seed(tmp_path: Path) -> None:
    """Same seed -> identical patchworks; another seed -> other chips."""
    _make_chips(tmp_path)
    a = build_patchworks(tmp_path, n=2, seed=5, progress=False)
    b = build_patchworks(tmp_path, n=2, seed=5, progress=False)
    c = build_patchworks(tmp_path, n=2, seed=6, progress=False)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.image, y.image)
        np.testing.assert_array_equal(x.boxes, y.boxes)
        assert x.chips == y.chips
    assert a[0].chips != c[0].chips


def test_too_few_chips_and_coco_roundtrip(tmp_path: Path) -> None:
    """Clear error with too few chips; COCO write/read returns the same images and boxes."""
    _make_chips(tmp_path / "few", n=5)
    with pytest.raises(ChipReadError, match="at least 16 chips"):
        build_patchworks(tmp_path / "few", n=1, progress=False)
    _make_chips(tmp_path / "ok")
    pws = build_patchworks(tmp_path / "ok", n=2, seed=0, progress=False)
    write_coco_dataset(pws, tmp_path / "coco", info={"seed": 0})
    back = read_coco_dataset(tmp_path / "coco")
    for p, e in zip(pws, back, strict=True):
        np.testing.assert_array_equal(p.image, e.image)
        np.testing.assert_array_equal(p.boxes, e.boxes)


@pytest.mark.realdata
def test_real_chip_patchworks(mstar_chips: Path) -> None:
    """Real MSTAR chips: 16 SARBake boxes per patchwork, targets brighter than clutter."""
    pws = build_patchworks(mstar_chips, n=2, seed=0, progress=False)
    for pw in pws:
        assert pw.image.shape == (464, 464)
        assert len(pw.boxes) == 16 and len(set(pw.chips)) == 16
        assert np.all(pw.boxes[:, :2] >= 0) and np.all(pw.boxes[:, 2:] <= 464)
        inside = np.zeros(pw.image.shape, bool)
        for x0, y0, x1, y1 in pw.boxes.astype(int):
            inside[y0:y1, x0:x1] = True
        assert pw.image[inside].mean() > 1.5 * pw.image[~inside].mean()
