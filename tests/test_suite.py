"""``sar-atd eval-suite``: tables for every set given, OOD scores with their threshold
source, refusals of bad --set arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sar_atd_training.cli import main
from sar_atd_training.testsets.builders import TestSetConfig, build_testset, write_testset


def small_sets(root: Path, image_size: int = 192,
               background_size: tuple[int, int] = (256, 256)) -> Path:
    """Two-image synthetic-in-background and OOD sets from a one-class bank, under root."""
    from sar_atd_training.simulator.bank import BankConfig, write_bank

    bank = root / "bank"
    write_bank(bank, BankConfig(classes=("BRDM_2",), azimuth_step_deg=30,
                                depressions_deg=(17.0,), objects=("tree", "house"),
                                object_azimuths_deg=(0.0, 90.0, 15.0)), workers=1,
               progress=False)
    for kind in ("synthetic-in-background", "ood"):
        cfg = TestSetConfig(kind=kind, n=2, image_size=image_size, bank=str(bank),
                            generated_backgrounds=1, background_size=background_size)
        write_testset(build_testset(cfg), cfg, root / "sets" / kind)
    return root / "sets"


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_sets(tmp_path_factory.mktemp("suite"))


def test_suite_reports_tables_and_ood(sets: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "rep"
    assert main(["eval-suite", "--detector", "cfar", "--sets-root", str(sets), "--out",
                 str(out), "--no-progress", "--examples", "1"]) == 0
    m = json.loads((out / "metrics.json").read_text())["sets"]
    assert set(m) == {"synthetic-in-background", "ood"}
    s = m["ood"]["ood_scores"]["CFAR-CA"]
    assert s["ood_objects"] >= 2 and 0.0 <= s["ood_AP25"] <= 1.0
    assert "ood set" in s["threshold_source"]  # CFAR has no stored threshold
    assert isinstance(s["pass"], bool)
    rep = (out / "report.md").read_text()
    assert "Table 2" in rep and "Table 5" in rep and "OOD AP25" in rep
    assert (out / "ood" / "report.md").is_file()


def test_suite_refuses_bad_sets(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval-suite", "--detector", "cfar", "--set", "bogus=x", "--out",
                 str(tmp_path / "r")]) == 1
    assert "KIND=DIR" in capsys.readouterr().err
    assert main(["eval-suite", "--detector", "cfar", "--set", f"ood={tmp_path}", "--out",
                 str(tmp_path / "r")]) == 1
    assert "no annotations.json" in capsys.readouterr().err
