"""Box definitions and measurements (quality.boxes, quality.diagnosis, quality.synthetic) on
small fixed cases, the GIoU box-loss option, and the diagnosis on a few real patchworks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sar_atd.detectors.base import Detections
from sar_atd_training.quality.boxes import (
    SIDES,
    RefineConfig,
    apply_side_offsets,
    core_box,
    edge_errors,
    fit_side_offsets,
    mask_orientation_deg,
    refine_box,
    refine_boxes,
    returns_box,
    shadow_start_edge,
    side_fix_iou_gain,
)
from sar_atd_training.quality.diagnosis import (
    chip_records,
    diagnose,
    format_diagnosis,
    is_held_back,
    matched_boxes,
    orientation_bin,
    sample_patchworks,
    side_oracle_ap,
)
from sar_atd_training.quality.synthetic import sarbake_like_mask

torch.set_num_threads(1)


def target_mask(h: int = 40, w: int = 40) -> np.ndarray:
    """SARBake-style mask: target rows 20-29, cols 10-29; shadow rows 8-19 above it."""
    m = np.zeros((h, w), np.uint8)
    m[8:20, 10:30] = 2
    m[20:30, 10:30] = 1
    return m


def test_edge_errors_are_signed_outwards() -> None:
    """far = top, near = bottom; + where the box extends beyond the reference."""
    err = edge_errors(np.array([[10, 20, 30, 40]]), np.array([[12, 18, 30, 44]]))
    assert SIDES == ("far", "near", "left", "right")
    assert err.tolist() == [[-2.0, -4.0, 2.0, 0.0]]
    with pytest.raises(ValueError, match="same shape"):
        edge_errors(np.zeros((2, 4)), np.zeros((1, 4)))


def test_side_fix_gain_is_zero_for_a_correct_side_and_positive_otherwise() -> None:
    gain = side_fix_iou_gain(np.array([[0, 0, 10, 12]]), np.array([[0, 0, 10, 10]]))
    assert gain[0, 0] == 0 and gain[0, 2] == 0 and gain[0, 3] == 0
    assert gain[0, 1] == pytest.approx(1 - 100 / 120)


def test_returns_box_finds_weak_far_side_and_spill() -> None:
    m = target_mask()
    img = np.full(m.shape, 10.0)
    img[24:30, 10:30] = 100.0  # far rows 20-23 of the target have no returns
    assert returns_box(img, m).tolist() == [10, 24, 30, 30]
    img[30, 15] = 100.0  # 1 px beyond the near edge: blur spill, counted
    img[35, 15] = 100.0  # 6 px beyond: not the target
    assert returns_box(img, m).tolist() == [10, 24, 30, 31]
    assert returns_box(img, np.zeros_like(m)) is None
    with pytest.raises(ValueError, match="same 2-D shape"):
        returns_box(img[:10], m)


def test_core_box_drops_a_thin_barrel() -> None:
    m = target_mask()
    m[25, 30:38] = 1  # 1 px wide barrel to the right
    assert core_box(m).tolist() == [10, 20, 30, 30]
    assert core_box(m, radius=0).tolist() == [10, 20, 38, 30]


def test_shadow_start_and_orientation() -> None:
    m = target_mask()
    assert shadow_start_edge(m) == 20.0
    assert shadow_start_edge(np.where(m == 2, 0, m).astype(np.uint8)) is None
    assert mask_orientation_deg(m) == pytest.approx(0.0, abs=1e-6)  # long axis along x
    assert mask_orientation_deg(m.T.copy()) == pytest.approx(90.0, abs=1e-6)
    assert orientation_bin(0.0) == orientation_bin(170.0) == "long axis ~cross-range"
    assert orientation_bin(90.0) == "long axis ~range" and orientation_bin(None) == "unknown"


def test_sarbake_like_mask_values() -> None:
    t = np.zeros((3, 3), bool)
    t[1, 1] = True
    s = np.zeros((3, 3), bool)
    s[0, :] = True
    s[1, 1] = True  # target wins over shadow
    assert sarbake_like_mask(t, s).tolist() == [[2, 2, 2], [0, 1, 0], [0, 0, 0]]


def bright_rect_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.uniform(5, 15, (60, 60)).astype(np.float32)
    img[20:30, 15:40] = 120.0
    return img


def test_refine_box_snaps_configured_sides_only() -> None:
    img = bright_rect_image()
    loose = np.array([12, 17, 43, 34], np.float32)  # 3-4 px too large everywhere
    out = refine_box(img, loose, RefineConfig(sides=("near", "left"), smooth_px=1,
                                              min_count=1))
    assert out.tolist() == [15, 17, 43, 30]  # left and near moved, far and right kept
    tight = refine_box(img, loose, RefineConfig(sides=SIDES, smooth_px=1, min_count=1))
    assert tight.tolist() == [15, 20, 40, 30]
    limited = refine_box(img, loose, RefineConfig(sides=("near",), shrink_px=2, smooth_px=1))
    assert limited[3] == 32  # moves at most shrink_px inwards
    flat = np.full((60, 60), 10.0, np.float32)
    assert refine_box(flat, loose).tolist() == loose.tolist()  # no returns: unchanged
    assert refine_boxes(img, np.zeros((0, 4))).shape == (0, 4)
    with pytest.raises(ValueError, match="unknown side"):
        RefineConfig(sides=("top",))


def test_side_offsets_fit_and_undo_a_constant_bias() -> None:
    gt = np.array([[10, 20, 40, 40], [50, 60, 70, 90]], np.float32)
    pred = gt + np.array([-1, 2, 1.5, 1], np.float32)  # left +1, far -2, right +1.5, near +1
    off = fit_side_offsets(edge_errors(pred, gt))
    assert off.tolist() == [-2.0, 1.0, 1.0, 1.5]
    assert np.allclose(apply_side_offsets(pred, off), gt)
    assert fit_side_offsets(np.zeros((0, 4))).tolist() == [0, 0, 0, 0]
    thin = apply_side_offsets(np.array([[0, 0, 2, 2]]), np.array([0, 0, 3, 3]))
    assert thin[0, 2] - thin[0, 0] == 1.0  # never inverted: at least 1 px, centred


def test_held_back_split_is_deterministic_and_about_a_fifth() -> None:
    names = [f"T72/HB{i:05d}.000" for i in range(2000)]
    flags = [is_held_back(n) for n in names]
    assert flags == [is_held_back(n) for n in names]
    assert 0.17 < np.mean(flags) < 0.23


def test_retinanet_overlap_box_loss_trains() -> None:
    """The builder's box_loss reaches torchvision's head and gives a finite, differentiable
    regression loss that differs from the L1 one on the same batch."""
    from sar_atd.models import build_detector

    images = [torch.rand(1, 64, 64) * 255]
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 40.0, 30.0]]),
                "labels": torch.tensor([1])}]
    loss, losses = "giou", {}
    for name in ("l1", loss):
        torch.manual_seed(0)
        model = build_detector("retinanet_r18_fpn", box_loss=name).train()
        assert model.head.regression_head._loss_type == name
        out = model(images, targets)
        out["bbox_regression"].backward()
        losses[name] = float(out["bbox_regression"].detach())
        assert np.isfinite(losses[name])
    assert losses["l1"] != losses[loss]
    with pytest.raises(ValueError, match="box_loss"):
        build_detector("retinanet_r18_fpn", box_loss="iou")


def test_diagnosis_on_a_few_real_patchworks(mstar_chips: Path) -> None:
    """Same patchworks as build_patchworks; every target measured; CFAR boxes diagnosed."""
    from sar_atd.detectors.cfar import CfarConfig, CfarDetector
    from sar_atd_training.evaluation.patchwork import build_patchworks

    dset = sample_patchworks(chip_records(mstar_chips), n=2, seed=3)
    ref = build_patchworks(mstar_chips, n=2, seed=3, progress=False)
    for a, b in zip(dset.images, ref, strict=True):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
    assert len(dset.targets) == sum(len(it.boxes) for it in dset.images) == 32
    t = dset.targets[0]
    assert t.returns is not None and t.core is not None and t.shadow_start is not None
    assert t.shadow_start > t.gt[1]  # the shadow starts nearer than the extreme far pixel
    det = CfarDetector(CfarConfig())
    preds = [det.detect(it.image) for it in dset.images]
    diag = diagnose(dset, preds, "CFAR")
    assert len(diag.iou) == 32 and np.all((diag.iou > 0.1) & (diag.iou <= 1))
    text = format_diagnosis(diag)
    assert "By class" in text and "Far edge" in text
    # a perfect detector: zero side errors, IoU 1
    perfect = [Detections(it.boxes, np.ones(len(it.boxes))) for it in dset.images]
    d2 = diagnose(dset, perfect, "oracle")
    assert np.all(d2.iou == 1) and np.all(d2.err == 0)
    assert np.isfinite(matched_boxes(dset, perfect)).all()
    # boxes 12 px too long on the far side only: fixing the far side alone restores AP70 = 1
    shifted = [Detections(it.boxes - np.array([0, 12, 0, 0], np.float32),
                          np.ones(len(it.boxes))) for it in dset.images]
    oracle = side_oracle_ap(dset, shifted)
    assert oracle["far"] == 1.0 and oracle["near"] == oracle["raw"] < 0.9
    held = chip_records(mstar_chips, "heldback")
    tune = chip_records(mstar_chips, "tune")
    assert not {r.image_path for r in held} & {r.image_path for r in tune}
    assert len(held) + len(tune) == len(chip_records(mstar_chips))


def test_box_quality_recipe_loads_with_its_changes() -> None:
    """The candidate recipe is a valid TrainConfig whose model and overlay sections carry the
    GIoU loss, the support box definition and the wider rendering randomisation."""
    from sar_atd.config import from_dict
    from sar_atd.models import build_detector
    from sar_atd_training.overlay import OverlayConfig
    from sar_atd_training.trainer.config import load_train_config

    root = Path(__file__).resolve().parents[1]
    cfg = load_train_config(root / "training" / "configs" / "box_quality.yaml")
    assert cfg.model_build_kwargs()["box_loss"] == "giou"
    ov = from_dict(OverlayConfig, cfg.data["overlay"], where="data.overlay")
    assert ov.box_mode == "support" and ov.render_gamma_range == (0.5, 2.0)
    model = build_detector(cfg.model, **cfg.model_build_kwargs())
    assert model.head.regression_head._loss_type == "giou"
    ft = load_train_config(root / "training" / "configs" / "box_quality_finetune.yaml")
    assert ft.init_weights is not None and ft.init_weights.name == "default.pt"
    assert ft.data["overlay"]["box_mode"] == "support"


def test_synthetic_box_definitions_on_identical_images(plain_grass_config) -> None:
    """Every box mode sees the same targets (same seed, same images); the union box contains
    the support box on every side, and the returns box is measured for each target."""
    from sar_atd_training.clutter import BackgroundSet, generate_scene
    from sar_atd_training.overlay import OverlayConfig
    from sar_atd_training.overlay.toybank import make_toy_bank
    from sar_atd_training.quality.synthetic import measure_synthetic_boxes

    grass = BackgroundSet.from_arrays([generate_scene(plain_grass_config(300, 300), 0)])
    cfg = OverlayConfig(image_size=192, targets_per_image=(1, 2))
    sb = measure_synthetic_boxes(cfg, make_toy_bank(), grass, n_images=3, seed=0)
    n = len(sb.support)
    assert n >= 3 and len(sb.union) == len(sb.energy) == len(sb.returns) == n
    assert np.all(sb.side_offsets("union") >= 0)
    assert sb.side_offsets("returns").shape[1] == 4


def test_training_can_start_from_trained_weights(tmp_path: Path) -> None:
    """init_weights (fine-tuning): with a negligible learning rate the run's final weights are
    the initial file's, not the recipe seed's fresh init (BatchNorm running statistics
    aside); a file of another model is refused."""
    from sar_atd.config import from_dict
    from sar_atd.errors import CheckpointError
    from sar_atd.models import build_detector, save_weights
    from sar_atd.models.checkpoint import read_checkpoint
    from sar_atd_training.trainer.config import TrainConfig
    from sar_atd_training.trainer.train import train

    kw = {"fpn_channels": 32}
    torch.manual_seed(123)
    start = build_detector("retinanet_r18_fpn", **kw)
    save_weights(tmp_path / "start.pt", start, "retinanet_r18_fpn", kw)
    base = dict(model="retinanet_r18_fpn", model_kwargs=kw, input_size=96, batch_size=2,
                steps=1, lr=1e-12, warmup_steps=0, checkpoint_interval=1, log_interval=1,
                fgsm_epsilon=0.0, val_images=0, val_patchworks=0,
                data={"kind": "toy", "side_px": [12, 30]}, init_weights=tmp_path / "start.pt")
    train(from_dict(TrainConfig, base), tmp_path / "run", progress=False)
    final = read_checkpoint(tmp_path / "run" / "model_final.pt")["model"]
    ref = start.state_dict()
    weights = [k for k in ref if "running_" not in k and "num_batches" not in k]
    assert all(torch.allclose(final[k].float(), ref[k].float(), atol=1e-3) for k in weights)
    base["model"] = "retinanet_r50_fpn"
    with pytest.raises(CheckpointError, match="init_weights"):
        train(from_dict(TrainConfig, base), tmp_path / "run2", progress=False)


def test_default_v2_recipe_and_its_training_split() -> None:
    """The default_v2 recipe fine-tunes the default model with GIoU, support boxes, OOD hard
    negatives and a hard-stretch-wide rendering range; ``split_seed`` keeps every held-out
    record (targets, trees, houses) out of training and keeps every training record."""
    from sar_atd.config import from_dict
    from sar_atd_training.overlay import OverlayConfig
    from sar_atd_training.overlay.splits import make_split
    from sar_atd_training.overlay.toybank import make_toy_bank
    from sar_atd_training.trainer.config import load_train_config
    from sar_atd_training.trainer.data import check_data_section, split_training_records

    root = Path(__file__).resolve().parents[1]
    cfg = load_train_config(root / "training" / "configs" / "default_v2.yaml")
    assert cfg.init_weights is not None and cfg.init_weights.name == "default_v1.pt"
    assert cfg.model_build_kwargs()["box_loss"] == "giou" and cfg.fgsm_epsilon > 0
    check_data_section(cfg.data)
    ov = from_dict(OverlayConfig, cfg.data["overlay"], where="data.overlay")
    assert ov.box_mode == "support" and ov.ood_per_image[1] >= 1
    assert ov.render_ref_level_range[1] >= 118 and ov.render_black_quantile_range[1] >= 0.02
    bank = make_toy_bank(azimuths_deg=tuple(float(a) for a in range(0, 360, 10)), ood=True)
    targets, ood = split_training_records(bank, cfg.data["split_seed"])
    split = make_split(bank, seed=cfg.data["split_seed"])
    test = set(split.test_records.tolist())
    assert test and not (set(targets.tolist()) | set(ood.tolist())) & test
    assert len(targets) + len(ood) == len(split.train_records)
    assert {bank.records[int(i)].kind for i in ood} == {"tree", "house"}
    assert {bank.records[int(i)].kind for i in targets} == {"target"}


def test_candidate_benchmark_on_a_few_real_patchworks(mstar_chips: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    """bench_box_default prints one row per detector (CFAR beside the model) with the dev,
    held-back and hard-stretch APs; an --ood folder without ood.json is a usage error."""
    from benchmarks.bench_box_default import main

    assert main(["--n", "1", "--n-heldback", "1", "--n-stretch", "1"]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ")]
    assert len(rows) == 3 and rows[1].startswith("| CFAR-CA |") and "default.pt" in rows[2]
    aps = [float(v) for v in rows[2].split("|")[2].split("/")]
    assert len(aps) == 3 and 0.0 <= aps[2] <= aps[1] <= aps[0] <= 1.0
    with pytest.raises(SystemExit) as exc:
        main(["--n", "1", "--ood", str(tmp_path)])
    assert exc.value.code == 2


def test_candidate_benchmark_box_voting_rows(mstar_chips: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    """--box-voting-iou adds a box-voting row after each .pt model (none for CFAR); an IoU
    outside [0, 1] is a usage error."""
    from benchmarks.bench_box_default import main

    assert main(["--n", "1", "--n-heldback", "1", "--n-stretch", "1",
                 "--box-voting-iou", "0.5"]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ")]
    assert len(rows) == 4 and rows[1].startswith("| CFAR-CA |")
    assert "default.pt" in rows[2] and "box voting" not in rows[2]
    assert "default.pt" in rows[3] and "+ box voting 0.5 |" in rows[3]
    with pytest.raises(SystemExit) as exc:
        main(["--n", "1", "--box-voting-iou", "1.5"])
    assert exc.value.code == 2


def test_default_v3_recipe_keeps_the_first_defaults_boxes() -> None:
    """The default_v3 recipe differs from default_v2 only where it means to: the first
    default's union boxes and L1 box loss, the same OOD negatives, rendering range, split and
    FGSM."""
    from sar_atd.config import from_dict
    from sar_atd_training.overlay import OverlayConfig
    from sar_atd_training.trainer.config import load_train_config
    from sar_atd_training.trainer.data import check_data_section

    configs = Path(__file__).resolve().parents[1] / "training" / "configs"
    v3 = load_train_config(configs / "default_v3.yaml")
    v2 = load_train_config(configs / "default_v2.yaml")
    assert v3.init_weights is not None and v3.init_weights.name == "default_v1.pt"
    assert v3.model_build_kwargs().get("box_loss", "l1") == "l1"
    check_data_section(v3.data)
    ov3 = from_dict(OverlayConfig, v3.data["overlay"], where="data.overlay")
    ov2 = from_dict(OverlayConfig, v2.data["overlay"], where="data.overlay")
    assert ov3.box_mode == "union" and ov2.box_mode == "support"
    assert ov3.ood_per_image == ov2.ood_per_image and v3.data["split_seed"] == 0
    assert ov3.render_ref_level_range == ov2.render_ref_level_range
    assert ov3.render_gamma_range == ov2.render_gamma_range
    assert (v3.fgsm_epsilon, v3.fgsm_fraction) == (v2.fgsm_epsilon, v2.fgsm_fraction)
    assert v3.val_patchworks == 0 and v3.steps > v2.steps
