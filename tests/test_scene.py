"""Scene detector: boxes back in scene coordinates, one report per target across seams,
geometry rules, batched == unbatched; with the real CFAR and the trained default model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sar_atd.boxes import box_iou
from sar_atd.config import SceneDetectorConfig, TilerConfig
from sar_atd.detectors.base import Detections
from sar_atd.detectors.cfar import CfarDetector
from sar_atd.scene import GeometryError, SceneDetector, box_ios, merge_across_tiles, rotate_boxes
from sar_atd.tiling import tile_grid

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "default.pt"


def _clutter_with_targets(h: int, w: int, targets: list[tuple[int, int, int, int]],
                          seed: int = 0) -> np.ndarray:
    """uint8 Rayleigh clutter (median ~30) with bright Gaussian-ish blobs filling each
    ``(x0, y0, x1, y1)`` rectangle."""
    rng = np.random.default_rng(seed)
    img = rng.rayleigh(25.0, (h, w))
    for x0, y0, x1, y1 in targets:
        yy, xx = np.mgrid[y0:y1, x0:x1]
        cy, cx = (y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2
        sy, sx = (y1 - y0) / 2, (x1 - x0) / 2
        r2 = ((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2
        img[y0:y1, x0:x1] = np.maximum(img[y0:y1, x0:x1], 230 * (r2 <= 1.0))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_box_ios_and_merge_rules() -> None:
    full = np.array([[100, 100, 140, 120]], np.float32)
    cut = np.array([[128, 100, 140, 120]], np.float32)  # same target cut at x = 128
    assert box_ios(full, cut)[0, 0] == pytest.approx(1.0)
    assert box_iou(full, cut)[0, 0] == pytest.approx(0.3)
    b = np.concatenate([cut, full])
    s = np.array([0.9, 0.6], np.float32)
    tiles = np.array([1, 0])
    trunc = np.array([True, False])
    # nms + ios: the whole box wins although its score is lower; the score is the best
    mb, ms, mt = merge_across_tiles(b, s, tiles, trunc, SceneDetectorConfig())
    np.testing.assert_array_equal(mb, full)
    assert ms.tolist() == pytest.approx([0.9]) and mt.tolist() == [0]
    # iou at 0.5 does not link them: two reports
    mb, _, _ = merge_across_tiles(b, s, tiles, trunc,
                                  SceneDetectorConfig(match="iou", match_threshold=0.5))
    assert len(mb) == 2
    # greedy merge: enclosing box of the cluster
    b2 = np.array([[100, 100, 130, 120], [110, 98, 140, 121]], np.float32)
    mb, _, _ = merge_across_tiles(b2, s, tiles, np.array([True, True]),
                                  SceneDetectorConfig(merge="merge", match="iou",
                                                      match_threshold=0.3))
    np.testing.assert_array_equal(mb, [[100, 98, 140, 121]])
    # boxes of the same tile are never merged
    mb, _, _ = merge_across_tiles(b, s, np.array([0, 0]), trunc, SceneDetectorConfig())
    assert len(mb) == 2


def test_rotate_boxes_round_trip() -> None:
    boxes = np.array([[3, 5, 10, 20], [0, 0, 7, 4]], np.float32)
    h, w = 30, 50
    img = np.zeros((h, w), np.uint8)
    img[5:20, 3:10] = 1
    for k in range(4):
        rb = rotate_boxes(boxes[:1], k, h, w)[0].astype(int)
        rot = np.rot90(img, k)
        ys, xs = np.nonzero(rot)
        assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == rb.tolist()
        rh, rw = (w, h) if k % 2 else (h, w)
        np.testing.assert_array_equal(rotate_boxes(rotate_boxes(boxes, k, h, w),
                                                   (4 - k) % 4, rh, rw), boxes)


def _cfar_scene_detector(tile: int = 160, overlap: int = 64, batch: int = 4,
                         **kw: object) -> SceneDetector:
    return SceneDetector(CfarDetector(), TilerConfig(tile_size=tile, overlap=overlap,
                                                     batch_size=batch, device="cpu"),
                         SceneDetectorConfig(**kw))  # type: ignore[arg-type]


def test_seam_target_reported_once_with_cfar() -> None:
    """A target straddling a seam is reported once, with a box within 2 px of the truth;
    a target in one tile's interior is unaffected."""
    h, w = 300, 330
    grid = tile_grid(h, w, 160, 64)
    seam_x = int(np.unique(grid[:, 0])[1])  # left edge of the second tile column
    targets = [(seam_x - 8, 120, seam_x + 14, 134), (30, 30, 50, 42)]
    scene = _clutter_with_targets(h, w, targets)
    out = _cfar_scene_detector().detect(scene)
    truth = np.asarray(targets, np.float32)
    strong = out.scores >= np.sort(out.scores)[-2] if len(out) >= 2 else out.scores > 0
    for t in truth:
        hits = box_iou(out.boxes, t[None])[:, 0] > 0.3
        assert hits.sum() == 1, (out.boxes, t)
        assert np.abs(out.boxes[hits][0] - t).max() <= 2.0
    assert strong.sum() >= 2
    assert out.n_raw > len(out)  # the seam target was seen by two tiles and merged


def test_scene_smaller_than_a_tile_equals_the_detector() -> None:
    scene = _clutter_with_targets(90, 117, [(40, 40, 60, 52)])
    out = _cfar_scene_detector(tile=640, overlap=128).detect(scene)
    direct = CfarDetector().detect(scene)
    np.testing.assert_array_equal(out.boxes, direct.boxes[np.argsort(-direct.scores,
                                                                     kind="stable")])
    assert out.n_tiles == 1


def test_batched_equals_unbatched_cfar() -> None:
    scene = _clutter_with_targets(260, 300, [(100, 100, 122, 114), (200, 30, 216, 44)], 3)
    a = _cfar_scene_detector(batch=1).detect(scene)
    b = _cfar_scene_detector(batch=7).detect(scene)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)


@pytest.mark.parametrize("side,k", [("left", 1), ("top", 2), ("right", 3)])
def test_orientation_maps_boxes_back_exactly(side: str, k: int) -> None:
    """A scene with the radar on another side gives exactly the radar-at-bottom
    detections, turned into the scene's frame."""
    scene = _clutter_with_targets(200, 240, [(60, 70, 82, 84), (150, 150, 170, 160)], 5)
    sd = _cfar_scene_detector()
    ref = sd.detect(scene)
    rotated = np.ascontiguousarray(np.rot90(scene, k))
    out = sd.detect(rotated, orientation=side)
    want = rotate_boxes(ref.boxes, k, *scene.shape)
    np.testing.assert_array_equal(out.boxes, want)
    np.testing.assert_array_equal(out.scores, ref.scores)


def test_spacing_is_resampled_or_refused() -> None:
    scene = _clutter_with_targets(200, 200, [(80, 80, 104, 96)], 6)
    sd = _cfar_scene_detector()
    ref = sd.detect(scene)
    coarse = scene[::2, ::2].copy()  # the same ground at twice the pixel spacing
    out = sd.detect(coarse, pixel_spacing_m=(0.4042, 0.4062))
    i = int(np.argmax(box_iou(out.boxes, np.array([[40, 40, 52, 48]]))[:, 0]))
    np.testing.assert_allclose(out.boxes[i], ref.boxes[0] / 2, atol=1.5)
    same = sd.detect(scene, pixel_spacing_m=(0.2021, 0.2031))
    np.testing.assert_array_equal(same.boxes, ref.boxes)
    with pytest.raises(GeometryError, match="too far"):
        sd.detect(scene, pixel_spacing_m=(3.0, 3.0))
    with pytest.raises(GeometryError, match="orientation"):
        sd.detect(scene, orientation="north")
    with pytest.raises(GeometryError, match="pixel_spacing_m"):
        sd.detect(scene, pixel_spacing_m=(0.2, -1.0))


def test_score_threshold_and_detect_batches_split_layout() -> None:
    scene = _clutter_with_targets(200, 200, [(80, 80, 104, 96)], 7)
    sd = _cfar_scene_detector()
    full = sd.detect(scene)
    split = sd.detect_batches(sd.tiler.tiles(scene))
    np.testing.assert_array_equal(full.boxes, split.boxes)
    high = _cfar_scene_detector(score_threshold=float(full.scores.max()) + 1).detect(scene)
    assert len(high) == 0
    assert isinstance(full.to_detections(), Detections)


@pytest.fixture(scope="module")
def default_model():
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"default model not found: {DEFAULT_MODEL}")
    from sar_atd.runtime import resolve_detector

    det, _ = resolve_detector(str(DEFAULT_MODEL), score_threshold=0.05)
    return det


@pytest.fixture(scope="module")
def real_patchwork(mstar_chips: Path):
    from sar_atd_training.evaluation.patchwork import build_patchworks

    return build_patchworks(mstar_chips, n=1, seed=3, progress=False)[0]


@pytest.mark.slow
def test_seam_targets_reported_once_with_trained_model(default_model, real_patchwork) -> None:
    """Real MSTAR targets cut by seams (256 px tiles, 96 px overlap on a 464 px patchwork):
    each is reported at least once and no more often than on the whole image (seams neither
    drop nor duplicate it), with the box the model gives on the whole image (2 px)."""
    pw = real_patchwork
    thr = 0.15  # below every target's whole-image score for the committed models
    whole = default_model.detect(pw.image)
    keep = whole.scores >= thr
    whole_boxes, whole_scores = whole.boxes[keep], whole.scores[keep]
    sd = SceneDetector(default_model, TilerConfig(tile_size=256, overlap=96, batch_size=9,
                                                  device="cpu"),
                       SceneDetectorConfig(score_threshold=thr))
    out = sd.detect(pw.image)
    grid = tile_grid(*pw.image.shape, 256, 96)
    h, w = pw.image.shape
    seams_x = (set(grid[:, 0].tolist()) | set(grid[:, 2].tolist())) - {0, w}
    seams_y = (set(grid[:, 1].tolist()) | set(grid[:, 3].tolist())) - {0, h}
    n_straddle = 0
    for gt in pw.boxes:
        n_straddle += any(gt[0] < s < gt[2] for s in seams_x) or any(
            gt[1] < s < gt[3] for s in seams_y)
        hits = box_iou(out.boxes, gt[None])[:, 0] > 0.3
        ref_hits = box_iou(whole_boxes, gt[None])[:, 0] > 0.3
        assert ref_hits.sum() >= 1, f"target {gt} not found on the whole image"
        assert 1 <= hits.sum() <= ref_hits.sum(), (
            f"target {gt} reported {hits.sum()} times, {ref_hits.sum()} on the whole image")
        top = out.boxes[hits][np.argmax(out.scores[hits])]
        ref = whole_boxes[ref_hits][np.argmax(whole_scores[ref_hits])]
        assert np.abs(top - ref).max() <= 2.0
    assert n_straddle >= 4  # the layout really puts targets across seams


@pytest.mark.slow
def test_batched_equals_unbatched_trained_model(default_model, real_patchwork) -> None:
    """One (B, 1, H, W) forward pass gives each tile's single-image detections."""
    import torch

    img = real_patchwork.image
    crops = [img[0:160, 0:160], img[150:310, 100:260], img[304:464, 304:464]]
    batched = default_model.detect_batch(torch.from_numpy(np.stack(crops)[:, None]).float())
    for crop, got in zip(crops, batched, strict=True):
        want = default_model.detect(crop)
        assert len(got) == len(want)
        np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-4)
