"""Test-time augmentation (sar_atd.tta) on small fixed cases: view parsing, the cross-range
mirror and rescale mappings of boxes back to the image, weighted-box-fusion arithmetic, and
the wrapped detector end to end on a synthetic image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sar_atd.boxes import mask_box
from sar_atd.detectors.base import Detections
from sar_atd.tta import (
    TtaDetector,
    View,
    boxes_from_view,
    mirror_boxes,
    parse_view,
    parse_views,
    view_image,
    weighted_box_fusion,
)


class BrightBoxDetector:
    """A real (if simple) detector: the box of the pixels above 128, score 0.9, with its
    left edge placed ``left_bias`` px further out (a side bias that the mirror view sees on
    the other side)."""

    def __init__(self, left_bias: float = 0.0) -> None:
        self.name = "bright"
        self.left_bias = left_bias

    def detect(self, image: np.ndarray) -> Detections:
        b = mask_box(np.asarray(image) > 128, True)
        if b is None:
            return Detections()
        b = b.copy()
        b[0] -= self.left_bias
        return Detections(b[None], np.array([0.9], np.float32))


def _image() -> np.ndarray:
    img = np.zeros((40, 60), np.uint8)
    img[10:18, 5:20] = 200  # target: x 5-20, y 10-18 (radar at the bottom)
    return img


def test_views_parse_and_spell_back() -> None:
    assert parse_view("identity") == View()
    assert parse_view(" Mirror ") == View(mirror=True)
    assert parse_view("mirror+scale:1.25") == View(True, 1.25)
    assert [v.name for v in parse_views("identity,mirror,scale:1.5")] == [
        "identity", "mirror", "scale:1.5"]
    assert parse_views("") == ()
    for bad, msg in (("flipud", "unknown TTA view"), ("scale:3", "scale must be in"),
                     ("scale:x", "must be a number"), ("mirror,mirror", "twice")):
        with pytest.raises(ValueError, match=msg):
            parse_views(bad)


def test_mirror_reverses_columns_and_keeps_rows() -> None:
    """The cross-range mirror maps x -> W - x (an involution) and leaves y (range) alone."""
    b = np.array([[5, 10, 20, 18], [0, 0, 60, 40]], np.float32)
    m = mirror_boxes(b, 60)
    np.testing.assert_array_equal(m, [[40, 10, 55, 18], [0, 0, 60, 40]])
    np.testing.assert_array_equal(mirror_boxes(m, 60), b)
    img = _image()
    flipped = view_image(img, View(mirror=True))
    np.testing.assert_array_equal(flipped, img[:, ::-1])
    np.testing.assert_array_equal(mask_box(flipped > 128, True), m[0])
    np.testing.assert_array_equal(
        boxes_from_view(mask_box(flipped > 128, True)[None], View(mirror=True), img.shape),
        b[:1])


def test_scaled_view_boxes_map_back() -> None:
    """A box found in a 1.5x (or 0.5x) view comes back in the image's pixels."""
    img = _image()
    for scale, shape in ((1.5, (60, 90)), (0.5, (20, 30))):
        v = View(scale=scale)
        big = view_image(img, v)
        assert big.shape == shape and big.dtype == np.uint8
        found = np.array([[5 * scale, 10 * scale, 20 * scale, 18 * scale]])
        np.testing.assert_allclose(boxes_from_view(found, v, img.shape),
                                   [[5, 10, 20, 18]], atol=1e-5)
    # both at once: mirrored in the view's own (scaled) width
    v = View(mirror=True, scale=1.5)
    seen = mask_box(view_image(img, v) > 128, True)
    np.testing.assert_allclose(boxes_from_view(seen[None], v, img.shape), [[5, 10, 20, 18]],
                               atol=0.7)


def test_weighted_box_fusion_arithmetic() -> None:
    """Score-weighted mean coordinates, mean score times min(members, views) / views."""
    a = np.array([[0, 0, 10, 10], [30, 30, 40, 40]], np.float32)
    b = np.array([[2, 0, 12, 10]], np.float32)
    out = weighted_box_fusion([a, b], [np.array([0.8, 0.6]), np.array([0.2])], 0.55)
    assert len(out) == 2
    np.testing.assert_allclose(out.boxes[0], [0.4, 0, 10.4, 10], atol=1e-6)
    np.testing.assert_allclose(out.scores, [0.5, 0.3], atol=1e-6)  # (0.8+0.2)/2; 0.6*1/2
    # weights scale scores and the count rescale
    out = weighted_box_fusion([a[:1], b], [np.array([0.8]), np.array([0.2])], 0.55,
                              weights=[1.0, 3.0])
    np.testing.assert_allclose(out.boxes[0], [(0 * 0.8 + 2 * 0.6) / 1.4, 0,
                                              (10 * 0.8 + 12 * 0.6) / 1.4, 10], atol=1e-5)
    np.testing.assert_allclose(out.scores, [(0.8 + 0.6) / 2 * 2 / 4], atol=1e-6)
    # below the IoU threshold nothing merges (IoU 10/30 < 0.55); one view = identity
    out = weighted_box_fusion([a[:1], np.array([[5, 0, 15, 10]])], [[0.5], [0.4]], 0.55)
    assert len(out) == 2
    one = weighted_box_fusion([a], [np.array([0.6, 0.8])])
    np.testing.assert_array_equal(one.boxes, a[::-1])
    np.testing.assert_allclose(one.scores, [0.8, 0.6])
    assert len(weighted_box_fusion([np.zeros((0, 4))] * 2, [np.zeros(0)] * 2)) == 0
    with pytest.raises(ValueError, match="one score array per box array"):
        weighted_box_fusion([a], [])
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        weighted_box_fusion([a], [np.array([0.5])])
    with pytest.raises(ValueError, match="iou_threshold"):
        weighted_box_fusion([a], [np.array([0.5, 0.5])], 0.0)


def test_tta_detector_mirror_averages_a_side_bias() -> None:
    """A detector whose left edge is 2 px out: the identity view puts the error on the left,
    the mirror view (mapped back) on the right, the fusion splits it 1 px each side."""
    img = _image()
    exact = TtaDetector(BrightBoxDetector(), "identity,mirror").detect(img)
    np.testing.assert_allclose(exact.boxes, [[5, 10, 20, 18]], atol=1e-6)
    np.testing.assert_allclose(exact.scores, [0.9], atol=1e-6)
    tta = TtaDetector(BrightBoxDetector(left_bias=2.0), "identity,mirror")
    out = tta.detect(img)
    np.testing.assert_allclose(out.boxes, [[4, 10, 21, 18]], atol=1e-6)
    assert len(tta.last_ms) == 2 and "TTA(identity,mirror)" in tta.name
    ens = TtaDetector([BrightBoxDetector(), BrightBoxDetector(4.0)], "identity")
    np.testing.assert_allclose(ens.detect(img).boxes, [[3, 10, 20, 18]], atol=1e-6)
    with pytest.raises(ValueError, match="at least one view"):
        TtaDetector(BrightBoxDetector(), "")


def test_tta_benchmark_on_a_few_real_patchworks(mstar_chips: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    """bench_box_tta prints CFAR beside the model's view combinations, with AP25 >= AP50 >=
    AP70 on every set and a time ratio of 1 for the identity view; bad views are usage
    errors."""
    from benchmarks.bench_box_tta import main

    assert main(["--n", "1", "--n-heldback", "1", "--n-stretch", "1", "--n-tune", "1",
                 "--views", "identity,mirror"]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ")]
    labels = [r.split("|")[1].strip() for r in rows[1:]]  # rows[0]: header
    assert labels[0] == "CFAR-CA" and labels[1] == "identity"
    assert "identity+mirror" in labels and any(lb.startswith("identity+mirror + side bias")
                                                for lb in labels)
    for r in rows[1:]:
        cells = [c.strip() for c in r.split("|")[3:6]]
        for c in cells:
            a25, a50, a70 = (float(v) for v in c.split("/"))
            assert 0.0 <= a70 <= a50 <= a25 <= 1.0
    assert rows[2].split("|")[6].strip() == "1.00"
    for bad in (["--views", "mirror"], ["--views", "identity,flipud"]):
        with pytest.raises(SystemExit) as exc:
            main(bad)
        assert exc.value.code == 2
