"""``sar-atd eval-suite --verifier``: each model detector gets a verified row, scored on the
same detections, with the model's operating threshold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sar_atd_training.cli import main
from tests.test_suite import small_sets

MODEL = Path(__file__).resolve().parents[1] / "models" / "default.pt"


@pytest.mark.slow
def test_suite_adds_a_verified_row(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    if not MODEL.is_file():
        pytest.skip(f"no committed model at {MODEL}")
    from sar_atd.verifier import VerifierNet, save_verifier

    sets = small_sets(tmp_path / "data")
    torch.manual_seed(0)
    ver = tmp_path / "v.pt"
    save_verifier(ver, VerifierNet((4, 4, 4, 4)), 32, 0.5)
    out = tmp_path / "rep"
    assert main(["eval-suite", "--detector", str(MODEL), "--verifier", str(ver),
                 "--set", f"ood={sets / 'ood'}", "--out", str(out), "--no-progress",
                 "--examples", "0"]) == 0
    m = json.loads((out / "metrics.json").read_text())["sets"]["ood"]
    names = list(m["detectors"])
    assert len(names) == 2 and names[1] == names[0] + " + verifier"
    s = m["ood_scores"]
    assert s[names[1]]["threshold_source"] == s[names[0]]["threshold_source"] == \
        "model metadata"
    assert s[names[1]]["score_threshold"] == s[names[0]]["score_threshold"]
    # the verifier only removes detections: no OOD object or target is hit more often
    assert s[names[1]]["ood_false_alarms"] <= s[names[0]]["ood_false_alarms"]
    r0, r1 = s[names[0]]["target_recall"], s[names[1]]["target_recall"]
    assert r0 is None or r1 <= r0  # None: no target in the set (nan in JSON)
    assert "+ verifier" in (out / "report.md").read_text()
