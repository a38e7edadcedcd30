"""``sar-atd eval`` end to end on a tiny COCO dataset made in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sar_atd_training.cli import main
from sar_atd_training.evaluation.dataset import EvalImage, write_coco_dataset

BOXES = [np.array([[40, 50, 70, 70]], np.float32),
         np.array([[100, 30, 125, 60], [20, 120, 50, 140]], np.float32),
         np.zeros((0, 4), np.float32)]


def _dataset(root: Path) -> Path:
    """Three speckle images (160 px) with bright targets at known boxes; one has none."""
    rng = np.random.default_rng(0)
    items = []
    for i, boxes in enumerate(BOXES):
        amp = rng.rayleigh(25.0, (160, 160))
        for x0, y0, x1, y1 in boxes.astype(int):
            amp[y0:y1, x0:x1] = rng.rayleigh(125.0, (y1 - y0, x1 - x0))
        img = np.clip(np.rint(amp), 0, 255).astype(np.uint8)
        items.append(EvalImage(f"img{i}", img, boxes))
    write_coco_dataset(items, root)
    return root


def test_eval_cfar_writes_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """CFAR on a tiny COCO set: AP printed, report.md + PNGs + strict metrics.json."""
    data = _dataset(tmp_path / "data")
    out = tmp_path / "report"
    rc = main(["eval", "--detector", "cfar", "--compare", "cfar-os", "--dataset", str(data),
               "--out", str(out), "--no-progress", "--examples", "2"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "AP25" in printed and "AP50" in printed
    for name in ("report.md", "metrics.json", "pr_curves.png", "ap_vs_iou.png",
                 "example_0.png", "example_1.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    doc = json.loads((out / "metrics.json").read_text(),
                     parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert doc["n_images"] == 3
    m = doc["detectors"]["CFAR-CA"]["metrics"]
    assert m["n_gt"] == 3
    assert m["AP25"] == pytest.approx(1.0)  # three obvious targets, nothing else bright
    assert len(m["ap_vs_iou"]["ap"]) == 19 and "0.25" in m["pr_curves"]
    assert "CFAR-OS" in doc["detectors"]
    report = (out / "report.md").read_text()
    assert "CFAR-CA" in report and "pr_curves.png" in report


def test_eval_errors(tmp_path: Path) -> None:
    """Missing dataset and missing model file fail with exit code 1 (clear message)."""
    assert main(["eval", "--detector", "cfar", "--dataset", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "r")]) == 1
    assert main(["eval", "--detector", str(tmp_path / "model.onnx"), "--dataset",
                 str(tmp_path), "--out", str(tmp_path / "r")]) == 1


def test_build_patchworks_command(tmp_path: Path, mstar_chips: Path) -> None:
    """``sar-atd eval build-patchworks`` writes a COCO set that ``eval`` reads back."""
    out = tmp_path / "pw"
    assert main(["eval", "build-patchworks", "--chips", str(mstar_chips), "--out", str(out),
                 "--n", "2"]) == 0
    doc = json.loads((out / "annotations.json").read_text())
    assert len(doc["images"]) == 2 and len(doc["annotations"]) == 32
    assert main(["eval", "--detector", "cfar", "--dataset", str(out), "--out",
                 str(tmp_path / "rep"), "--no-progress", "--examples", "1"]) == 0
