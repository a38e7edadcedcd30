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


# --------------------------------------------------------------------------------------
# Evaluation refuses what it cannot measure; COCO folders as other tools write them.
# --------------------------------------------------------------------------------------

def _chips_folder(root: Path, n: int = 20, seed: int = 1) -> Path:
    """``n`` synthetic 128 px JPEG chips (speckle + bright target) with SARBake masks."""
    import cv2

    rng = np.random.default_rng(seed)
    for i in range(n):
        d = root / ("A" if i % 2 else "B")
        d.mkdir(parents=True, exist_ok=True)
        amp = rng.rayleigh(25.0, (128, 128))
        amp[54:74, 50:80] = rng.rayleigh(140.0, (20, 30))
        mask = np.zeros((128, 128), np.uint8)
        mask[54:74, 50:80] = 1
        cv2.imwrite(str(d / f"c{i:02d}.jpeg"), np.clip(amp, 0, 255).astype(np.uint8))
        cv2.imwrite(str(d / f"c{i:02d}.mask.png"), mask)
    return root


def test_truncated_chip_is_an_error_naming_it(tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    chips = _chips_folder(tmp_path / "chips")
    victim = sorted(chips.glob("*/*.jpeg"))[3]
    victim.write_bytes(victim.read_bytes()[:2000])
    rc = main(["eval", "--detector", "cfar", "--dataset", str(chips), "--n", "3",
               "--out", str(tmp_path / "r"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1
    assert victim.name in err and "truncated" in err
    assert not (tmp_path / "r").exists()  # nothing written that looks like a result


def test_chip_without_mask_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                       capsys: pytest.CaptureFixture) -> None:
    chips = _chips_folder(tmp_path / "chips")
    lonely = sorted(chips.glob("*/*.mask.png"))[0]
    lonely.unlink()
    with caplog.at_level("WARNING"):
        rc = main(["eval", "--detector", "cfar", "--dataset", str(chips), "--n", "1",
                   "--out", str(tmp_path / "r"), "--no-progress", "--examples", "0"])
    assert rc == 0
    assert "no SARBake mask" in caplog.text and lonely.name.replace(".mask.png", "") in caplog.text
    assert "1 chip(s) without a SARBake mask left out" in capsys.readouterr().out


def _coco(root: Path, file_name: str, bbox: list, size: tuple[int, int] = (160, 160),
          image_dir: str = "") -> Path:
    import cv2

    root.mkdir(parents=True, exist_ok=True)
    (root / image_dir).mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(0).integers(0, 255, (160, 160)).astype(np.uint8)
    cv2.imwrite(str(root / image_dir / Path(file_name).name), img)
    doc = {"images": [{"id": 7, "file_name": file_name, "width": size[1], "height": size[0]}],
           "annotations": [{"id": 3, "image_id": 7, "category_id": 1, "bbox": bbox}],
           "categories": [{"id": 1, "name": "target"}]}
    (root / "annotations.json").write_text(json.dumps(doc))
    return root


@pytest.mark.parametrize("bbox,size,match", [
    ([10, 10, 0, 5], (160, 160), "zero or negative size"),
    ([10, 10, float("nan"), 5], (160, 160), "not finite"),
    ([150, 10, 30, 5], (160, 160), "outside"),
    ([10, 10, 5], (160, 160), r"\[x, y, w, h\]"),
    ([10, 10, 20, 20], (120, 160), "JSON says height 120"),
])
def test_bad_coco_annotations_name_the_annotation(tmp_path: Path, bbox: list, size: tuple,
                                                  match: str) -> None:
    from sar_atd.errors import ChipReadError
    from sar_atd.evalset import read_coco_dataset

    data = _coco(tmp_path / "d", "images/a.png", bbox, size, image_dir="images")
    with pytest.raises(ChipReadError, match=match) as exc:
        read_coco_dataset(data)
    assert "annotation 3" in str(exc.value) or "a.png" in str(exc.value)


@pytest.mark.parametrize("file_name,image_dir", [("a.png", ""), ("a.png", "images"),
                                                 ("images/a.png", "images")])
def test_bare_file_names_load(tmp_path: Path, file_name: str, image_dir: str) -> None:
    from sar_atd.evalset import read_coco_dataset

    data = _coco(tmp_path / "d", file_name, [10, 10, 20, 20], image_dir=image_dir)
    items = read_coco_dataset(data)
    assert items[0].image.shape == (160, 160)
    np.testing.assert_array_equal(items[0].boxes, [[10, 10, 30, 30]])


def test_truncated_png_in_coco_is_an_error(tmp_path: Path) -> None:
    from sar_atd.errors import ChipReadError
    from sar_atd.evalset import read_coco_dataset

    data = _coco(tmp_path / "d", "a.png", [10, 10, 20, 20])
    png = data / "a.png"
    png.write_bytes(png.read_bytes()[:-20])
    with pytest.raises(ChipReadError, match="truncated PNG.*a.png"):
        read_coco_dataset(data)


@pytest.mark.parametrize("argv,code", [
    (["--score-threshold", "-0.1"], 2),
    (["--score-threshold", "1.5", "--detector", "model.pt"], 2),
    (["--n", "0"], 2),
    (["--tile", "64", "--overlap", "64"], 2),
])
def test_unmeasurable_settings_are_refused(tmp_path: Path, argv: list, code: int,
                                           capsys: pytest.CaptureFixture) -> None:
    data = _dataset(tmp_path / "data")
    rc = main(["eval", "--detector", "cfar", "--dataset", str(data), "--out",
               str(tmp_path / "r"), "--no-progress", *argv])
    assert rc == code
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sar-atd eval: error:")


def test_cfar_threshold_above_one_is_allowed(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "data")
    assert main(["eval", "--detector", "cfar", "--dataset", str(data), "--out",
                 str(tmp_path / "r"), "--no-progress", "--examples", "0",
                 "--score-threshold", "3"]) == 0


def test_eval_through_the_tiler_and_report_folder_rules(tmp_path: Path) -> None:
    """--tile runs the scene detector (tiling recorded in metrics.json); a report folder is
    replaced, a folder of other files is refused without --overwrite."""
    data = _dataset(tmp_path / "data")
    out = tmp_path / "rep"
    base = ["eval", "--detector", "cfar", "--dataset", str(data), "--out", str(out),
            "--no-progress", "--examples", "1"]
    assert main(base) == 0
    untiled = json.loads((out / "metrics.json").read_text())
    assert main([*base, "--tile", "96", "--overlap", "48"]) == 0  # replaces the report
    tiled = json.loads((out / "metrics.json").read_text())
    assert tiled["tiling"] == {"tile": 96, "overlap": 48, "batch": 8}
    name_u, name_t = next(iter(untiled["detectors"])), next(iter(tiled["detectors"]))
    assert "tiles 96/48" in name_t
    assert tiled["detectors"][name_t]["metrics"]["AP25"] == pytest.approx(
        untiled["detectors"][name_u]["metrics"]["AP25"], abs=0.2)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert main([*base[:-4], "--out", str(other), "--no-progress"]) == 2
    assert (other / "notes.txt").read_text() == "keep me"


def test_build_patchworks_refuses_existing_dataset(tmp_path: Path) -> None:
    chips = _chips_folder(tmp_path / "chips")
    out = tmp_path / "pw"
    assert main(["eval", "build-patchworks", "--chips", str(chips), "--out", str(out),
                 "--n", "1"]) == 0
    before = (out / "annotations.json").read_bytes()
    assert main(["eval", "build-patchworks", "--chips", str(chips), "--out", str(out),
                 "--n", "2"]) == 2
    assert (out / "annotations.json").read_bytes() == before
    assert main(["eval", "build-patchworks", "--chips", str(chips), "--out", str(out),
                 "--n", "2", "--overwrite"]) == 0
    assert len(json.loads((out / "annotations.json").read_text())["images"]) == 2
    assert main(["eval", "build-patchworks", "--chips", str(chips), "--out",
                 str(tmp_path / "x"), "--n", "0"]) == 2


def test_mosaic_of_patchworks_keeps_boxes_on_their_targets() -> None:
    from sar_atd_training.evaluation.patchwork import Patchwork, mosaic

    rng = np.random.default_rng(0)
    pws = [Patchwork(rng.integers(0, 255, (20, 20)).astype(np.uint8),
                     np.array([[2, 3, 9, 12]], np.float32)) for _ in range(5)]
    image, boxes = mosaic(pws, 2)
    assert image.shape == (60, 40) and len(boxes) == 5
    for pw, (x0, y0, x1, y1) in zip(pws, boxes.astype(int), strict=True):
        np.testing.assert_array_equal(image[y0:y1, x0:x1], pw.image[3:12, 2:9])
    with pytest.raises(ValueError, match="expected"):
        mosaic([pws[0], Patchwork(np.zeros((5, 5), np.uint8), np.zeros((0, 4)))], 2)


def test_box_options_reach_the_detector_or_are_refused(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    """--box-voting-iou / --tta run on the committed .pt model; an ONNX file, an unknown
    view and an attack refuse them in one line."""
    model = Path(__file__).resolve().parents[1] / "models" / "default.pt"
    data = _dataset(tmp_path / "data")
    base = ["eval", "--dataset", str(data), "--no-progress", "--examples", "0"]
    assert main([*base, "--detector", str(model), "--box-voting-iou", "0.5", "--tta",
                 "identity,mirror", "--out", str(tmp_path / "r")]) == 0
    doc = json.loads((tmp_path / "r" / "metrics.json").read_text())
    (run,) = doc["detectors"].values()
    assert run["config"]["tta"] == ["identity", "mirror"]
    assert run["config"]["box_voting_iou"] == 0.5
    capsys.readouterr()
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not read: refused before loading")
    for extra in (["--detector", str(onnx), "--box-voting-iou", "0.5"],
                  ["--detector", str(model), "--tta", "identity,upside"],
                  ["--detector", str(model), "--tta", "mirror", "--attack", "fgsm"]):
        assert main([*base, *extra, "--out", str(tmp_path / "x")]) in (1, 2), extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "error" in err[0], (extra, err)
