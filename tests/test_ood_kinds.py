"""OOD object kinds: the man-made clutter models build at their sizes and cast shadows, a
bank gains kinds without changing what it held (chunks, split), the OOD test set places only
the asked kinds and records each one's kind, and a kind the bank lacks is refused with one
line naming it and the fix."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from sar_atd_training.simulator.models import (
    DEFAULT_OOD_KINDS,
    DIMENSIONS,
    OBJECT_NAMES,
    build_model,
    model_extent,
)

NEW_KINDS = ("container", "wall", "lamp_posts")


def test_new_kinds_are_known_and_defaults_unchanged() -> None:
    from sar_atd_training.overlay import OverlayConfig
    from sar_atd_training.simulator.bank import BankConfig

    assert set(NEW_KINDS) <= set(OBJECT_NAMES) and DEFAULT_OOD_KINDS == ("tree", "house")
    assert BankConfig().objects == ("tree", "house")  # old banks' config stays the default
    assert OverlayConfig().ood_kinds == ()  # empty: tree and house
    for k in NEW_KINDS:
        assert build_model(k).kind == k and "target" != build_model(k).kind


@pytest.mark.parametrize("name", NEW_KINDS)
def test_new_models_sizes_shadows_and_brightness(name: str) -> None:
    """Extents match the cited dimensions; each casts a shadow, covers pixels and is brighter
    than a tree (bright man-made clutter), at broadside and end-on."""
    from sar_atd_training.simulator import simulate_signature

    length, width, height = model_extent(name)
    d = DIMENSIONS[name]
    assert d.source and abs(length - d.length_m) < 0.25 and abs(width - d.width_m) < 0.25
    assert abs(height - d.height_m) < 0.25 and height < 5.5  # shadow fits the chip like a tree
    tree_max = np.abs(simulate_signature("tree", 90.0, 15.0, 0)[0]).max()
    for az in (0.0, 90.0):
        sig, shadow, support = simulate_signature(name, az, 15.0, 0)
        assert shadow.sum() > 100 and support.sum() > 30, (name, az)
        assert not (shadow & support).all()
    assert np.abs(simulate_signature(name, 90.0, 15.0, 0)[0]).max() > 2 * tree_max


def test_container_matches_iso_20ft() -> None:
    d = DIMENSIONS["container"]
    assert (d.length_m, d.width_m, d.height_m) == (6.058, 2.438, 2.591)


def _tiny_config(objects: tuple[str, ...]):  # noqa: ANN202 - BankConfig
    from sar_atd_training.simulator.bank import BankConfig

    return BankConfig(classes=("BRDM_2",), azimuth_step_deg=30, depressions_deg=(17.0,),
                      objects=objects, object_azimuths_deg=(0.0, 90.0, 15.0))


@pytest.fixture(scope="module")
def banks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """'old': targets, tree, house; 'grown': a copy that gained the clutter kinds."""
    import shutil

    from sar_atd_training.simulator.bank import write_bank

    root = tmp_path_factory.mktemp("banks")
    old = root / "old"
    write_bank(old, _tiny_config(("tree", "house")), workers=1, progress=False)
    grown = root / "grown"
    shutil.copytree(old, grown)
    write_bank(grown, _tiny_config(("tree", "container", "house", "wall", "lamp_posts")),
               workers=1, progress=False)
    return {"old": old, "grown": grown}


def test_bank_gains_kinds_and_keeps_its_chunks(banks: dict[str, Path]) -> None:
    from sar_atd_training.errors import BankError
    from sar_atd_training.simulator.bank import SignatureBank, read_bank_config, write_bank

    old = SignatureBank.open(banks["old"])
    grown = SignatureBank.open(banks["grown"])
    n = len(old)
    assert grown.records[:n] == old.records  # old records first, unchanged
    assert [r.kind for r in grown.records[n:]] == ["container"] * 7 + ["wall"] * 7 + [
        "lamp_posts"] * 7
    for i in range(n):
        np.testing.assert_array_equal(grown.signature(i), old.signature(i))
    assert read_bank_config(banks["grown"]).objects == ("tree", "house", "container", "wall",
                                                        "lamp_posts")
    with pytest.raises(BankError, match=r"leaves out \['house'"):
        write_bank(banks["grown"], _tiny_config(("tree",)), workers=1, progress=False)
    with pytest.raises(BankError, match="different configuration"):
        write_bank(banks["grown"], dataclasses.replace(_tiny_config(OBJECT_NAMES),
                                                       azimuth_step_deg=60),
                   workers=1, progress=False)


def test_split_of_old_kinds_unchanged_when_kinds_are_added() -> None:
    from sar_atd_training.overlay.splits import make_split
    from sar_atd_training.simulator.bank import SignatureRecord

    class RecordsOnly(list):
        """Just the records: what make_split reads."""

        @property
        def records(self) -> list:
            return list(self)

    def as_bank(kinds: tuple[str, ...]) -> RecordsOnly:
        recs = [SignatureRecord("target", c, float(a), 17.0) for c in ("T72", "BMP2")
                for a in range(0, 360, 10)]
        recs += [SignatureRecord(k, k, float(a), 15.0) for k in kinds for a in range(0, 101, 5)]
        return RecordsOnly(recs)

    a = as_bank(("tree", "house"))
    g = as_bank(("tree", "house", "container", "wall"))
    bgs = [f"bg{i}" for i in range(9)]
    for seed in (0, 1, 2):
        sa, sg = make_split(a, seed, backgrounds=bgs), make_split(g, seed, backgrounds=bgs)
        n = len(a)
        np.testing.assert_array_equal(sa.test_records, sg.test_records[sg.test_records < n])
        assert sa.test_backgrounds == sg.test_backgrounds
        assert {"container", "wall"} <= set(sg.test_sectors)


def _ood_cfg(bank: Path, **kw: object):  # noqa: ANN202 - TestSetConfig
    from sar_atd_training.testsets.builders import TestSetConfig

    kw = {"n": 3, **kw}
    return TestSetConfig(kind="ood", image_size=192, bank=str(bank),
                         generated_backgrounds=1, background_size=(256, 256),
                         targets_per_image=(0, 1), ood_per_image=(2, 3), **kw)


def test_ood_set_places_only_asked_kinds_and_records_them(banks: dict[str, Path],
                                                          tmp_path: Path) -> None:
    from sar_atd_training.testsets.builders import build_testset, write_testset

    cfg = _ood_cfg(banks["grown"], ood_kinds=("container", "wall"))
    ims = build_testset(cfg)
    kinds = [k for it in ims for k in it.ood_kinds]
    assert len(kinds) == sum(len(it.ood_boxes) for it in ims) >= 6
    assert set(kinds) <= {"container", "wall"}
    write_testset(ims, cfg, tmp_path / "ood")
    ood = json.loads((tmp_path / "ood" / "ood.json").read_text())
    assert [a["kind"] for a in ood["annotations"]] == kinds
    man = json.loads((tmp_path / "ood" / "manifest.json").read_text())
    assert man["config"]["ood_kinds"] == ["container", "wall"]
    # default: trees and houses only, and the same images as on the bank without the new kinds
    d_grown = build_testset(_ood_cfg(banks["grown"]))
    d_old = build_testset(_ood_cfg(banks["old"]))
    assert {k for it in d_grown for k in it.ood_kinds} <= {"tree", "house"}
    for x, y in zip(d_grown, d_old):
        np.testing.assert_array_equal(x.image, y.image)
    every = build_testset(_ood_cfg(banks["grown"], ood_kinds=("all",), n=6))
    assert len({k for it in every for k in it.ood_kinds}) >= 3


def test_missing_kind_is_one_clear_line(banks: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    from sar_atd.errors import ConfigError
    from sar_atd_training.cli import main
    from sar_atd_training.overlay import OverlayConfig
    from sar_atd_training.overlay.pipeline import OverlayDataError, ood_records
    from sar_atd_training.simulator.bank import SignatureBank
    from sar_atd_training.testsets.builders import TestSetError, build_testset

    with pytest.raises(TestSetError, match="no 'container' records.*--add-objects container"):
        build_testset(_ood_cfg(banks["old"], ood_kinds=("container",)))
    with pytest.raises(ConfigError, match="unknown OOD object kind"):
        _ood_cfg(banks["old"], ood_kinds=("boat",))
    with pytest.raises(ConfigError, match="unknown OOD object kind"):
        OverlayConfig(ood_kinds=("boat",))
    old = SignatureBank.open(banks["old"])
    with pytest.raises(OverlayDataError, match="no 'wall' records.*--add-objects wall"):
        ood_records(old, ("tree", "wall"))
    assert [old.records[i].kind for i in ood_records(old)] == ["tree"] * 7 + ["house"] * 7
    rc = main(["testset", "build", "ood", "--bank", str(banks["old"]), "--out",
               str(tmp_path / "o"), "--ood-kinds", "tree,lamp_posts", "--n", "1"])
    err = capsys.readouterr().err
    assert rc == 1 and "'lamp_posts'" in err and "--add-objects lamp_posts" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_simulate_add_objects_reads_the_manifest(banks: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    import shutil

    from sar_atd_training.cli import main
    from sar_atd_training.simulator.bank import SignatureBank

    b = tmp_path / "b"
    shutil.copytree(banks["old"], b)
    assert main(["simulate", "--out", str(b), "--add-objects", "wall", "--workers", "1"]) == 0
    capsys.readouterr()
    assert [r.kind for r in SignatureBank.open(b).records][-8:] == ["house"] + ["wall"] * 7
    assert main(["simulate", "--out", str(tmp_path / "none"), "--add-objects", "wall"]) != 0
    assert main(["simulate", "--out", str(b), "--add-objects", "boat"]) != 0
    err = capsys.readouterr().err
    assert "manifest not found" in err and "unknown OOD object kind" in err
    assert "Traceback" not in err


def test_bench_kind_scores_split_alarms_by_kind() -> None:
    from benchmarks.bench_ood_kinds import kind_scores
    from sar_atd.detectors.base import Detections

    ood = [np.array([[10, 10, 40, 40], [100, 100, 130, 120]], np.float32),
           np.array([[50, 50, 70, 70]], np.float32)]
    kinds = [["container", "wall"], ["container"]]
    preds = [Detections(np.array([[12, 12, 38, 38], [101, 101, 129, 119]], np.float32),
                        np.array([0.9, 0.2], np.float32)),
             Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))]
    c = kind_scores(preds, ood, kinds, "container", threshold=0.5)
    w = kind_scores(preds, ood, kinds, "wall", threshold=0.5)
    assert c["n"] == 2 and c["alarms_per_image"] == 0.5 and c["hit_share"] == 0.5
    assert w["n"] == 1 and w["alarms_per_image"] == 0.0 and w["hit_share"] == 0.0
    assert w["ap25"] == pytest.approx(1.0)  # its one object found by the 0.2 detection
    assert c["ap25"] == pytest.approx(0.5)
