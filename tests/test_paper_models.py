"""The paper's two detectors (RetinaNet R50-FPN, Faster R-CNN VGG16): the reduced CPU recipes
keep the paper recipes' model and optimisation, and each architecture goes through one real
FGSM training step, validation, ONNX export and the evaluation suite."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sar_atd.config import from_dict, to_dict
from sar_atd_training.cli import main
from sar_atd_training.trainer.config import TrainConfig, load_train_config
from sar_atd_training.trainer.train import train
from tests.test_suite import small_sets

torch.set_num_threads(1)
CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"
# reduced CPU recipe -> the full (GPU) paper recipe it cuts down
PAPER = {"retinanet_r50_cpu": "retinanet_r50_paper",
         "fasterrcnn_vgg16_cpu": "fasterrcnn_vgg16_paper"}


@pytest.mark.parametrize("name", list(PAPER))
def test_cpu_recipe_is_the_paper_recipe_reduced(name: str) -> None:
    """Same model and optimisation as the paper recipe; only size and length are cut."""
    cpu = load_train_config(CONFIGS / f"{name}.yaml")
    paper = load_train_config(CONFIGS / f"{PAPER[name]}.yaml")
    for key in ("model", "lr", "momentum", "weight_decay", "schedule", "grad_clip_norm",
                "fgsm_epsilon", "fgsm_fraction"):
        assert getattr(cpu, key) == getattr(paper, key), key
    assert cpu.input_size == 320 and cpu.batch_size == 2 and cpu.device == "cpu"
    assert 0 < cpu.steps < paper.steps and cpu.val_images > 0
    if cpu.model == "fasterrcnn_vgg16":  # from scratch: the BatchNorm variant
        assert cpu.model_kwargs["batch_norm"] is True and cpu.backbone_weights is None
    header = (CONFIGS / f"{name}.yaml").read_text().split("\nmodel:")[0]
    assert "s/step" in header and "Measured" in header


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two-image synthetic-in-background and OOD sets of 128 px images."""
    return small_sets(tmp_path_factory.mktemp("paper_sets"), 128, (192, 192))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PAPER))
def test_paper_model_trains_exports_and_runs_in_the_suite(name: str, sets: Path,
                                                         tmp_path: Path) -> None:
    """The recipe's own model (full size, 96 px toy crops): one FGSM training step with a
    finite loss, the synthetic validation record, a loadable ONNX export, and suite rows."""
    d = to_dict(load_train_config(CONFIGS / f"{name}.yaml"))
    d.update(input_size=96, steps=1, warmup_steps=0, checkpoint_interval=1, log_interval=1,
             val_images=2, val_patchworks=0, num_workers=0,
             data={"kind": "toy", "side_px": [14, 30]})
    cfg = from_dict(TrainConfig, d)
    run = tmp_path / "run"
    train(cfg, run, progress=False)
    with (run / "train.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and math.isfinite(float(rows[0]["loss"]))
    assert float(rows[0]["loss"]) > 0
    val = [json.loads(line) for line in (run / "val.jsonl").read_text().splitlines()]
    assert val[-1]["step"] == 1 and 0.0 <= val[-1]["synthetic"]["AP50"] <= 1.0

    onnx = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(run / "model_final.pt"), "--out",
                 str(onnx)]) == 0
    from sar_atd.backends import load_detector

    det = load_detector(onnx)
    image = np.random.default_rng(0).integers(0, 256, (96, 128), dtype=np.uint8)
    dets = det.detect(image)
    assert dets.boxes.shape[1:] == (4,) and len(dets.scores) == len(dets.boxes)

    out = tmp_path / "suite"
    assert main(["eval-suite", "--detector", str(run / "model_final.pt"), "--detector", "cfar",
                 "--sets-root", str(sets), "--out", str(out), "--no-progress",
                 "--examples", "0"]) == 0
    m = json.loads((out / "metrics.json").read_text())["sets"]
    assert set(m) == {"synthetic-in-background", "ood"}
    assert len(m["ood"]["ood_scores"]) == 2  # the trained model and CFAR
