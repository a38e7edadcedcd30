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


@pytest.mark.cuda
def test_tensorrt_agrees_with_onnx_runtime(weights, onnx_model) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT not installed")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA device")
    trt = load_detector(onnx_model, backend="tensorrt", score_threshold=0.05, fp16=False)
    ort = load_detector(onnx_model, score_threshold=0.05)
    im = images()[0]
    a, b = ort.detect(im), trt.detect(im)
    assert len(a) == len(b)
    np.testing.assert_allclose(b.boxes, a.boxes, atol=0.1)
