"""Second-stage target verifier: crops, rule, files, training on tiny synthetic crops."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sar_atd.detectors.base import Detections
from sar_atd.verifier import (
    VerifiedDetector,
    Verifier,
    VerifierError,
    VerifierNet,
    extract_crops,
    load_verifier,
    save_verifier,
)


def _image(h: int = 40, w: int = 50) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) % 251).astype(np.uint8)


def test_crop_centred_on_box_inside_the_image() -> None:
    """A box well inside: the crop is the image window centred on the box, mask = box."""
    img = _image(100, 100)
    crops, masks = extract_crops(img, np.array([[40, 30, 60, 50]], np.float32), size=16)
    assert crops.shape == masks.shape == (1, 16, 16) and crops.dtype == np.uint8
    np.testing.assert_array_equal(crops[0], img[32:48, 42:58])
    # box 20 x 20 covers the whole 16 px window
    assert masks[0].all()
    _, m = extract_crops(img, np.array([[46, 36, 54, 44]], np.float32), size=16)
    assert m[0].sum() == 64 and m[0, 4:12, 4:12].all()


def test_crop_at_image_borders_is_filled_with_the_median() -> None:
    """Boxes hanging over every border: valid shape, out-of-image pixels = image median,
    in-image pixels copied, the mask clipped to the window and never empty."""
    img = _image()
    med = np.uint8(np.median(img[::4, ::4]))
    boxes = np.array([[-10, -10, 5, 5], [45, 35, 60, 48], [-30, 10, -20, 20],
                      [0, 0, 50, 40]], np.float32)
    crops, masks = extract_crops(img, boxes, size=32)
    assert crops.shape == (4, 32, 32)
    # box 0 centre (-2.5, -2.5): window origin (-19, -19); image starts at crop (19, 19)
    assert (crops[0, :19, :] == med).all() and (crops[0, :, :19] == med).all()
    np.testing.assert_array_equal(crops[0, 19:, 19:], img[:13, :13])
    # box 2 lies wholly outside the image: all fill, still a mask
    assert (crops[2] == med).all() and masks[2].sum() > 0
    assert all(m.sum() > 0 for m in masks)


def test_crop_refuses_bad_inputs() -> None:
    with pytest.raises(VerifierError, match="uint8"):
        extract_crops(np.zeros((8, 8), np.float32), np.zeros((0, 4)))
    with pytest.raises(VerifierError, match="finite"):
        extract_crops(_image(), np.array([[0, 0, np.nan, 4]]))
    with pytest.raises(VerifierError, match=r"\(N, 4\)"):
        extract_crops(_image(), np.zeros((2, 3)))
    c, m = extract_crops(_image(), np.zeros((0, 4)), size=16)
    assert c.shape == m.shape == (0, 16, 16)


def test_rule_rejects_below_threshold_and_keeps_scores() -> None:
    """Hand case: p = (0.9, 0.2, 0.5) at threshold 0.5 keeps boxes 0 and 2 with their
    detector scores; with rescore the kept scores become score * p."""
    det = Detections(np.array([[0, 0, 4, 4], [5, 5, 9, 9], [1, 1, 3, 3]], np.float32),
                     np.array([0.8, 0.95, 0.4], np.float32))
    p = np.array([0.9, 0.2, 0.5], np.float32)
    v = Verifier(VerifierNet((4, 4, 4, 4)), crop_size=16, threshold=0.5)
    out = v.apply_probabilities(det, p)
    np.testing.assert_array_equal(out.boxes, det.boxes[[0, 2]])
    np.testing.assert_allclose(out.scores, [0.8, 0.4])
    v.rescore = True
    np.testing.assert_allclose(v.apply_probabilities(det, p).scores, [0.72, 0.2], rtol=1e-6)
    with pytest.raises(VerifierError, match="3 detections"):
        v.apply_probabilities(det, p[:2])


def test_verified_detector_applies_the_verifier_on_image_and_tiles(tmp_path) -> None:
    """The wrapper drops what the verifier rejects, on detect and detect_batch alike."""

    class Fixed:
        name = "fixed"

        def detect(self, image: np.ndarray) -> Detections:
            return Detections(np.array([[2, 2, 12, 12], [20, 20, 30, 30]], np.float32),
                              np.array([0.9, 0.8], np.float32))

    torch.manual_seed(0)
    net = VerifierNet((4, 4, 4, 4)).eval()
    v = Verifier(net, crop_size=16, threshold=0.0)
    img = _image()
    p = v.probabilities(img, Fixed().detect(img).boxes)
    v.threshold = float(p.max())  # keeps exactly the most vehicle-like box
    vd = VerifiedDetector(Fixed(), v)
    out = vd.detect(img)
    assert len(out) == 1 and np.isclose(out.scores[0], [0.9, 0.8][int(np.argmax(p))])
    tiles = torch.from_numpy(img.astype(np.float32))[None, None].repeat(2, 1, 1, 1)
    batch = vd.detect_batch(tiles)
    assert [len(d) for d in batch] == [1, 1]
    assert vd.name == "fixed + verifier"


def test_save_load_round_trip_and_crop_size_check(tmp_path) -> None:
    torch.manual_seed(0)
    net = VerifierNet((4, 8, 8, 8))
    path = tmp_path / "v.pt"
    save_verifier(path, net, 32, 0.3, record={"steps": 1})
    v = load_verifier(path)
    assert v.crop_size == 32 and v.threshold == pytest.approx(0.3) and not v.rescore
    assert v.record == {"steps": 1}
    x = np.full((2, 32, 32), 7, np.uint8)
    with torch.inference_mode():
        ref = torch.sigmoid(net.eval()(torch.stack([torch.from_numpy(x).float()] * 2, 1)))
    np.testing.assert_allclose(v.probabilities_of_crops(x, x), ref.numpy(), rtol=1e-5)
    with pytest.raises(VerifierError, match=r"\(N, 32, 32\)"):
        v.probabilities_of_crops(np.zeros((1, 64, 64), np.uint8), np.zeros((1, 64, 64),
                                                                           np.uint8))
    assert load_verifier(path, threshold=0.7, rescore=True).threshold == pytest.approx(0.7)


def test_missing_or_corrupt_file_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(VerifierError, match="not found"):
        load_verifier(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00not a torch file" * 10)
    with pytest.raises(VerifierError, match="unreadable"):
        load_verifier(bad)
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else"}, other)
    with pytest.raises(VerifierError, match="not a verifier file"):
        load_verifier(other)
    broken = tmp_path / "broken.pt"
    doc = {"format": "sar-atd-verifier", "version": 1, "crop_size": 64,
           "channels": [4, 4, 4, 4], "threshold": 0.5, "state_dict": {}}
    torch.save(doc, broken)
    with pytest.raises(VerifierError, match="malformed"):
        load_verifier(broken)


@pytest.mark.parametrize("content", [None, b"garbage"])
def test_eval_suite_bad_verifier_is_one_line(tmp_path, capsys, content) -> None:
    """``sar-atd eval-suite --verifier`` with a missing or corrupt file: exit 1, one line."""
    from sar_atd_training.cli import main

    path = tmp_path / "v.pt"
    if content is not None:
        path.write_bytes(content)
    sets = tmp_path / "sets" / "ood"
    sets.mkdir(parents=True)
    (sets / "annotations.json").write_text('{"images": [], "annotations": []}')
    rc = main(["eval-suite", "--detector", "cfar", "--verifier", str(path), "--set",
               f"ood={sets}", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 1, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "verifier" in lines[0] and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_training_a_few_steps_lowers_the_loss(tmp_path) -> None:
    """A few steps on a toy bank's crops (targets vs toy trees/houses/clutter): the loss
    falls, the file loads, and the record holds the validation per kind."""
    from sar_atd_training.overlay.pipeline import OverlayConfig
    from sar_atd_training.overlay.toybank import make_toy_bank
    from sar_atd_training.verifier.data import VerifierDataConfig
    from sar_atd_training.verifier.train import VerifierTrainConfig, train_verifier

    data = VerifierDataConfig(split_seed=None, generated_backgrounds=1,
                              background_size=(256, 256), images=6, val_images=3,
                              generation_batch=3, clutter_per_image=2,
                              overlay=OverlayConfig(image_size=224, targets_per_image=(1, 2),
                                                    ood_per_image=(1, 1),
                                                    return_masks=False))
    cfg = VerifierTrainConfig(data=data, crop_size=32, channels=(8, 8, 8, 8), steps=30,
                              batch_size=16, lr=0.01, log_interval=10)
    rec = train_verifier(cfg, tmp_path / "run", progress=False,
                         bank=make_toy_bank(azimuths_deg=(0.0, 90.0), ood=True))
    curve = rec["loss_curve"]
    assert np.mean(curve[-2:]) < 0.8 * curve[0], curve
    v = load_verifier(tmp_path / "run" / "verifier.pt")
    assert v.crop_size == 32 and 0 <= v.threshold <= cfg.max_threshold
    assert load_verifier(tmp_path / "run" / "verifier.onnx").threshold == v.threshold
    assert set(rec["synthetic_validation_jittered"]["kept_at_threshold"]) == {
        "target", "tree", "house", "clutter"}
    with pytest.raises(FileExistsError, match="exists"):
        train_verifier(dataclasses.replace(cfg, steps=1), tmp_path / "run", progress=False)


def test_config_refuses_unknown_kind_and_key(tmp_path) -> None:
    from sar_atd.errors import ConfigError
    from sar_atd_training.verifier.train import load_verifier_config

    p = tmp_path / "c.yaml"
    p.write_text("data:\n  exclude_ood_kinds: [car]\n")
    with pytest.raises(ConfigError, match="unknown kind"):
        load_verifier_config(p)
    p.write_text("stepz: 3\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_verifier_config(p)


def test_runtime_resolves_a_verified_detector(tmp_path) -> None:
    """``resolve_detector(..., verifier=V)`` (the runtime's ``DetectorRuntimeConfig.verifier``)
    wraps the detector; a missing file is one VerifierError; the default is off."""
    from sar_atd.config import DetectorRuntimeConfig
    from sar_atd.runtime import resolve_detector

    assert DetectorRuntimeConfig().verifier == ""
    path = tmp_path / "v.pt"
    save_verifier(path, VerifierNet((4, 4, 4, 4)), 16, 0.25)
    det, desc = resolve_detector("cfar", verifier=str(path))
    assert isinstance(det, VerifiedDetector) and desc["verifier"]["threshold"] == 0.25
    assert hasattr(det, "detect_batch")
    plain, desc = resolve_detector("cfar")
    assert not isinstance(plain, VerifiedDetector) and "verifier" not in desc
    with pytest.raises(VerifierError, match="not found"):
        resolve_detector("cfar", verifier=str(tmp_path / "missing.pt"))


def test_onnx_export_matches_torch_and_refuses_junk(tmp_path) -> None:
    """export_onnx -> load_verifier(.onnx) runs in ONNX Runtime with the stored rule and
    the torch probabilities (1e-5); a corrupt .onnx is one VerifierError."""
    pytest.importorskip("onnxruntime")
    from sar_atd.verifier import export_onnx

    torch.manual_seed(1)
    net = VerifierNet((4, 8, 8, 8))
    for m in net.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    v = Verifier(net, crop_size=32, threshold=0.4, rescore=True)
    onnx_path = export_onnx(v, tmp_path / "v.onnx")
    o = load_verifier(onnx_path)
    assert (o.crop_size, o.threshold, o.rescore) == (32, 0.4, True)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (80, 90), dtype=np.uint8)
    boxes = np.array([[10, 10, 40, 35], [60, 50, 95, 85], [0, 0, 5, 5]], np.float32)
    np.testing.assert_allclose(o.probabilities(img, boxes), v.probabilities(img, boxes),
                               atol=1e-5)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"junk")
    with pytest.raises(VerifierError, match="unreadable"):
        load_verifier(bad)


def test_detections_are_labelled_by_the_object_they_hit() -> None:
    """Hand case: a detection on the target, one on the tree (centre inside, low IoU), one
    on nothing (a clutter entry of the ground truth does not count), one with its centre in
    both the target and the overlapping house (ambiguous: -1)."""
    from sar_atd_training.verifier.data import KINDS, label_detections

    gt = np.array([[0, 0, 10, 10], [20, 0, 40, 20], [6, 6, 16, 16], [0, 30, 10, 40]],
                  np.float32)
    kinds = np.array([KINDS.index(k) for k in ("target", "tree", "house", "clutter")])
    det = np.array([[-1, -1, 9, 9], [28, 8, 32, 12], [0, 30, 10, 40], [5, 5, 13, 13]],
                   np.float32)
    lab = label_detections(det, gt, kinds, 0.25)
    assert lab.tolist() == [KINDS.index("target"), KINDS.index("tree"),
                            KINDS.index("clutter"), -1]
    assert label_detections(np.zeros((0, 4)), gt, kinds).shape == (0,)


def test_batches_mix_detector_and_jittered_boxes() -> None:
    """draw_batch takes detector_share of each part from detector boxes; crops_of jitters
    ground-truth boxes only (a detector box's crop is its exact window)."""
    from sar_atd_training.verifier.data import SamplePool, VerifierDataConfig, crops_of
    from sar_atd_training.verifier.train import VerifierTrainConfig, draw_batch

    img = _image(64, 64)[None]
    n = 40
    kinds = np.repeat([0, 1, 2, 3], 10)
    scores = np.where(np.arange(n) % 2 == 0, 0.5, np.nan).astype(np.float32)
    boxes = np.tile(np.array([[20, 20, 40, 40]], np.float32), (n, 1))
    pool = SamplePool(img, np.zeros(n, np.int64), boxes, kinds, scores)
    cfg = VerifierTrainConfig(data=VerifierDataConfig(hflip_prob=0.0, detector="cfar"),
                              batch_size=32,
                              detector_share=0.75, ood_share=0.5)
    sel = draw_batch(pool, cfg, np.random.default_rng(0))
    assert len(sel) == 32 and (kinds[sel] == 0).sum() == 16
    assert pool.from_detector[sel[kinds[sel] == 0]].sum() == 12
    c, _ = crops_of(pool, np.arange(n), 16, cfg.data, np.random.default_rng(1))
    exact, _ = extract_crops(img[0], boxes[:1], 16)
    det = pool.from_detector
    assert (c[det] == exact[0]).all() and not (c[~det] == exact[0]).all(axis=(1, 2)).all()
    from sar_atd.errors import ConfigError
    with pytest.raises(ConfigError, match="data.detector"):
        VerifierTrainConfig(threshold_rule="detector")


@pytest.mark.slow
def test_training_with_detector_boxes_and_the_detector_rule(tmp_path, monkeypatch) -> None:
    """A few steps with CA-CFAR as the mined detector (scores unbounded: rule_min_score
    0): detector samples join the pool, the threshold comes from their target boxes, and
    the pool cache is reused by a second run."""
    from sar_atd_training.overlay.pipeline import OverlayConfig
    from sar_atd_training.overlay.toybank import make_toy_bank
    from sar_atd_training.verifier.data import VerifierDataConfig
    from sar_atd_training.verifier.train import VerifierTrainConfig, train_verifier

    data = VerifierDataConfig(split_seed=None, generated_backgrounds=1,
                              background_size=(256, 256), images=4, val_images=3,
                              generation_batch=3, clutter_per_image=1, detector="cfar",
                              detector_images=2,
                              overlay=OverlayConfig(image_size=224, targets_per_image=(2, 2),
                                                    ood_per_image=(1, 1),
                                                    return_masks=False))
    cfg = VerifierTrainConfig(data=data, crop_size=32, channels=(4, 4, 4, 4), steps=4,
                              batch_size=16, detector_share=0.5, threshold_rule="detector",
                              rule_min_score=0.0, max_threshold=1.0, log_interval=2)
    cache = tmp_path / "pools.npz"
    rec = train_verifier(cfg, tmp_path / "run", progress=False,
                         bank=make_toy_bank(azimuths_deg=(0.0, 90.0), ood=True),
                         pool_cache=cache)
    vd = rec["synthetic_validation_detector_boxes"]
    assert vd is not None and vd["at_stored_threshold"]["rule_boxes"] > 0
    assert rec["threshold"] == pytest.approx(vd["threshold_by_rule"])
    assert load_verifier(tmp_path / "run" / "verifier.pt").threshold == rec["threshold"]
    # the cached pools serve a recipe differing only in training settings (no bank given:
    # a fresh draw would use another toy bank), and refuse another data recipe
    import sar_atd_training.verifier.train as vt

    def no_draw(*a, **k):
        raise AssertionError("pools drawn again despite the cache")

    monkeypatch.setattr(vt, "generate_pool", no_draw)
    rec2 = train_verifier(dataclasses.replace(cfg, steps=2), tmp_path / "run2",
                          progress=False, pool_cache=cache)
    assert rec2["pool"] == rec["pool"]
    from sar_atd.errors import ConfigError
    with pytest.raises(ConfigError, match="another data recipe"):
        train_verifier(dataclasses.replace(cfg, data=dataclasses.replace(data, images=5)),
                       tmp_path / "run3", progress=False, pool_cache=cache)


def test_bench_detection_cache_round_trip(tmp_path, capsys) -> None:
    """bench_verifier's --cache: detections written and read back unchanged; no file is an
    empty cache; no verifier or set is a SKIPPED line (exit 0)."""
    from benchmarks.bench_verifier import load_cache, main, save_cache

    path = tmp_path / "det.pkl"
    assert load_cache(path) == {} and load_cache(None) == {}
    d = Detections(np.array([[1, 2, 3, 4]], np.float32), np.array([0.5], np.float32))
    save_cache(path, {("m.pt", "ood", "/x", 1): [d]})
    back = load_cache(path)[("m.pt", "ood", "/x", 1)][0]
    np.testing.assert_array_equal(back.boxes, d.boxes)
    np.testing.assert_array_equal(back.scores, d.scores)
    assert main(["--real-patchworks"]) == 0 and "SKIPPED" in capsys.readouterr().out


def test_dev_rule_uses_each_targets_best_detection_at_the_operating_threshold() -> None:
    """Hand case: target A has detections scored 0.9 (p 0.2) and 0.5 (p 0.95): its best-
    scoring one counts (p 0.2); target B's only detection is below the operating threshold
    (not found: left out); target C's detection (p 0.7) counts. Keeping 1.0 of the found
    targets gives the lowest p, 0.5 the median."""
    from benchmarks.bench_verifier import best_target_probabilities, dev_threshold
    from sar_atd.evalset import EvalImage

    class FixedP:
        def probabilities(self, image, boxes):
            return np.array([0.2, 0.95, 0.99, 0.7], np.float32)[:len(boxes)]

    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], np.float32)
    det = Detections(np.array([[0, 0, 10, 10], [1, 0, 10, 10], [20, 0, 30, 10],
                               [40, 0, 50, 11]], np.float32),
                     np.array([0.9, 0.5, 0.2, 0.6], np.float32))
    img = EvalImage("a", np.zeros((16, 64), np.uint8), gt)
    p = best_target_probabilities(FixedP(), [img], [det], op=0.4)
    np.testing.assert_allclose(np.sort(p), [0.2, 0.7])
    assert dev_threshold(p, 1.0) == pytest.approx(0.2)
    assert dev_threshold(p, 0.5) == pytest.approx(0.45)
    with pytest.raises(ValueError, match="no dev targets"):
        dev_threshold(np.zeros(0), 0.99)
