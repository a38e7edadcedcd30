"""Class-aware box calibration: offsets per side and mode, files, fitting, a short training."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sar_atd.box_calibration import (
    BoxCalibrationError,
    BoxCalibrator,
    ClassNet,
    apply_side_offsets,
    load_box_calibrator,
    offsets_for,
    save_box_calibrator,
)
from sar_atd.detectors.base import Detections


def test_offsets_move_each_side_inwards_by_its_value() -> None:
    """far = y0, near = y1, left = x0, right = x1; + moves inwards, - outwards."""
    box = np.array([[10.0, 20.0, 40.0, 60.0]])
    out = apply_side_offsets(box, np.array([2.0, -1.0, 3.0, 0.5]))
    np.testing.assert_allclose(out, [[13.0, 22.0, 39.5, 61.0]])
    # per-box offsets, and a correction wider than the box keeps 1 px centred
    two = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 4.0, 4.0]])
    out = apply_side_offsets(two, np.array([[0, 0, 0, 0], [0, 0, 3.0, 3.0]]))
    np.testing.assert_allclose(out, [[0, 0, 10, 10], [1.5, 0, 2.5, 4]])


def test_offsets_match_the_quality_module() -> None:
    from sar_atd_training.quality.boxes import apply_side_offsets as ref

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (6, 2))
    b = np.concatenate([xy, xy + rng.uniform(2, 30, (6, 2))], 1)
    o = rng.normal(0, 2, 4)
    np.testing.assert_allclose(apply_side_offsets(b, o), ref(b, o), atol=1e-5)


def test_modes_hard_soft_linear() -> None:
    table = np.array([[4.0, 0, 0, 0], [-2.0, 0, 0, 2.0]])
    lin = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0.5, 0.5, 0.5, 0.5]])
    p = np.array([[0.75, 0.25], [0.2, 0.8]])
    np.testing.assert_allclose(offsets_for(p, "hard", table, lin), [[4, 0, 0, 0],
                                                                    [-2, 0, 0, 2]])
    np.testing.assert_allclose(offsets_for(p, "soft", table, lin), [[2.5, 0, 0, 0.5],
                                                                    [-0.8, 0, 0, 1.6]])
    np.testing.assert_allclose(offsets_for(p, "linear", table, lin),
                               [[1.25, 0.75, 0.5, 0.5], [0.7, 1.3, 0.5, 0.5]])
    with pytest.raises(BoxCalibrationError, match="unknown box-calibration mode"):
        offsets_for(p, "median", table, lin)


class _FixedNet(torch.nn.Module):
    """Logits that do not depend on the input: class probabilities (0.75, 0.25)."""

    channels = (4,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.tensor([[0.75, 0.25]])).expand(len(x), 2)


def test_calibrator_applies_soft_offsets_to_detections() -> None:
    cal = BoxCalibrator(_FixedNet(), ["A", "B"], 32, "soft",
                        offsets=np.array([[4.0, 0, 0, 0], [-2.0, 0, 0, 2.0]]))
    img = np.full((64, 64), 40, np.uint8)
    det = Detections(np.array([[10.0, 20.0, 40.0, 50.0]], np.float32),
                     np.array([0.9], np.float32))
    out = cal.apply(img, det)
    np.testing.assert_allclose(out.boxes, [[10.0, 22.5, 39.5, 50.0]], atol=1e-5)
    assert out.scores.tolist() == pytest.approx([0.9])
    cal.mode = "hard"
    np.testing.assert_allclose(cal.calibrate(img, det.boxes), [[10, 24, 40, 50]])
    assert len(cal.apply(img, Detections(np.zeros((0, 4), np.float32),
                                         np.zeros(0, np.float32)))) == 0
    with pytest.raises(BoxCalibrationError, match="uint8"):
        cal.probabilities(img.astype(np.float32), det.boxes)


def test_save_load_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    net = ClassNet(3, (4, 4))
    off = np.arange(12, dtype=np.float64).reshape(3, 4)
    cal = BoxCalibrator(net, ["X", "Y", "Z"], 32, "hard", offsets=off)
    path = tmp_path / "c.pt"
    save_box_calibrator(path, cal)
    back = load_box_calibrator(path)
    assert back.classes == ("X", "Y", "Z") and back.window == 32 and back.mode == "hard"
    np.testing.assert_allclose(back.offsets, off)
    img = (np.arange(48 * 48).reshape(48, 48) % 251).astype(np.uint8)
    box = np.array([[10.0, 10.0, 30.0, 26.0]], np.float32)
    np.testing.assert_allclose(back.probabilities(img, box), cal.probabilities(img, box),
                               atol=1e-6)
    assert load_box_calibrator(path, mode="soft").mode == "soft"


def test_missing_or_corrupt_file_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(BoxCalibrationError, match="not found"):
        load_box_calibrator(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00not a torch file" * 10)
    with pytest.raises(BoxCalibrationError, match="unreadable"):
        load_box_calibrator(bad)
    other = tmp_path / "other.pt"
    torch.save({"format": "sar-atd-verifier"}, other)
    with pytest.raises(BoxCalibrationError, match="not a box-calibrator file"):
        load_box_calibrator(other)
    broken = tmp_path / "broken.pt"
    torch.save({"format": "sar-atd-box-calibrator", "version": 1, "window": 32,
                "channels": [4], "classes": ["A", "B"], "mode": "hard",
                "offsets": [[0, 0, 0, 0]], "linear": [[0] * 4] * 3, "state_dict": {}},
               broken)
    with pytest.raises(BoxCalibrationError, match="malformed"):
        load_box_calibrator(broken)
    net = ClassNet(2, (4,))
    wrong = tmp_path / "wrong.pt"
    save_box_calibrator(wrong, BoxCalibrator(net, ["A", "B"], 32))
    doc = torch.load(wrong, weights_only=True)
    doc["offsets"] = [[0.0] * 4]  # one row for two classes
    torch.save(doc, wrong)
    with pytest.raises(BoxCalibrationError, match=r"offsets must be \(2, 4\)"):
        load_box_calibrator(wrong)


def test_fit_candidates_recover_per_class_offsets() -> None:
    """Class 0 boxes are 3 px too long on the far side, class 1 2 px too short: the per-class
    table, the predicted-class table and the linear fit all find it."""
    from sar_atd_training.boxcal.calibrate import Matched, fit_candidates, fit_class_offsets

    err = np.array([[3.0, 0, 0, 0]] * 5 + [[-2.0, 0, 0, 1.0]] * 5)
    labels = np.array([0] * 5 + [1] * 5)
    probs = np.eye(2)[labels].astype(np.float32)
    tab = fit_class_offsets(err, labels, 3)
    np.testing.assert_allclose(tab[:2], [[3, 0, 0, 0], [-2, 0, 0, 1]])
    np.testing.assert_allclose(tab[2], np.median(err, 0))  # absent class: global median
    m = Matched(err, labels, probs, [], [])
    c = fit_candidates(m, 2)
    np.testing.assert_allclose(c["hard_by_pred"][1], [[3, 0, 0, 0], [-2, 0, 0, 1]])
    mode, _, lin = c["linear"]
    np.testing.assert_allclose(offsets_for(probs[[0, 5]], mode, np.zeros((2, 4)), lin),
                               [[3, 0, 0, 0], [-2, 0, 0, 1]], atol=1e-2)


@pytest.mark.slow
def test_training_a_few_steps_lowers_the_loss(tmp_path) -> None:
    """A few steps on a toy bank (three toy classes of different sizes): the loss falls, the
    file loads with zero offsets (no calibration configured), a rerun refuses the folder."""
    from sar_atd_training.boxcal.data import BoxCalDataConfig
    from sar_atd_training.boxcal.train import BoxCalTrainConfig, train_box_calibrator
    from sar_atd_training.overlay.pipeline import OverlayConfig
    from sar_atd_training.overlay.toybank import make_toy_bank

    data = BoxCalDataConfig(split_seed=None, generated_backgrounds=1,
                            background_size=(256, 256), images=6, val_images=3,
                            generation_batch=3,
                            overlay=OverlayConfig(image_size=224, targets_per_image=(2, 3),
                                                  ood_per_image=(0, 0), return_masks=False))
    cfg = BoxCalTrainConfig(data=data, window=64, channels=(8, 8, 8, 8), steps=40,
                            batch_size=16, lr=0.01, log_interval=10, label_smoothing=0.0)
    rec = train_box_calibrator(cfg, tmp_path / "run", progress=False,
                               bank=make_toy_bank(azimuths_deg=(0.0, 90.0)))
    curve = rec["loss_curve"]
    assert np.mean(curve[-2:]) < 0.8 * curve[0], curve
    cal = load_box_calibrator(tmp_path / "run" / "box_calibrator.pt")
    assert cal.classes == ("BMP2", "T72", "ZIL131") and cal.window == 64
    assert not cal.offsets.any() and rec["calibration"] is None
    with pytest.raises(FileExistsError, match="exists"):
        train_box_calibrator(dataclasses.replace(cfg, steps=1), tmp_path / "run",
                             progress=False)


def test_config_refuses_bad_values(tmp_path) -> None:
    from sar_atd.errors import ConfigError
    from sar_atd_training.boxcal.train import load_boxcal_config

    p = tmp_path / "c.yaml"
    p.write_text("window: 40\n")
    with pytest.raises(ConfigError, match="multiple of 16"):
        load_boxcal_config(p)
    p.write_text("calibration:\n  mode: median\n")
    with pytest.raises(ConfigError, match="calibration.mode"):
        load_boxcal_config(p)
    p.write_text("colour: red\n")
    with pytest.raises(ConfigError):
        load_boxcal_config(p)


def test_cli_registers_the_trainer_and_a_missing_recipe_is_one_line(tmp_path, capsys
                                                                     ) -> None:
    from sar_atd_training.cli import main

    assert main(["train", "box-calibrator", "--help"]) == 0
    assert "--config" in capsys.readouterr().out
    rc = main(["train", "box-calibrator", "--config", str(tmp_path / "none.yaml"), "--out",
               str(tmp_path / "out")])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc != 0 and len(lines) == 1 and "none.yaml" in lines[0], err
    assert not (tmp_path / "out").exists()


def test_scale_jitter_keeps_the_window_size_and_is_off_by_default() -> None:
    from sar_atd_training.boxcal.data import BoxCalDataConfig, ClassPool, windows_of

    img = np.zeros((1, 200, 200), np.uint8)
    img[0, 90:110, 80:120] = 200
    pool = ClassPool(img, np.zeros(4, np.int64), np.tile([[80.0, 90, 120, 110]], (4, 1)).astype(
        np.float32), np.zeros(4, np.int64), ("A",))
    plain = BoxCalDataConfig(jitter_shift=0.0, jitter_scale=(1.0, 1.0), hflip_prob=0.0)
    c, m = windows_of(pool, np.arange(4), 48, plain, np.random.default_rng(0))
    assert c.shape == (4, 48, 48) and [int((x > 100).sum()) for x in c] == [800] * 4
    scaled = dataclasses.replace(plain, scale_jitter=(0.8, 1.2))
    c, m = windows_of(pool, np.arange(4), 48, scaled, np.random.default_rng(0))
    areas = [int((x > 100).sum()) for x in c]
    assert c.shape == m.shape == (4, 48, 48) and len(set(areas)) > 1
    assert all(0.6 * 800 <= a <= 1.5 * 800 for a in areas), areas
