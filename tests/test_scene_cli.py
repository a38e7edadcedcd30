"""``sar-atd detect`` end to end: every scene format, outputs, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from sar_atd.tiling import tile_grid
from sar_atd_training.cli import main


def _amplitude(h: int = 300, w: int = 420, seed: int = 0) -> np.ndarray:
    """Speckle amplitude (median ~0.03) with one bright 24 x 14 px target at (200, 120)."""
    rng = np.random.default_rng(seed)
    amp = rng.rayleigh(0.025, (h, w)).astype(np.float32)
    if h >= 134 and w >= 224:
        amp[120:134, 200:224] = rng.rayleigh(0.6, (14, 24))
    return amp


def test_detect_every_format_writes_consistent_outputs(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    amp = _amplitude()
    cplx = (amp * np.exp(1j * np.random.default_rng(1).uniform(0, 6.28, amp.shape))).astype(
        np.complex64)
    np.save(tmp_path / "f.npy", amp)
    np.save(tmp_path / "c.npy", cplx)
    np.save(tmp_path / "m16.npy", np.round(amp / amp.max() * 65535).astype(np.uint16))
    u8 = np.clip(np.sqrt(amp) * 255, 0, 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), u8)
    scenes = [tmp_path / n for n in ("f.npy", "c.npy", "m16.npy", "g.png")]
    out = tmp_path / "det"
    rc = main(["detect", *map(str, scenes), "--detector", "cfar", "--out", str(out),
               "--tile", "128", "--overlap", "48", "--batch", "4", "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    index = json.loads((out / "index.json").read_text())
    coco = json.loads((out / "coco_results.json").read_text())
    assert [im["json"] for im in index["images"]] == ["f.json", "c.json", "m16.json",
                                                      "g.json"]
    for im in index["images"]:
        doc = json.loads((out / im["json"]).read_text())
        assert (doc["height"], doc["width"]) == (300, 420)
        assert doc["n_tiles"] == len(tile_grid(300, 420, 128, 48))
        boxes = np.array([d["box"] for d in doc["detections"]]).reshape(-1, 4)
        hit = (boxes[:, 0] <= 201) & (boxes[:, 2] >= 223) & (boxes[:, 1] <= 121) & (
            boxes[:, 3] >= 133)
        assert hit.sum() == 1, (im["json"], boxes)
        n = sum(r["image_id"] == im["id"] for r in coco)
        assert n == len(doc["detections"])
        assert (out / im["json"].replace(".json", ".png")).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_detect_mstar_file(tmp_path: Path, mstar_raw_file: Path) -> None:
    out = tmp_path / "det"
    assert main(["detect", str(mstar_raw_file), "--detector", "cfar", "--out", str(out),
                 "--no-png", "--device", "cpu"]) == 0
    doc = json.loads((out / f"{mstar_raw_file.stem}.json").read_text())
    assert doc["dtype"] == "complex64" and doc["orientation"] == "bottom"
    assert doc["pixel_spacing_m"] == pytest.approx([0.2021, 0.2031], abs=1e-3)
    assert len(doc["detections"]) >= 1


def _bad_files(tmp: Path) -> list[tuple[Path, str]]:
    np.save(tmp / "cube.npy", np.zeros((3, 4, 5), np.float32))
    np.save(tmp / "empty.npy", np.zeros((0, 5), np.float32))
    np.save(tmp / "ints.npy", np.zeros((8, 8), np.int32))
    np.save(tmp / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really IEND")
    cv2.imwrite(str(tmp / "cut.jpg"), np.random.default_rng(0).integers(
        0, 255, (200, 200)).astype(np.uint8))
    (tmp / "cut.jpg").write_bytes((tmp / "cut.jpg").read_bytes()[:2000])
    cv2.imwrite(str(tmp / "colour.png"), np.random.default_rng(0).integers(
        0, 255, (20, 20, 3)).astype(np.uint8))
    (tmp / "not_mstar.015").write_bytes(b"hello")
    return [(tmp / "cube.npy", "2-D"), (tmp / "empty.npy", "empty"),
            (tmp / "ints.npy", "dtype"), (tmp / "obj.npy", "obj.npy"),
            (tmp / "garbage.png", "garbage.png"), (tmp / "cut.jpg", "truncated JPEG"),
            (tmp / "colour.png", "colour"), (tmp / "not_mstar.015", "not_mstar.015"),
            (tmp / "missing.npy", "not found")]


def test_malformed_scenes_are_one_line_errors(tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    for i, (path, match) in enumerate(_bad_files(tmp_path)):
        rc = main(["detect", str(path), "--detector", "cfar", "--out",
                   str(tmp_path / f"o{i}"), "--device", "cpu"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 1, (path, err)
        assert len(err) == 1 and match in err[0] and path.name in err[0], (path, err)
        assert not (tmp_path / f"o{i}").exists()


@pytest.mark.parametrize("argv", [
    ["--score-threshold", "-0.5"],
    ["--score-threshold", "1.5", "--detector", "model.onnx"],
    ["--tile", "64", "--overlap", "80"],
    ["--batch", "0"],
])
def test_bad_settings_are_usage_errors(tmp_path: Path, argv: list,
                                       capsys: pytest.CaptureFixture) -> None:
    np.save(tmp_path / "s.npy", _amplitude(64, 64))
    rc = main(["detect", str(tmp_path / "s.npy"), "--detector", "cfar", "--out",
               str(tmp_path / "o"), *argv])
    assert rc == 2
    assert capsys.readouterr().err.startswith("sar-atd detect: error:")


def test_existing_output_is_not_overwritten(tmp_path: Path) -> None:
    np.save(tmp_path / "s.npy", _amplitude(64, 64))
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["detect", str(tmp_path / "s.npy"), "--detector", "cfar", "--out",
                 str(out)]) == 2
    assert (out / "keep.txt").read_text() == "x"
    assert main(["detect", str(tmp_path / "s.npy"), "--detector", "cfar", "--out", str(out),
                 "--overwrite", "--device", "cpu"]) == 0
    assert not (out / "keep.txt").exists() and (out / "s.json").is_file()
