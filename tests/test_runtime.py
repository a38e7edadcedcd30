"""Runtime library: detector-spec resolution, ROS-parameter configs, streaming metrics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from sar_atd.config import (
    DetectorRuntimeConfig,
    EvaluatorConfig,
    SceneDetectorConfig,
    TilerConfig,
    load_ros_params,
    unflatten_params,
)
from sar_atd.detectors.base import Detections
from sar_atd.errors import ConfigError
from sar_atd.metrics import evaluate
from sar_atd.runtime import resolve_detector
from sar_atd.streaming import MetricAccumulator

PARAMS = """\
/**:
  ros__parameters:
    use_sim_time: false
    tiler: {batch_size: 4}
detector_node:
  ros__parameters:
    tiler: {tile_size: 512, overlap: 96, device: cpu}
    detector: {model: models/default.pt, backend: onnxruntime, precision: fp16}
    scene: {merge: merge, match: iou, match_threshold: 0.4}
    evaluator: {iou_thresholds: [0.25, 0.5]}
evaluator_node:
  ros__parameters:
    evaluator: {method: coco101, bogus: 1}
"""


def test_ros_params_build_typed_configs(tmp_path: Path) -> None:
    p = tmp_path / "params.yaml"
    p.write_text(PARAMS)
    params = load_ros_params(p, "/detector_node")
    assert params["tiler"] == {"batch_size": 4, "tile_size": 512, "overlap": 96,
                               "device": "cpu"}
    t = TilerConfig.from_ros_params(p, "detector_node")
    assert (t.tile_size, t.overlap, t.batch_size) == (512, 96, 4)
    d = DetectorRuntimeConfig.from_ros_params(p, "detector_node")
    assert d.backend == "onnxruntime" and d.model == "models/default.pt"
    s = SceneDetectorConfig.from_ros_params(p, "detector_node")
    assert (s.merge, s.match, s.match_threshold) == ("merge", "iou", 0.4)
    e = EvaluatorConfig.from_ros_params(p, "detector_node")
    assert e.iou_thresholds == (0.25, 0.5)
    with pytest.raises(ConfigError, match="bogus"):
        EvaluatorConfig.from_ros_params(p, "evaluator_node")
    # rclpy hands parameters over with dotted names
    flat = {"tiler.tile_size": 256, "tiler.overlap": 32, "use_sim_time": True}
    assert TilerConfig.from_params(flat).tile_size == 256
    assert unflatten_params(flat)["tiler"] == {"tile_size": 256, "overlap": 32}
    with pytest.raises(ConfigError, match="overlap"):
        TilerConfig.from_params({"tiler.tile_size": 64, "tiler.overlap": 64})


def test_ros_params_errors_name_the_problem(tmp_path: Path) -> None:
    p = tmp_path / "params.yaml"
    p.write_text("other:\n  ros__parameters: {a: 1}\n")
    with pytest.raises(ConfigError, match="no parameters for node 'detector_node'"):
        load_ros_params(p, "detector_node")
    p.write_text("detector_node: {a: 1}\n")
    with pytest.raises(ConfigError, match="ros__parameters"):
        load_ros_params(p, "detector_node")
    with pytest.raises(ConfigError, match="cannot read"):
        load_ros_params(tmp_path / "missing.yaml", "x")


def test_resolve_detector_specs_and_errors(tmp_path: Path) -> None:
    det, info = resolve_detector("cfar")
    assert det.name == "CFAR-CA" and info["backend"] == "cfar"
    det, _ = resolve_detector("CFAR-OS")
    assert det.name == "CFAR-OS"
    with pytest.raises(ValueError, match="unknown detector"):
        resolve_detector("yolo")
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_detector(str(tmp_path / "missing.onnx"))
    (tmp_path / "m.pt").write_bytes(b"")
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="outside"):
            resolve_detector(str(tmp_path / "m.pt"), score_threshold=bad)


def _random_set(seed: int, n_images: int = 12) -> tuple[list[Detections], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for i in range(n_images):
        m = int(rng.integers(0, 4))
        xy = rng.uniform(0, 200, (m, 2))
        gt = np.concatenate([xy, xy + rng.uniform(10, 40, (m, 2))], 1)
        jitter = rng.normal(0, 4, gt.shape)
        fp = rng.uniform(0, 200, (int(rng.integers(0, 3)), 2))
        fp = np.concatenate([fp, fp + 20], 1)
        boxes = np.concatenate([gt + jitter, fp]) if i % 5 else fp
        scores = rng.uniform(0, 1, len(boxes)).round(2)  # ties on purpose
        preds.append(Detections(boxes, scores))
        gts.append(gt.astype(np.float32))
    return preds, gts


@pytest.mark.parametrize("method", ["all-point", "coco101"])
def test_streaming_accumulator_equals_evaluate(method: str) -> None:
    preds, gts = _random_set(0)
    acc = MetricAccumulator((0.25, 0.5, 0.7), method=method)
    for k, (p, g) in enumerate(zip(preds, gts, strict=True)):
        acc.update(p, g)
        if k == 4:  # compute any time: equal to evaluate on the images so far
            assert _same(_exact(acc), evaluate(preds[:5], gts[:5], (0.25, 0.5, 0.7),
                                               method=method))
    assert _same(_exact(acc), evaluate(preds, gts, (0.25, 0.5, 0.7), method=method))
    assert acc.compute() is acc.compute()  # kept until the next update
    assert acc.nbytes() < 20_000


def _exact(acc: MetricAccumulator) -> dict:
    """``acc.compute()`` without its exactness fields, asserting it is exact."""
    got = dict(acc.compute())
    assert got.pop("ap_exact") is True and got.pop("score_bins") == 0
    return got


def _same(a: object, b: object) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k])
                                                                    for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def test_streaming_accumulator_rejects_bad_input() -> None:
    acc = MetricAccumulator()
    with pytest.raises(ValueError, match="scores"):
        acc.update((np.zeros((2, 4)), np.zeros(3)), np.zeros((0, 4)))
    with pytest.raises(ValueError, match="NaN"):
        acc.update((np.zeros((1, 4)), np.array([np.nan])), np.zeros((0, 4)))
    assert acc.n_images == 0
    assert math.isnan(acc.compute()["AP50"])  # no ground truth: undefined, not 0


def test_model_info_round_trip_and_operating_threshold_use() -> None:
    from sar_atd.detectors.cfar import CfarDetector
    from sar_atd.models.metadata import ModelInfo, model_info_of
    from sar_atd.scene import SceneDetector

    info = ModelInfo(operating_threshold=0.37, render={"gamma": 0.75, "amplitude_ref": 0.0})
    back = ModelInfo.from_json(info.to_json(), model_hash="abc")
    assert back.operating_threshold == 0.37 and back.model_hash == "abc"
    assert back.amplitude_ref == 0.0 and back.pixel_spacing_m == (0.2021, 0.2031)
    assert ModelInfo.from_dict({"operating_threshold": float("nan"), "future": 1}
                               ).operating_threshold is None
    det = CfarDetector()
    assert model_info_of(det).orientation == "bottom"
    det.model_info = info  # type: ignore[attr-defined]
    sd = SceneDetector(det, TilerConfig(device="cpu"), SceneDetectorConfig(score_threshold=-1))
    assert sd.score_threshold == 0.37
    sd = SceneDetector(det, TilerConfig(device="cpu"), SceneDetectorConfig(score_threshold=0.2))
    assert sd.score_threshold == 0.2
    # the model's recorded rendering replaces the tiler's LUT fields unless told otherwise
    assert (sd.tiler.cfg.gamma, sd.tiler.cfg.amplitude_ref) == (0.75, 0.0)
    sd = SceneDetector(det, TilerConfig(device="cpu", render="config"))
    assert (sd.tiler.cfg.gamma, sd.tiler.cfg.amplitude_ref) == (0.5, 1.0)
    assert SceneDetector(CfarDetector(), TilerConfig(device="cpu", gamma=0.6)
                         ).tiler.cfg.gamma == 0.6  # CFAR records no rendering


def test_operating_point_command_records_metadata(tmp_path: Path) -> None:
    """``sar-atd eval operating-point --write`` stores the best-F1 threshold and the
    training geometry in a copy of the model file; the weights are unchanged."""
    import torch

    from sar_atd.models import build_detector, save_weights
    from sar_atd.models.metadata import METADATA_KEY
    from sar_atd.runtime import resolve_detector
    from sar_atd_training.cli import main

    torch.manual_seed(0)
    kw = {"fpn_channels": 32, "score_thresh": 0.0}
    model = build_detector("retinanet_r18_fpn", **kw)
    recipe = {"model": "retinanet_r18_fpn", "input_size": 128, "steps": 1, "val_seed": 5,
              "data": {"kind": "toy"}}
    src = save_weights(tmp_path / "m.pt", model, "retinanet_r18_fpn", kw, fp16=True,
                       extra={"config": recipe})
    out = tmp_path / "annotated.pt"
    assert main(["eval", "operating-point", "--model", str(src), "--bank", str(tmp_path),
                 "--n", "3", "--write", "--out", str(out)]) == 0
    a, b = torch.load(src, weights_only=True), torch.load(out, weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    info = b[METADATA_KEY]
    assert 0.0 <= info["operating_threshold"] <= 1.0
    assert info["operating_point"]["n_images"] == 3 and info["orientation"] == "bottom"
    det, desc = resolve_detector(str(out))
    assert det.model_info.operating_threshold == pytest.approx(info["operating_threshold"])
    assert desc["model_info"]["model_hash"] == det.model_info.model_hash != ""
    assert main(["eval", "operating-point", "--model", str(src), "--bank", str(tmp_path),
                 "--n", "0"]) == 2
