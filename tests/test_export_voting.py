"""Box voting inside exported graphs (``sar-atd export --box-voting-iou``,
``sar_atd.backends.voting``): the graph's voting step against the numpy reference on a
hand-made case, graphs without voting unchanged (older files too), a runtime setting that
disagrees with the graph refused in one line, onnx.checker and TensorRT-parser operators,
and torch vs ONNX Runtime parity on a tiny random-weight model (single and batched graphs)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from sar_atd.backends import load_detector
from sar_atd.backends.voting import (
    DEFAULT_BOX_VOTING_IOU,
    parse_box_voting_iou,
    vote_tensors,
)
from sar_atd.errors import ConfigError
from sar_atd.models import build_detector
from sar_atd.models.checkpoint import save_weights
from sar_atd.runtime import resolve_detector
from sar_atd.tta import box_voting
from sar_atd_training.export import export_checkpoint

torch.set_num_threads(1)
KW = {"fpn_channels": 64, "score_thresh": 0.0}

TRT_OPS = {  # ONNX operators the TensorRT 10 ONNX parser maps (onnx-tensorrt operators.md)
    "Add", "And", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Div", "Equal",
    "Expand", "Gather", "Greater", "GreaterOrEqual", "Identity", "Less", "MatMul", "Max",
    "Min", "Mul", "NonMaxSuppression", "Not", "Or", "Range", "ReduceMax", "ReduceMin",
    "ReduceSum", "Reshape", "Shape", "Slice", "Squeeze", "Sub", "Unsqueeze", "Where"}


def _ops(path: Path) -> list[str]:
    """Operator types of a graph, sub-graphs (If branches) included."""
    def walk(g: onnx.GraphProto) -> list[str]:
        out = []
        for n in g.node:
            out.append(n.op_type)
            for a in n.attribute:
                for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    out += walk(sub)
        return out
    return walk(onnx.load(str(path)).graph)


def _meta(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False)
            .metadata_props}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A light model with spread-out scores (random weights) and its exports."""
    torch.manual_seed(0)
    model = build_detector("retinanet_r18_fpn", **KW)
    torch.nn.init.normal_(model.head.classification_head.cls_logits.weight, std=0.05)
    root = tmp_path_factory.mktemp("vote")
    out = {"pt": root / "model.pt"}
    save_weights(out["pt"], model, "retinanet_r18_fpn", KW)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["voted"] = export_checkpoint(out["pt"], root / "voted.onnx", score_threshold=0.0)
        out["plain"] = export_checkpoint(out["pt"], root / "plain.onnx", score_threshold=0.0,
                                         box_voting_iou=0.0)
        out["batched"] = export_checkpoint(out["pt"], root / "batched.onnx",
                                           score_threshold=0.0, batch=2, tile=96)
    return out


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (96, 128)).astype(np.uint8),
            rng.integers(0, 256, (70, 90)).astype(np.uint8)]


def test_graph_voting_equals_the_reference_on_a_hand_made_case(tmp_path: Path) -> None:
    """The voting step alone, exported and run by ONNX Runtime: two overlapping candidates
    give their score-weighted mean, a far box and a box of another class stay put; equal to
    the numpy reference; only TensorRT-parser operators, onnx.checker passes."""
    import onnxruntime as ort

    class Step(torch.nn.Module):
        def forward(self, b: torch.Tensor, s: torch.Tensor, lab: torch.Tensor):
            return vote_tensors(b, s, lab, 0.5, 0.5, 10)

    b = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [30, 30, 40, 40], [1, 0, 11, 10]],
                 np.float32)
    s = np.array([0.9, 0.3, 0.5, 0.8], np.float32)
    lab = np.array([1, 1, 1, 2], np.int64)  # the last box: another class, not a voter
    path = tmp_path / "step.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Step(), (torch.from_numpy(b), torch.from_numpy(s),
                                   torch.from_numpy(lab)), str(path), dynamo=False,
                          opset_version=17, input_names=["b", "s", "lab"],
                          output_names=["boxes", "scores", "labels"],
                          dynamic_axes={"b": {0: "n"}, "s": {0: "n"}, "lab": {0: "n"}})
    onnx.checker.check_model(onnx.load(str(path)))
    assert set(_ops(path)) <= TRT_OPS, set(_ops(path)) - TRT_OPS
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    boxes, scores, labels = sess.run(None, {"b": b, "s": s, "lab": lab})
    # kept: box 0 (0.9), box 3 (0.8, its own class), box 2 (0.5); box 1 suppressed by box 0
    np.testing.assert_allclose(scores, [0.9, 0.8, 0.5], atol=1e-7)
    np.testing.assert_array_equal(labels, [1, 2, 1])
    np.testing.assert_allclose(boxes[0], [0.6 / 1.2, 0, (9 + 3.6) / 1.2, 10], atol=1e-5)
    np.testing.assert_allclose(boxes[1:], b[[3, 2]], atol=1e-6)
    ref = box_voting(b[:3], s[:3], nms_iou=0.5, vote_iou=0.5)  # one class: the reference
    np.testing.assert_allclose(boxes[[0, 2]], ref.boxes, atol=1e-5)
    # a candidate set without boxes runs too
    empty = sess.run(None, {"b": np.zeros((0, 4), np.float32), "s": np.zeros(0, np.float32),
                            "lab": np.zeros(0, np.int64)})
    assert empty[0].shape == (0, 4)


def test_exports_record_voting_and_pass_the_checker(files: dict[str, Path]) -> None:
    """Metadata holds the voting IoU or none; one extra NMS (the take-over) and only
    TensorRT-parser operators in the voting step; onnx.checker passes on every layout."""
    assert _meta(files["voted"])["box_voting_iou"] == f"{DEFAULT_BOX_VOTING_IOU:g}"
    assert _meta(files["plain"])["box_voting_iou"] == "none"
    assert _meta(files["batched"])["box_voting_iou"] == f"{DEFAULT_BOX_VOTING_IOU:g}"
    for key in ("voted", "plain", "batched"):
        onnx.checker.check_model(onnx.load(str(files[key])))
    voted, plain = _ops(files["voted"]), _ops(files["plain"])
    assert voted.count("NonMaxSuppression") == plain.count("NonMaxSuppression") + 1
    assert "MatMul" in voted and "MatMul" not in plain
    added = set(voted) - set(plain)
    assert added <= TRT_OPS, added - TRT_OPS


def test_graph_without_voting_is_unchanged(files: dict[str, Path], tmp_path: Path) -> None:
    """An export without voting, and an older file without the metadata key, run as the
    model's own NMS: equal to torch with voting off."""
    model = onnx.load(str(files["plain"]))
    kept = [p for p in model.metadata_props if p.key != "box_voting_iou"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    old = tmp_path / "old.onnx"
    onnx.save(model, str(old))
    t = load_detector(files["pt"], score_threshold=0.05, box_voting_iou=0)
    for path in (files["plain"], old):
        o = load_detector(path, score_threshold=0.05)
        assert o.box_voting_iou == 0.0
        for im in _images():
            a, b = t.detect(im), o.detect(im)
            assert len(a) == len(b) > 0
            np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
            np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def test_torch_and_onnx_runtime_vote_alike(files: dict[str, Path]) -> None:
    """By default torch (.pt, 0.5) and ONNX Runtime (graph exported with 0.5) vote and agree
    to float rounding, single and batched graphs; voting moves boxes, never scores."""
    t = load_detector(files["pt"], score_threshold=0.05)
    plain = load_detector(files["pt"], score_threshold=0.05, box_voting_iou="none")
    assert t.box_voting_iou == DEFAULT_BOX_VOTING_IOU
    o = load_detector(files["voted"], score_threshold=0.05)
    ob = load_detector(files["batched"], score_threshold=0.05)
    assert o.box_voting_iou == ob.box_voting_iou == DEFAULT_BOX_VOTING_IOU
    moved = 0.0
    for im in _images():
        a, b, p = t.detect(im), o.detect(im), plain.detect(im)
        assert len(a) == len(b) == len(p) > 0
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
        np.testing.assert_allclose(a.scores, p.scores, atol=1e-6)
        moved = max(moved, float(np.abs(a.boxes - p.boxes).max()))
    assert moved > 0.5
    crops = [im[:96, :96] for im in _images()]
    tiles = torch.from_numpy(np.stack([np.pad(c, ((0, 96 - c.shape[0]), (0, 96 - c.shape[1])))
                                       for c in crops]).astype(np.float32)[:, None])
    for a, b in zip(t.detect_batch(tiles), ob.detect_batch(tiles), strict=True):
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def test_disagreeing_setting_is_refused_in_one_line(files: dict[str, Path]) -> None:
    """A graph holds its voting: another IoU, or none, on a voted graph and voting on a
    plain graph are refused naming both values; 'model' and the held value are accepted."""
    for path, asked, held in ((files["voted"], 0.6, "IoU 0.5"),
                              (files["voted"], "none", "IoU 0.5"),
                              (files["plain"], 0.5, "no box voting")):
        with pytest.raises(ConfigError) as err:
            resolve_detector(str(path), box_voting_iou=asked)
        msg = str(err.value)
        assert len(msg.splitlines()) == 1 and held in msg, msg
        assert f"box_voting_iou {parse_box_voting_iou(asked):g}" in msg, msg
    assert resolve_detector(str(files["voted"]), box_voting_iou=0.5)[1]["box_voting_iou"] == 0.5
    assert resolve_detector(str(files["plain"]))[1]["box_voting_iou"] == 0.0
    assert resolve_detector(str(files["pt"]), box_voting_iou=0.7)[1]["box_voting_iou"] == 0.7


def test_settings_parse_and_weights_files_record_voting(files: dict[str, Path],
                                                        tmp_path: Path) -> None:
    """'model' / 'none' / numbers parse; bad values fail in the typed config; a weights-only
    .pt export records its IoU, which the torch backend then applies by default."""
    from sar_atd.config import DetectorRuntimeConfig, from_dict

    assert parse_box_voting_iou("model") is None and parse_box_voting_iou(None) is None
    assert parse_box_voting_iou("none") == parse_box_voting_iou(0) == 0.0
    assert parse_box_voting_iou("0.6") == 0.6
    for bad in ("half", 1.5, -0.1, True):
        with pytest.raises(ValueError):
            parse_box_voting_iou(bad)
    assert DetectorRuntimeConfig().box_voting_iou == "model"
    assert from_dict(DetectorRuntimeConfig, {"box_voting_iou": 0.5}).box_voting_iou == 0.5
    assert from_dict(DetectorRuntimeConfig, {"box_voting_iou": "none"}).box_voting_iou == "none"
    with pytest.raises(ConfigError, match="box_voting_iou"):
        from_dict(DetectorRuntimeConfig, {"box_voting_iou": "sometimes"})
    pt = export_checkpoint(files["pt"], tmp_path / "w.pt", box_voting_iou=0.6)
    assert load_detector(pt).box_voting_iou == 0.6
    off = export_checkpoint(files["pt"], tmp_path / "off.pt", box_voting_iou=0.0)
    assert load_detector(off).box_voting_iou == 0.0
    assert load_detector(off, box_voting_iou=0.5).box_voting_iou == 0.5


def test_cli_refuses_a_disagreeing_setting(files: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    """``sar-atd export --box-voting-iou none`` writes a plain graph; ``sar-atd detect`` on a
    voted graph with another IoU stops with one error line."""
    from sar_atd_training.cli import main

    out = tmp_path / "cli.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["export", "--checkpoint", str(files["pt"]), "--out", str(out),
                     "--box-voting-iou", "none"]) == 0
    assert _meta(out)["box_voting_iou"] == "none"
    capsys.readouterr()
    scene = tmp_path / "scene.npy"
    np.save(scene, _images()[0])
    rc = main(["detect", str(scene), "--detector", str(files["voted"]), "--box-voting-iou",
               "0.7", "--out", str(tmp_path / "det")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc in (1, 2) and len(err) == 1 and "0.7" in err[0] and "0.5" in err[0], err
