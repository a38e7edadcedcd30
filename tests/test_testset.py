"""Test-set builders: real cut-outs land where their boxes say, OOD sets hold no target box
when built without targets and detections on OOD objects are counted, builds are
deterministic by seed, inconsistent inputs are refused with one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from sar_atd.detectors.base import Detections
from sar_atd_training.testsets.builders import (
    TestSetConfig,
    TestSetError,
    build_testset,
    write_testset,
)
from sar_atd_training.testsets.extract import make_cutout, paste_cutout
from sar_atd_training.testsets.ood import ood_scores


def _chip(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A linear-rendered chip: clutter ~30, a bright 10x6 target, a dark shadow above it."""
    amp = rng.rayleigh(30 / 1.18, (size, size))
    mask = np.zeros((size, size), np.uint8)
    mask[20:32, 25:31] = 2
    mask[32:42, 25:31] = 1
    amp[mask == 1] = rng.uniform(180, 250, (mask == 1).sum())
    amp[mask == 2] *= 0.25
    return np.clip(amp, 0, 255).astype(np.uint8), mask


def test_cutout_pasted_where_its_box_says() -> None:
    rng = np.random.default_rng(0)
    chip, mask = _chip(rng)
    cut = make_cutout("T72/x", "T72", chip, mask, sarbake=mask)
    assert cut is not None
    np.testing.assert_array_equal(cut.target_box, [25, 32, 31, 42])
    np.testing.assert_array_equal(cut.sarbake_box, cut.target_box)
    canvas = rng.rayleigh(0.01, (200, 200)).astype(np.float32)  # other gain than the chip
    row, col = 70, 110
    paste_cutout(canvas, cut, row, col)
    box = (cut.target_box + np.array([col, row, col, row])).astype(int)
    inside = canvas[box[1]:box[3], box[0]:box[2]]
    ring = canvas[box[1] - 3:box[3] + 3, box[0] - 3:box[2] + 3].copy()
    ring[3:-3, 3:-3] = np.nan
    # the bright target sits exactly in the box; clutter level follows the canvas
    assert np.median(inside) > 4 * np.nanmedian(canvas)
    assert np.nanmax(ring[ring == ring]) < np.min(inside) * 1.01 or np.nanmedian(ring) < \
        np.median(inside) / 2
    sh = canvas[row + 20:row + 32, col + 25:col + 31]
    assert np.median(sh) < 0.5 * np.median(canvas)  # the real shadow came along


def _chips_folder(root: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(1)
    d = root / "chips" / "T72"
    d.mkdir(parents=True)
    for i in range(n):
        chip, mask = _chip(rng)
        cv2.imwrite(str(d / f"c{i}.jpeg"), chip)
        cv2.imwrite(str(d / f"c{i}.mask.png"), mask)
    return root / "chips"


def test_real_in_background_boxes_cover_pasted_targets(tmp_path: Path) -> None:
    chips = _chips_folder(tmp_path)
    cfg = TestSetConfig(kind="real-in-background", n=2, image_size=128, chips=str(chips),
                        cut_with="sarbake", generated_backgrounds=1,
                        background_size=(200, 200), targets_per_image=(2, 2))
    ims = build_testset(cfg)
    again = build_testset(cfg)
    for a, b in zip(ims, again):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.boxes, b.boxes)
    for it in ims:
        assert it.boxes.shape == (2, 4)
        np.testing.assert_array_equal(it.boxes, it.check_boxes)  # oracle cut: same boxes
        for b in it.boxes.astype(int):
            x0, y0, x1, y1 = np.clip(b, 0, 128)
            assert np.median(it.image[y0:y1, x0:x1]) > 3 * np.median(it.image)
    write_testset(ims, cfg, tmp_path / "set")
    man = json.loads((tmp_path / "set" / "manifest.json").read_text())
    assert man["kind"] == "real-in-background" and man["n_targets"] == 4
    assert man["box_agreement"]["mean_iou"] == pytest.approx(1.0)
    assert (tmp_path / "set" / "annotations_sarbake.json").is_file()
    with pytest.raises(TestSetError, match="already exists"):
        write_testset(ims, cfg, tmp_path / "set")


@pytest.fixture(scope="module")
def tiny_bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sar_atd_training.simulator.bank import BankConfig, write_bank

    out = tmp_path_factory.mktemp("bank") / "bank"
    write_bank(out, BankConfig(classes=("BRDM_2",), azimuth_step_deg=30,
                               depressions_deg=(17.0,), objects=("tree", "house"),
                               object_azimuths_deg=(0.0, 90.0, 15.0)), workers=1,
               progress=False)
    return out


def _overlay_cfg(kind: str, bank: Path, **kw: object) -> TestSetConfig:
    return TestSetConfig(kind=kind, n=2, image_size=192, bank=str(bank),
                         generated_backgrounds=1, background_size=(256, 256), **kw)


def test_ood_without_targets_holds_no_target_box(tiny_bank: Path, tmp_path: Path) -> None:
    cfg = _overlay_cfg("ood", tiny_bank, targets_per_image=(0, 0), ood_per_image=(1, 2))
    ims = build_testset(cfg)
    assert all(len(it.boxes) == 0 for it in ims)
    assert all(len(it.ood_boxes) >= 1 for it in ims)
    write_testset(ims, cfg, tmp_path / "ood")
    coco = json.loads((tmp_path / "ood" / "annotations.json").read_text())
    ood = json.loads((tmp_path / "ood" / "ood.json").read_text())
    assert coco["annotations"] == []
    assert len(ood["annotations"]) == sum(len(it.ood_boxes) for it in ims)


def test_detections_on_ood_objects_are_counted() -> None:
    ood = [np.array([[10, 10, 40, 40], [100, 100, 130, 120]], np.float32),
           np.zeros((0, 4), np.float32)]
    tgt = [np.array([[60, 60, 80, 80]], np.float32), np.array([[5, 5, 20, 20]], np.float32)]
    fire = [Detections(np.concatenate([ood[0], tgt[0]]), np.array([0.9, 0.8, 0.95],
                                                                     np.float32)),
            Detections(tgt[1], np.array([0.9], np.float32))]
    s = ood_scores(fire, ood, tgt, score_threshold=0.5)
    assert s["ood_false_alarms"] == 2 and s["ood_objects_hit"] == 2
    # ranked: target (FP), OOD hit, target (FP), OOD hit -> precision 1/2 at recall 1/2 and 1
    assert s["ood_AP25"] == pytest.approx(0.5)
    assert s["target_recall"] == pytest.approx(1.0)
    quiet = [Detections(), Detections()]
    s = ood_scores(quiet, ood, tgt, score_threshold=0.5)
    assert s["ood_false_alarms"] == 0 and s["target_recall"] == 0.0  # nothing detected
    s = ood_scores(fire, ood, tgt, score_threshold=0.99)  # above every score
    assert s["ood_false_alarms"] == 0


def test_synthetic_set_deterministic_by_seed(tiny_bank: Path) -> None:
    a = build_testset(_overlay_cfg("synthetic-in-background", tiny_bank, seed=3))
    b = build_testset(_overlay_cfg("synthetic-in-background", tiny_bank, seed=3))
    c = build_testset(_overlay_cfg("synthetic-in-background", tiny_bank, seed=4))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.image, y.image)
        np.testing.assert_array_equal(x.boxes, y.boxes)
    assert any(not np.array_equal(x.image, z.image) for x, z in zip(a, c))
    assert all(len(x.boxes) >= 1 and len(x.ood_boxes) == 0 for x in a)


def test_inconsistent_inputs_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from sar_atd.errors import ConfigError
    from sar_atd_training.cli import main

    with pytest.raises(TestSetError, match="--segmenter"):
        TestSetConfig(kind="real-in-background", chips="x")
    with pytest.raises(TestSetError, match="--bank"):
        TestSetConfig(kind="ood")
    with pytest.raises(ConfigError, match="unknown test set"):
        TestSetConfig(kind="nope")
    assert main(["testset", "build", "patchwork", "--out", str(tmp_path / "o"),
                 "--no-targets"]) == 1
    err = capsys.readouterr().err
    assert "--no-targets applies to the ood set only" in err and "Traceback" not in err
