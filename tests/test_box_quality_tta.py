"""Test-time box refinement (sar_atd.tta) on small fixed cases: view parsing, the cross-range
mirror and rescale mappings of boxes back to the image, weighted-box-fusion and box-voting
arithmetic, the wrapped detector end to end on a synthetic image, the runtime options
(resolve_detector, DetectorRuntimeConfig, TorchDetector box voting on the committed model)
and the benchmark on a few real patchworks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sar_atd.boxes import mask_box
from sar_atd.detectors.base import Detections
from sar_atd.tta import (
    TtaDetector,
    View,
    box_voting,
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
    # a view's low-scored duplicate opens its own cluster instead of diluting the target's
    dup = [np.array([[0, 0, 10, 10], [0, 0, 10, 11]]), np.array([[1, 0, 11, 10]])]
    dup_s = [np.array([0.9, 0.1]), np.array([0.9])]
    out = weighted_box_fusion(dup, dup_s, 0.55)
    np.testing.assert_allclose(out.scores, [0.9, 0.05], atol=1e-6)
    np.testing.assert_allclose(out.boxes[0], [0.5, 0, 10.5, 10], atol=1e-6)
    orig = weighted_box_fusion(dup, dup_s, 0.55, one_per_view=False)
    np.testing.assert_allclose(orig.scores, [1.9 / 3], atol=1e-6)
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


def test_box_voting_arithmetic() -> None:
    """NMS keeps the same boxes and scores; a kept box becomes the score-weighted mean of the
    candidates with IoU >= vote_iou (its own included)."""
    b = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [30, 30, 40, 40], [0, 0, 10, 20]],
                 np.float32)
    s = np.array([0.9, 0.3, 0.5, 0.2])
    out = box_voting(b, s, nms_iou=0.5, vote_iou=0.5)
    # IoU([0,0,10,10], [2,0,12,10]) = 80/120 > 0.5: suppressed, votes; [0,0,10,20]: IoU 0.5,
    # not suppressed (NMS drops IoU > 0.5) and votes (>= 0.5) on box 0, box 0 on it
    np.testing.assert_allclose(out.scores, [0.9, 0.5, 0.2], atol=1e-6)
    np.testing.assert_allclose(out.boxes[0], [(2 * 0.3) / 1.4, 0, (10 * 1.1 + 12 * 0.3) / 1.4,
                                              (10 * 1.2 + 20 * 0.2) / 1.4], atol=1e-5)
    np.testing.assert_allclose(out.boxes[1], [30, 30, 40, 40])
    np.testing.assert_allclose(out.boxes[2], [0, 0, 10, (10 * 0.9 + 20 * 0.2) / 1.1],
                               atol=1e-5)
    strict = box_voting(b, s, nms_iou=0.5, vote_iou=0.7)  # nobody else overlaps >= 0.7
    np.testing.assert_allclose(strict.boxes, b[[0, 2, 3]])
    assert len(box_voting(b, s, 0.5, 0.5, max_detections=1)) == 1
    assert len(box_voting(np.zeros((0, 4)), np.zeros(0))) == 0
    with pytest.raises(ValueError, match="vote_iou"):
        box_voting(b, s, 0.5, 0.0)
    with pytest.raises(ValueError, match="non-negative"):
        box_voting(b, -s)


def test_runtime_options_build_and_refuse() -> None:
    """resolve_detector(tta=...) wraps the detector; bad box-voting values and views in the
    runtime config are refused with one clear message (a voting setting an exported graph
    does not hold: tests/test_export_voting.py)."""
    from sar_atd.config import DetectorRuntimeConfig
    from sar_atd.runtime import resolve_detector

    det, desc = resolve_detector("cfar", tta="identity,mirror")
    assert isinstance(det, TtaDetector) and desc["tta"] == ["identity", "mirror"]
    assert not isinstance(resolve_detector("cfar", tta="")[0], TtaDetector)
    with pytest.raises(ValueError, match="box_voting_iou"):
        resolve_detector("cfar", box_voting_iou=1.5)
    assert DetectorRuntimeConfig(box_voting_iou=0.5, tta="identity,mirror").tta
    with pytest.raises(ValueError, match="DetectorRuntimeConfig.tta: unknown TTA view"):
        DetectorRuntimeConfig(tta="flipud")
    with pytest.raises(ValueError, match="DetectorRuntimeConfig.box_voting_iou"):
        DetectorRuntimeConfig(box_voting_iou=-0.1)


def test_torch_box_voting_keeps_nms_boxes_and_scores() -> None:
    """On the committed model, box voting returns the boxes plain NMS keeps (same scores)
    with coordinates moved by at most a few pixels."""
    import torch

    from sar_atd.runtime import resolve_detector

    model = Path(__file__).resolve().parents[1] / "models" / "default.pt"
    if not model.is_file():
        pytest.skip(f"no committed model at {model}")
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    img = np.clip(rng.gamma(1.5, 12.0, (160, 160)), 0, 255).astype(np.uint8)
    img[60:75, 50:80] = 230  # a bright vehicle-sized blob, a dark shadow above it
    img[45:60, 50:80] = 3
    plain = resolve_detector(str(model), score_threshold=0.05, box_voting_iou="none")[0]
    plain = plain.detect(img)
    voter, desc = resolve_detector(str(model), score_threshold=0.05, box_voting_iou=0.5)
    voted = voter.detect(img)
    assert desc["box_voting_iou"] == 0.5 and len(plain) > 0
    np.testing.assert_allclose(voted.scores, plain.scores, atol=1e-6)
    assert np.abs(voted.boxes - plain.boxes).max() < 8.0


def test_tta_benchmark_on_a_few_real_patchworks(mstar_chips: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    """bench_box_tta prints CFAR beside the model's view combinations and box-voting rows,
    with AP25 >= AP50 >= AP70 on every set and a time ratio of 1 for the identity view; bad
    views are usage errors."""
    from benchmarks.bench_box_tta import main

    assert main(["--n", "1", "--n-heldback", "1", "--n-stretch", "1", "--n-tune", "1",
                 "--views", "identity,mirror"]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ")]
    labels = [r.split("|")[1].strip() for r in rows[1:]]  # rows[0]: header
    assert labels[0] == "CFAR-CA" and labels[1] == "identity"
    assert "identity+mirror" in labels and any(lb.startswith("identity+mirror + side bias")
                                                for lb in labels)
    assert "box voting (IoU 0.5)" in labels and "box voting (IoU 0.5), identity+mirror" in labels
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
