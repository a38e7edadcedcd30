"""The rendering a model records for non-8-bit scenes: the tiler's use of the record, the
runtime-path 16-bit benchmark rendering, and ``sar-atd eval render-point`` (grid, choice,
validation-stream amplitudes, refusals)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from sar_atd.config import TilerConfig
from sar_atd.tiling import Tiler, config_with_render_record
from sar_atd_training.evaluation.render_point import (
    candidate_grid,
    choose_render_point,
    render_record,
    run_render_point,
    score_render_points,
    stream_amplitudes,
)
from sar_atd_training.quality.renderings import (
    MODEL_RENDERINGS,
    RENDERINGS,
    render_like_runtime,
    to_uint16,
    uint16_to_8bit,
)

torch.set_num_threads(1)

RECIPE_OVERLAY = {"render_gamma_range": [0.5, 1.5], "render_ref": "quantile",
                  "render_ref_quantile_range": [0.5, 0.5],
                  "render_ref_level_range": [12.0, 130.0]}


def _speckle(seed: int = 0, size: int = 48) -> np.ndarray:
    """Rayleigh clutter amplitude (float32 (size, size)) with one bright 6 x 6 target."""
    rng = np.random.default_rng(seed)
    amp = np.abs(rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size)))
    amp[20:26, 14:20] *= 12.0
    return amp.astype(np.float32)


def test_record_replaces_the_tiler_fields_only_with_render_model() -> None:
    rec = {"gamma": 1.0, "amplitude_ref": 0.0, "ref_quantile": 0.5, "ref_level": 70.0,
           "note": 3.0}
    cfg = config_with_render_record(TilerConfig(device="cpu"), rec)
    assert (cfg.gamma, cfg.amplitude_ref, cfg.ref_quantile, cfg.ref_level) == (1.0, 0.0, 0.5,
                                                                               70.0)
    kept = TilerConfig(device="cpu", render="config")
    assert config_with_render_record(kept, rec) is kept
    assert config_with_render_record(TilerConfig(device="cpu"), None).gamma == 0.5
    with pytest.raises(ValueError, match="ref_level"):
        config_with_render_record(TilerConfig(device="cpu"), {"ref_level": 300.0})


def test_runtime_16bit_rendering_puts_the_median_at_the_recorded_level() -> None:
    img8 = np.clip(np.round(_speckle() * 20), 0, 255).astype(np.uint8)
    img16 = to_uint16(img8)
    for gamma, level in ((0.75, 35.0), (1.0, 70.0)):
        rec = render_record(gamma, level)
        out = render_like_runtime(img16, rec)
        assert out.dtype == np.uint8 and out.shape == img8.shape
        assert abs(float(np.median(out)) - level) <= 1.0
        # exactly what the tiler makes of the scene with that record
        tiler = Tiler(config_with_render_record(TilerConfig(device="cpu"), rec))
        np.testing.assert_array_equal(out, tiler.prepare(img16).image.numpy())
        np.testing.assert_array_equal(out, MODEL_RENDERINGS["uint16"](img8, rec))
    # the fixed rule stays available by name: quarter power, median at 35
    np.testing.assert_array_equal(RENDERINGS["uint16_fixed35"](img8), uint16_to_8bit(img16))
    # ... which is the runtime's rule with gamma 0.5 and level 35 (float32 rounding aside)
    diff = (RENDERINGS["uint16_fixed35"](img8).astype(int)
            - render_like_runtime(img16, render_record(0.5, 35.0)))
    assert np.abs(diff).max() <= 1 and np.mean(diff != 0) < 0.01


def test_candidate_grid_is_bin_centres_inside_the_training_range() -> None:
    gammas, levels = candidate_grid(RECIPE_OVERLAY, 3, 4)
    assert gammas == pytest.approx([2 / 3, 1.0, 4 / 3], abs=1e-3)
    expect = 12.0 * (130.0 / 12.0) ** ((np.arange(4) + 0.5) / 4)
    assert levels == pytest.approx(expect.tolist(), abs=1e-3)
    assert all(12.0 < v < 130.0 for v in levels)
    assert candidate_grid(RECIPE_OVERLAY, 1, 1) == ([1.0], [pytest.approx(np.sqrt(1560.0))])
    with pytest.raises(ValueError, match="fixed white point"):
        candidate_grid({"render_gamma_range": [0.5, 1.0]})
    with pytest.raises(ValueError, match="grid size"):
        candidate_grid(RECIPE_OVERLAY, 0, 2)


def _rows(scores: list[list[float]]) -> list[dict[str, float]]:
    return [{"gamma": float(i), "level": float(j), "score": s}
            for i, r in enumerate(scores) for j, s in enumerate(r)]


def test_choice_prefers_a_broad_optimum_to_a_lone_spike_and_the_centre_on_ties() -> None:
    spike = [[0.50, 0.50, 0.50, 0.99],
             [0.80, 0.90, 0.90, 0.50],
             [0.80, 0.90, 0.90, 0.50]]
    best = choose_render_point(_rows(spike), 3, 4)
    # neighbourhood means: the spike (0, 3) 0.7225, (2, 1) 5.2 / 6 = 0.867 (the best)
    assert (best["gamma"], best["level"], best["score"]) == (2.0, 1.0, 0.9)
    assert best["smoothed"] == pytest.approx(5.2 / 6)
    flat = choose_render_point(_rows([[0.7] * 3] * 3), 3, 3)
    assert (flat["gamma"], flat["level"]) == (1.0, 1.0)
    with pytest.raises(ValueError, match="rows"):
        choose_render_point(_rows(spike), 2, 4)


def test_scoring_runs_the_detector_on_each_rendering() -> None:
    from sar_atd.detectors.cfar import CfarDetector

    amps = [_speckle(s) for s in range(3)]
    boxes = [np.array([[14.0, 20.0, 20.0, 26.0]], np.float32)] * 3
    rows = score_render_points(CfarDetector(), amps, boxes, [0.75, 1.0], [20.0, 60.0])
    assert [(r["gamma"], r["level"]) for r in rows] == [(0.75, 20.0), (0.75, 60.0),
                                                        (1.0, 20.0), (1.0, 60.0)]
    for r in rows:
        assert 0.0 <= r["AP70"] <= r["AP50"] <= r["AP25"] <= 1.0
        assert r["score"] == pytest.approx((r["AP50"] + r["AP70"]) / 2)
        assert abs(r["median"] - r["level"]) <= 1.0


def test_stream_amplitudes_are_the_validation_stream_before_its_lut() -> None:
    from sar_atd.sar.lut import power_law_render
    from sar_atd_training.clutter import BackgroundSet, ClutterConfig, generate_scene
    from sar_atd_training.overlay import OverlayConfig, OverlayDataset
    from sar_atd_training.overlay.toybank import make_toy_bank

    bank = make_toy_bank(classes=("T72",), azimuths_deg=(0.0, 90.0), size=48)
    bgs = BackgroundSet.from_arrays(
        [generate_scene(ClutterConfig(height=200, width=200), 4)], ["scene"])
    cfg = OverlayConfig(image_size=96, render_gamma_range=(0.5, 1.5), render_ref="quantile",
                        render_ref_level_range=(12.0, 130.0))

    def ds() -> OverlayDataset:
        return OverlayDataset(cfg, bank, bgs, seed=11, batch_size=2)

    expect = [next(it) for it in [iter(ds())] for _ in range(3)]
    got = stream_amplitudes(ds(), 3)
    assert len(got) == 3
    for (img, tgt), s in zip(expect, got, strict=True):
        assert torch.equal(img, s.image) and torch.equal(tgt["boxes"], s.boxes)
        r = s.meta["render"]
        np.testing.assert_array_equal(
            img.numpy(), power_law_render(s.complex_image.numpy(), r["gamma"], r["ref"],
                                          r["black"] or None))


def _args(tmp_path: Path, model: Path, **kw: object) -> argparse.Namespace:
    base = {"model": model, "bank": tmp_path, "n": 2, "seed": None, "n_gamma": 3,
            "n_level": 4, "gammas": None, "levels": None, "out": None, "write": False,
            "match_reference": None}
    return argparse.Namespace(**(base | kw))


def test_command_refusals_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from sar_atd.models.checkpoint import _FORMATS

    recipe = {"model": "retinanet_r18_fpn", "input_size": 128, "steps": 1,
              "data": {"kind": "toy"}}
    src = tmp_path / "m.pt"  # a valid file layout; its (empty) weights are never loaded
    torch.save({"format": next(iter(_FORMATS)), "model_name": "retinanet_r18_fpn",
                "model_kwargs": {}, "model": {}, "config": recipe}, src)
    before = src.read_bytes()
    assert run_render_point(_args(tmp_path, src)) == 1
    assert "no overlay training recipe" in capsys.readouterr().err
    assert run_render_point(_args(tmp_path, src, n=0)) == 2
    assert run_render_point(_args(tmp_path, src, out=tmp_path / "x.pt", write=True)) == 2
    assert run_render_point(_args(tmp_path, src, out=src)) == 2
    assert run_render_point(_args(tmp_path, src, match_reference=src)) == 2
    assert run_render_point(_args(tmp_path, src, levels=[30.0, 300.0])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 5 and all(e.startswith("sar-atd eval render-point: error:") for e in err)
    assert "exists" in err[2] and "--match-reference" in err[3] and "--levels" in err[4]
    assert src.read_bytes() == before  # the user's file is never touched by a refusal
