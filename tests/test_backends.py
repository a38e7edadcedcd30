"""Runtime backends: input checks, torch .pt, ONNX export + ONNX Runtime == torch, errors."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
import torch

from sar_atd.backends import check_image, load_detector
from sar_atd.detectors.base import Detections, Detector
from sar_atd.errors import BackendError, CheckpointError
from sar_atd.models import build_detector, save_weights
from sar_atd_training.export import export_checkpoint

torch.set_num_threads(1)
KW = {"fpn_channels": 64, "score_thresh": 0.0}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A light model with spread-out scores (random weights), saved as a weights file."""
    torch.manual_seed(0)
    model = build_detector("retinanet_r18_fpn", **KW)
    torch.nn.init.normal_(model.head.classification_head.cls_logits.weight, std=0.05)
    path = tmp_path_factory.mktemp("w") / "model.pt"
    save_weights(path, model, "retinanet_r18_fpn", KW)
    return path


@pytest.fixture(scope="module")
def onnx_model(weights):
    out = weights.with_suffix(".onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_checkpoint(weights, out, score_threshold=0.0)
    return out


def assert_same_boxes(a: Detections, b: Detections, atol: float) -> None:
    """Same detections up to ``atol`` px, in any order among equal scores."""
    assert len(a) == len(b) > 10
    np.testing.assert_allclose(b.scores, a.scores, atol=1e-4)
    dist = np.abs(b.boxes[:, None, :] - a.boxes[None, :, :]).max(-1)
    assert float(dist.min(1).max()) < atol and float(dist.min(0).max()) < atol


def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (128, 128)).astype(np.uint8),
            rng.integers(0, 256, (96, 160)).astype(np.uint8)]


@pytest.mark.parametrize("bad, match", [
    (np.zeros((8, 8), np.int16), "dtype"),
    (np.zeros((8, 8, 3), np.uint8), "2-D"),
    (np.zeros((0, 8), np.uint8), "empty"),
    (np.full((8, 8), np.nan, np.float32), "NaN"),
    (np.full((8, 8), 300.0, np.float32), r"\[0, 255\]"),
    ([[1, 2], [3, 4]], "numpy array"),
])
def test_bad_input_is_clear_value_error(bad, match, weights) -> None:
    with pytest.raises(ValueError, match=match):
        check_image(bad)
    det = load_detector(weights)
    with pytest.raises(ValueError, match=match):
        det.detect(bad)


def test_torch_backend_native_coordinates(weights) -> None:
    det = load_detector(weights, score_threshold=0.05)
    assert isinstance(det, Detector) and det.name == "torch:retinanet_r18_fpn"
    for im in images():
        d = det.detect(im)
        assert isinstance(d, Detections) and len(d) > 0
        assert d.boxes.dtype == np.float32 and np.all(d.scores >= 0.05)
        assert np.all(np.diff(d.scores) <= 0)  # sorted
        h, w = im.shape
        assert d.boxes[:, [0, 2]].max() <= w and d.boxes[:, [1, 3]].max() <= h
    # float input in 8-bit units gives the same result as uint8
    im = images()[0]
    a, b = det.detect(im), det.detect(im.astype(np.float32))
    np.testing.assert_array_equal(a.boxes, b.boxes)


def test_onnx_runtime_agrees_with_torch(weights, onnx_model) -> None:
    """Same boxes and scores (float tolerance) for two image sizes; NMS is in the graph."""
    t = load_detector(weights, score_threshold=0.05)
    o = load_detector(onnx_model, score_threshold=0.05)
    assert o.name == "onnx:retinanet_r18_fpn"
    for im in images():
        assert_same_boxes(t.detect(im), o.detect(im), atol=1e-2)


def test_fp16_exports_match_their_fp32_compute(weights, tmp_path) -> None:
    pt16 = export_checkpoint(weights, tmp_path / "half.pt", fp16=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx16 = export_checkpoint(weights, tmp_path / "half.onnx", fp16=True,
                                   score_threshold=0.0)
    assert pt16.stat().st_size < 0.6 * weights.stat().st_size
    sd = torch.load(pt16, weights_only=True)["model"]
    assert sd["head.classification_head.cls_logits.weight"].dtype == torch.float16
    im = images()[0]
    a = load_detector(pt16, score_threshold=0.05).detect(im)
    b = load_detector(onnx16, score_threshold=0.05).detect(im)
    assert_same_boxes(a, b, atol=1e-2)


def test_missing_and_corrupt_model_files(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="nope.pt"):
        load_detector(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_detector(bad)
    with pytest.raises(BackendError, match="nope.onnx"):
        load_detector(tmp_path / "nope.onnx")
    bad_onnx = tmp_path / "bad.onnx"
    bad_onnx.write_bytes(b"not a protobuf")
    with pytest.raises(BackendError, match="bad.onnx"):
        load_detector(bad_onnx)
    with pytest.raises(BackendError, match="suffix"):
        load_detector(tmp_path / "model.h5")


def test_mismatched_weights_name_the_file(weights, tmp_path) -> None:
    ckpt = torch.load(weights, weights_only=True)
    ckpt["model_kwargs"] = {**ckpt["model_kwargs"], "fpn_channels": 32}
    path = tmp_path / "mismatch.pt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="mismatch.pt.*do not match"):
        load_detector(path)
    ckpt["model_name"] = "no_such_model"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="unknown detector"):
        load_detector(path)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None,
                    reason="tensorrt is installed: the unavailable-path test does not apply")
def test_tensorrt_unavailable_is_clear_backend_error(onnx_model) -> None:
    with pytest.raises(BackendError, match="tensorrt"):
        load_detector(onnx_model, backend="tensorrt")


@pytest.fixture(scope="module")
def batched_onnx(weights):
    """The batched tile graph: 2 tiles of 128 px per call."""
    out = weights.with_name("model_b2_t128.onnx")
    export_checkpoint(weights, out, score_threshold=0.0, batch=2, tile=128)
    return out


def test_batched_onnx_matches_torch_per_tile(weights, batched_onnx) -> None:
    """Padded fixed-size outputs give each tile's torch detections: boxes within 1e-3 px,
    scores within 1e-4 (a 3-tile batch runs as a full call plus a padded one)."""
    t = load_detector(weights, score_threshold=0.0)
    o = load_detector(batched_onnx, score_threshold=0.0)
    assert o.batched and (o.batch, o.tile) == (2, 128)
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.integers(0, 256, (3, 1, 128, 128)).astype(np.float32))
    for a, b in zip(t.detect_batch(x), o.detect_batch(x), strict=True):
        assert len(a) == len(b) > 10
        np.testing.assert_allclose(b.boxes, a.boxes, atol=1e-3)
        np.testing.assert_allclose(b.scores, a.scores, atol=1e-4)
    with pytest.raises(ValueError, match="scene detector"):
        o.detect(np.zeros((200, 100), np.uint8))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        o.detect_batch(torch.zeros(2, 3, 8, 8))


def test_export_carries_model_info_and_is_atomic(weights, tmp_path, monkeypatch) -> None:
    from sar_atd.models.metadata import METADATA_KEY

    ckpt = torch.load(weights, weights_only=True)
    ckpt[METADATA_KEY] = {"operating_threshold": 0.42, "orientation": "bottom"}
    src = tmp_path / "with_info.pt"
    torch.save(ckpt, src)
    out = export_checkpoint(src, tmp_path / "m.onnx", score_threshold=0.0)
    det = load_detector(out)
    assert det.model_info.operating_threshold == pytest.approx(0.42)
    assert len(det.model_info.model_hash) == 64
    assert load_detector(src).model_info.operating_threshold == pytest.approx(0.42)
    # a failure part-way leaves the previous file intact and no temporary file
    before = out.read_bytes()
    import onnx

    def boom(*_a, **_k):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(onnx.checker, "check_model", boom)
    with pytest.raises(RuntimeError, match="interrupted"):
        export_checkpoint(src, out, score_threshold=0.0)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "with_info.pt"]


def test_engine_cache_key_tracks_model_gpu_and_tensorrt(tmp_path) -> None:
    from sar_atd.backends.tensorrt_backend import default_cache_dir, engine_cache_key
    from sar_atd.models.metadata import file_sha256

    m = tmp_path / "m.onnx"
    m.write_bytes(b"model v1")
    k1 = engine_cache_key(file_sha256(m), "Orin", (8, 7), "10.3.0", "fp16")
    m.write_bytes(b"model v2")
    k2 = engine_cache_key(file_sha256(m), "Orin", (8, 7), "10.3.0", "fp16")
    assert k1 != k2 and k1.startswith("fp16-sm87-")
    others = {engine_cache_key(file_sha256(m), *args) for args in [
        ("H100", (9, 0), "10.3.0", "fp16"), ("Orin", (8, 7), "10.7.0", "fp16"),
        ("Orin", (8, 7), "10.3.0", "int8")]}
    assert k2 not in others and len(others) == 3
    assert engine_cache_key(file_sha256(m), "Orin", (8, 7), "10.3.0", "fp16") == k2
    with pytest.raises(ValueError, match="precision"):
        engine_cache_key("x", "Orin", (8, 7), "10.3.0", "int4")
    assert m.parent not in default_cache_dir().parents  # never beside the model


@pytest.mark.skipif(importlib.util.find_spec("pycuda") is not None,
                    reason="pycuda is installed: the unavailable-path test does not apply")
def test_pycuda_unavailable_is_clear_backend_error() -> None:
    from sar_atd.backends.tensorrt_backend import import_pycuda

    with pytest.raises(BackendError, match="pycuda"):
        import_pycuda()


def test_onnx_providers_follow_the_device() -> None:
    from sar_atd.backends.onnx_backend import providers_for

    assert providers_for("cpu", ["TensorrtExecutionProvider", "CPUExecutionProvider"]) == [
        "CPUExecutionProvider"]
    got = providers_for("auto", ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                 "CPUExecutionProvider"], cache_dir="/tmp/c")
    assert [p[0] if isinstance(p, tuple) else p for p in got] == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers_for("auto", ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(BackendError, match="onnxruntime-gpu"):
        providers_for("cuda:1", ["CPUExecutionProvider"])


@pytest.mark.cuda
def test_tensorrt_agrees_with_onnx_runtime(weights, batched_onnx, tmp_path) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT not installed")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA device")
    trt = load_detector(batched_onnx, backend="tensorrt", score_threshold=0.05,
                        precision="fp32", cache_dir=tmp_path / "engines")
    ort = load_detector(batched_onnx, score_threshold=0.05)
    x = torch.from_numpy(np.stack(images()[:1] * 3)[:, None].astype(np.float32))
    for a, b in zip(ort.detect_batch(x), trt.detect_batch(x.cuda()), strict=True):
        assert len(a) == len(b)
        np.testing.assert_allclose(b.boxes, a.boxes, atol=0.1)


@pytest.mark.slow
def test_default_model_onnx_parity_on_real_patchwork(mstar_chips, tmp_path) -> None:
    """The committed default model, exported as a batched tile graph, gives the torch
    detections on tiles of a fixed real patchwork (boxes 1e-3 px, scores 1e-4)."""
    from pathlib import Path

    from sar_atd.tiling import Tiler, TilerConfig
    from sar_atd_training.evaluation.patchwork import build_patchworks

    model = Path(__file__).resolve().parents[1] / "models" / "default.pt"
    if not model.is_file():
        pytest.skip(f"default model not found: {model}")
    pw = build_patchworks(mstar_chips, n=1, seed=0, progress=False)[0]
    onnx_path = export_checkpoint(model, tmp_path / "default_b4_t256.onnx",
                                  score_threshold=0.01, batch=4, tile=256)
    t = load_detector(model, score_threshold=0.05)
    o = load_detector(onnx_path, score_threshold=0.05)
    assert o.model_info.model_name == "retinanet_r18_fpn"
    batch = next(Tiler(TilerConfig(tile_size=256, overlap=48, batch_size=4,
                                   device="cpu")).tiles(pw.image))
    n = 0
    for a, b in zip(t.detect_batch(batch.tiles), o.detect_batch(batch.tiles), strict=True):
        assert len(a) == len(b)
        np.testing.assert_allclose(b.boxes, a.boxes, atol=1e-3)
        np.testing.assert_allclose(b.scores, a.scores, atol=1e-4)
        n += len(a)
    assert n > 0


def test_int8_calibration_tiles_come_from_the_recipe_pipeline(tmp_path) -> None:
    """Calibration batches are (B, 1, T, T) float32 8-bit images of the model's recipe."""
    from sar_atd_training.export import calibration_batches

    recipe = {"model": "retinanet_r18_fpn", "input_size": 64, "steps": 1,
              "data": {"kind": "toy"}}
    batches = list(calibration_batches(recipe, tmp_path, n_batches=2, batch=3, tile=64))
    assert len(batches) == 2
    for b in batches:
        assert b.shape == (3, 1, 64, 64) and b.dtype == np.float32
        assert 0 <= b.min() and b.max() <= 255 and b.std() > 0


def test_auto_backend_order_and_fallback(weights, onnx_model, tmp_path, caplog) -> None:
    """``backend=auto`` tries TensorRT (CUDA only), then ONNX Runtime, then torch, among the
    backends that read the file; it logs its choice and names every refusal."""
    from sar_atd.runtime import auto_backends, resolve_detector

    assert auto_backends("m.onnx", "cuda") == ["tensorrt", "onnxruntime"]
    assert auto_backends("m.onnx", "cpu") == ["onnxruntime"]
    assert auto_backends("m.engine", "cuda:0") == ["tensorrt"]
    assert auto_backends("m.pt", "cuda") == ["torch"]
    with caplog.at_level("INFO", logger="sar_atd.runtime"):
        det, info = resolve_detector(str(onnx_model), backend="auto", device="cpu")
    assert info["backend"] == "onnxruntime" and "chose onnxruntime" in caplog.text
    _, info = resolve_detector(str(weights), backend="auto", device="cpu")
    assert info["backend"] == "torch"
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    with pytest.raises(BackendError, match="no backend runs m.engine on cpu"):
        resolve_detector(str(engine), backend="auto", device="cpu")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(BackendError, match="no backend could load .*onnxruntime"):
        resolve_detector(str(bad), backend="auto", device="cpu")
