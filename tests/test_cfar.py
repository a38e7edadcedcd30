"""CFAR baseline: finds a known bright target in speckle, stays quiet on pure speckle."""

from __future__ import annotations

import numpy as np
import pytest

from sar_atd.boxes import box_iou
from sar_atd.detectors.base import Detections, Detector
from sar_atd.detectors.cfar import CfarConfig, CfarDetector, cfar_statistic

TARGET_BOX = np.array([[120, 90, 150, 110]], np.float32)  # 30 x 20 px vehicle


def _speckle(seed: int, shape: tuple[int, int] = (256, 256), target: bool = True
             ) -> np.ndarray:
    """Rayleigh-amplitude clutter (mean ~35 in 8 bits) with a bright textured target."""
    rng = np.random.default_rng(seed)
    amp = rng.rayleigh(28.0, shape)
    if target:
        x0, y0, x1, y1 = TARGET_BOX[0].astype(int)
        amp[y0:y1, x0:x1] = rng.rayleigh(28.0 * 5, (y1 - y0, x1 - x0))
    return np.clip(np.rint(amp), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("method", ["ca", "os"])
def test_finds_bright_target(method: str) -> None:
    """The best-scored detection overlaps the known target with IoU > 0.5."""
    det = CfarDetector(CfarConfig(method=method))
    assert isinstance(det, Detector)
    for seed in (0, 1):
        out = det.detect(_speckle(seed))
        assert isinstance(out, Detections) and len(out) >= 1
        best = out.boxes[np.argmax(out.scores)]
        assert box_iou(best[None], TARGET_BOX)[0, 0] > 0.5
        assert out.boxes.dtype == np.float32 and np.all(np.isfinite(out.scores))


def test_quiet_on_pure_speckle() -> None:
    """Homogeneous speckle at default settings gives (almost) no detections."""
    det = CfarDetector()
    counts = [len(det.detect(_speckle(s, target=False))) for s in range(3)]
    assert sum(counts) <= 1, counts


def test_statistic_is_cfar() -> None:
    """The CA statistic does not depend on the clutter level (scale invariance)."""
    img = _speckle(3, target=False).astype(np.float64)
    cfg = CfarConfig()
    np.testing.assert_allclose(cfar_statistic(img, cfg), cfar_statistic(img * 3.0, cfg),
                               rtol=1e-9, atol=1e-9)


def test_boxes_inside_image_at_borders() -> None:
    """A target touching the image corner gives a box clipped to the image."""
    img = _speckle(4, target=False)
    img[:15, :25] = 250
    out = CfarDetector().detect(img)
    assert len(out) >= 1
    best = out.boxes[np.argmax(out.scores)]
    assert best[0] == 0 and best[1] == 0
    assert box_iou(best[None], np.array([[0, 0, 25, 15]]))[0, 0] > 0.5


def test_bad_input_raises() -> None:
    """NaN pixels, wrong dtype and wrong ndim raise a clear ValueError."""
    det = CfarDetector()
    bad = np.zeros((64, 64), np.float32)
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        det.detect(bad)
    with pytest.raises(ValueError, match="dtype"):
        det.detect(np.zeros((64, 64), np.int16))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        det.detect(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="guard_size"):
        CfarConfig(guard_size=71, train_size=61)
    with pytest.raises(ValueError, match="method"):
        CfarConfig(method="go")
