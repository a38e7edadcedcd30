"""Segmenter: metrics on a hand-computed case, labels from the overlay pipeline, a few real
training steps whose loss falls, checkpoint round trip, and ``sar-atd segment eval``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sar_atd_training.segmentation.metrics import confusion, iou_dice, summarise
from sar_atd_training.segmentation.model import (
    Segmenter,
    SegmenterLoadError,
    UNet,
    UNetConfig,
    save_segmenter,
)
from sar_atd_training.segmentation.train import SegmenterConfig, segmentation_loss


def test_iou_dice_hand_computed() -> None:
    """Target: TP 2, FP 1, FN 1 -> IoU 2/4, Dice 4/6; shadow: TP 1, FP 0, FN 1 -> 1/2, 2/3."""
    truth = np.array([[1, 1, 1, 0], [2, 2, 0, 0]])
    pred = np.array([[1, 1, 0, 1], [2, 0, 0, 0]])
    cm = confusion(pred, truth)
    assert cm.sum() == truth.size
    iou, dice = iou_dice(cm)
    assert iou[1] == pytest.approx(0.5) and dice[1] == pytest.approx(4 / 6)
    assert iou[2] == pytest.approx(0.5) and dice[2] == pytest.approx(2 / 3)
    # background: TP 3 (cells (0,3)? no: truth 0 at (0,3),(1,2),(1,3); pred 0 at (1,2),(1,3))
    assert iou[0] == pytest.approx(2 / 5)
    s = summarise([cm, cm], ("background", "target", "shadow"))
    assert s["pooled"]["target"]["iou"] == pytest.approx(0.5)
    assert s["mean_over_chips"]["shadow"]["dice"] == pytest.approx(2 / 3)
    assert s["pooled"]["overall"]["iou"] == pytest.approx(0.5)


def test_iou_undefined_when_class_absent() -> None:
    iou, _ = iou_dice(confusion(np.zeros((3, 3), int), np.zeros((3, 3), int)))
    assert iou[0] == 1.0 and np.isnan(iou[1]) and np.isnan(iou[2])
    with pytest.raises(ValueError, match="shape"):
        confusion(np.zeros((2, 2), int), np.zeros((2, 3), int))


def _toy_batch(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Speckle with a bright rectangle (target) and a dark one above it (shadow)."""
    ims = (rng.rayleigh(30, (n, size, size))).clip(0, 255)
    labs = np.zeros((n, size, size), np.uint8)
    for b in range(n):
        r, c = rng.integers(10, size - 10), rng.integers(2, size - 12)
        labs[b, r - 8:r, c:c + 8] = 2
        labs[b, r:r + 5, c:c + 8] = 1
    ims[labs == 1] = rng.uniform(150, 255, (labs == 1).sum())
    ims[labs == 2] *= 0.2
    return ims.astype(np.uint8), labs


def test_segmenter_loss_falls_in_a_few_steps() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = SegmenterConfig(unet=UNetConfig(channels=(8, 16)), steps=40)
    model = UNet(cfg.unet).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        ims, labs = _toy_batch(4, 32, rng)
        out = model(torch.from_numpy(ims.astype(np.float32))[:, None])
        assert isinstance(out, list) and out[0].shape == (4, 3, 32, 32)
        loss = segmentation_loss(out, torch.from_numpy(labs.astype(np.int64)), cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_checkpoint_round_trip_and_any_chip_size(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = UNet(UNetConfig(channels=(4, 8, 16)))
    path = save_segmenter(tmp_path / "seg.pt", model, {"torch": torch.__version__})
    seg = Segmenter.load(path)
    im = np.random.default_rng(0).integers(0, 255, (37, 45), dtype=np.uint8)
    ref = Segmenter(model.eval()).predict_proba([im])[0]
    out = seg.predict_proba([im])[0]
    assert out.shape == (3, 37, 45)
    np.testing.assert_allclose(out, ref, atol=1e-6)
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-5)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SegmenterLoadError, match="cannot read segmenter"):
        Segmenter.load(bad)
    with pytest.raises(SegmenterLoadError, match="not found"):
        Segmenter.load(tmp_path / "none.pt")


def test_sliding_window_inference(tmp_path: Path) -> None:
    """Chips larger than the stored window are predicted in windows of that size: the result
    is the average of the overlapping windows' own predictions; smaller chips are whole."""
    from sar_atd_training.segmentation.model import _starts

    assert _starts(40, 64) == [0] and _starts(96, 32) == [0, 16, 32, 48, 64]
    assert _starts(70, 32) == [0, 16, 32, 38]
    torch.manual_seed(0)
    model = UNet(UNetConfig(channels=(4, 8, 16))).eval()
    path = save_segmenter(tmp_path / "seg.pt", model, {}, window=32)
    seg = Segmenter.load(path)
    assert seg.window == 32 and Segmenter.load(path, window=0).window is None
    rng = np.random.default_rng(0)
    big = rng.integers(0, 255, (48, 40), dtype=np.uint8)
    out = seg.predict_proba([big])[0]
    whole = Segmenter(model).predict_proba([big])[0]
    assert out.shape == (3, 48, 40) and not np.allclose(out, whole, atol=1e-3)
    # hand-built average: rows 0-31 / 16-47 (stride 16), columns 0-31 / 8-39 (flush)
    acc, cnt = np.zeros((3, 48, 40)), np.zeros((48, 40))
    for y0 in (0, 16):
        for x0 in (0, 8):
            acc[:, y0:y0 + 32, x0:x0 + 32] += Segmenter(model).predict_proba(
                [np.ascontiguousarray(big[y0:y0 + 32, x0:x0 + 32])])[0]
            cnt[y0:y0 + 32, x0:x0 + 32] += 1
    np.testing.assert_allclose(out, acc / cnt, atol=1e-5)
    small = big[:24, :30]
    np.testing.assert_allclose(seg.predict_proba([small])[0],
                               Segmenter(model).predict_proba([small])[0], atol=1e-6)
    # checkpoints without a stored window fall back to the recipe's vignette size
    meta = {"record": {"recipe": {"data": {"overlay": {"image_size": 24}}}}}
    assert Segmenter.load(save_segmenter(tmp_path / "old.pt", model, meta)).window == 24


def test_vignette_labels_from_overlay_pipeline() -> None:
    """Target label = placed footprint, shadow label = shadow minus target, one target."""
    from sar_atd_training.clutter import BackgroundSet
    from sar_atd_training.overlay import OverlayConfig, OverlayPipeline
    from sar_atd_training.overlay.toybank import make_toy_bank
    from sar_atd_training.segmentation.data import (
        VignetteConfig,
        augment,
        generate_vignettes,
    )

    rng = np.random.default_rng(1)
    bg = (rng.normal(size=(160, 160)) + 1j * rng.normal(size=(160, 160))).astype(np.complex64)
    bank = make_toy_bank(size=48)
    cfg = VignetteConfig(overlay=OverlayConfig(image_size=64, targets_per_image=(1, 1),
                                               box_mode="support"), generation_batch=4)
    pipe = OverlayPipeline(cfg.overlay, bank, BackgroundSet.from_arrays([bg * 0.05]))
    ims, labs = generate_vignettes(cfg, 6, seed=3, pipeline=pipe)
    ims2, labs2 = generate_vignettes(cfg, 6, seed=3, pipeline=pipe)
    assert ims.shape == labs.shape == (6, 64, 64) and ims.dtype == np.uint8
    np.testing.assert_array_equal(ims, ims2)
    np.testing.assert_array_equal(labs, labs2)
    for lab in labs:
        assert (lab == 1).any() and (lab == 2).any()
        assert set(np.unique(lab)) <= {0, 1, 2}
    a, b = augment(ims, labs, dataclasses.replace(cfg, hflip_prob=1.0, jpeg_prob=0.0), rng)
    np.testing.assert_array_equal(b, labs[:, :, ::-1])
    from sar_atd.errors import ConfigError

    with pytest.raises(ConfigError, match="box_mode"):
        VignetteConfig(overlay=OverlayConfig(image_size=64, box_mode="union"))


def test_segment_eval_cli_on_real_chips(mstar_chips: Path, tmp_path: Path) -> None:
    from sar_atd_training.cli import main

    torch.manual_seed(0)
    model = save_segmenter(tmp_path / "seg.pt", UNet(UNetConfig(channels=(4, 8))), {})
    out = tmp_path / "ev"
    rc = main(["segment", "eval", "--chips", str(mstar_chips), "--model", str(model),
               "--out", str(out), "--n", "3", "--no-progress"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_chips"] == 3
    assert 0.0 <= m["pooled"]["target"]["iou"] <= 1.0
    assert (out / "examples.png").is_file() and (out / "report.md").is_file()
    # never overwrite a run
    assert main(["segment", "eval", "--chips", str(mstar_chips), "--model", str(model),
                 "--out", str(out), "--n", "3", "--no-progress"]) == 1


@pytest.mark.parametrize("name", ["segmenter.yaml", "segmenter_large.yaml"])
def test_segmenter_recipes_load(name: str) -> None:
    from sar_atd_training.segmentation.train import load_segmenter_config

    root = Path(__file__).resolve().parents[1]
    cfg = load_segmenter_config(root / "training" / "configs" / name)
    assert cfg.data.overlay.box_mode == "support" and cfg.data.overlay.image_size == 128
    assert cfg.steps >= 250 and len(cfg.unet.channels) >= 4
