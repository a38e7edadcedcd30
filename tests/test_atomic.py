"""Atomic outputs (sar_atd.atomic) and writers killed mid-write.

Each kill test starts the real writer in a subprocess, pauses it (a wrapped library call
prints ``WRITING`` and sleeps) while its temporary output demonstrably exists beside the
target, kills it with SIGKILL, then checks that the reader sees the old complete output, that
no visible temporary is left, and that :func:`clean_stale_temporaries` removes the hidden one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sar_atd.atomic import (
    atomic_dir,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    clean_stale_temporaries,
)

REPO = Path(__file__).resolve().parents[1]

PAUSE = r"""
import sys, time

def pause_after(module, name):
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        out = real(*args, **kwargs)
        print("WRITING", flush=True)
        time.sleep(120)
        return out

    setattr(module, name, wrapper)
"""


def visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def kill_while_writing(code: str, *args: str, timeout: float = 180.0) -> None:
    """Run ``PAUSE + code`` with ``args``; kill it once it prints WRITING."""
    proc = subprocess.Popen([sys.executable, "-c", PAUSE + code, *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()  # type: ignore[union-attr]
        if line != "WRITING":
            proc.kill()
            raise AssertionError(f"writer did not reach its pause: {line!r} "
                                 f"{proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=timeout)


# ------------------------------------------------------------------ library behaviour
def test_failed_write_keeps_old_file_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert json.loads(target.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["a.json"]
    with pytest.raises(ValueError):  # NaN is not JSON: refused, old file kept
        atomic_write_json(target, {"v": float("nan")})
    assert json.loads(target.read_text()) == {"v": 1} and os.listdir(tmp_path) == ["a.json"]


def test_atomic_dir_refuses_and_swaps(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "x").write_text("1")
    with pytest.raises(FileExistsError, match="not empty"), atomic_dir(out):
        pass
    with pytest.raises(RuntimeError), atomic_dir(out, overwrite=True) as tmp:
        (tmp / "y").write_text("2")
        raise RuntimeError("fail half-way")
    assert visible(out) == ["x"] and os.listdir(tmp_path) == ["out"]
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "y").write_text("2")
    assert visible(out) == ["y"] and os.listdir(tmp_path) == ["out"]
    (tmp_path / "f").write_text("")
    with pytest.raises(FileExistsError, match="is a file"), atomic_dir(tmp_path / "f"):
        pass


def test_clean_stale_temporaries_only_touches_its_own(tmp_path: Path) -> None:
    target = tmp_path / "m.onnx"
    (tmp_path / ".m.onnx.abc.tmp").write_text("stale")
    (tmp_path / ".m.onnx.d.old.tmp").mkdir()
    (tmp_path / ".other.abc.tmp").write_text("keep")
    atomic_write_text(target, "x")
    removed = clean_stale_temporaries(target)
    assert sorted(p.name for p in removed) == [".m.onnx.abc.tmp", ".m.onnx.d.old.tmp"]
    assert sorted(os.listdir(tmp_path)) == [".other.abc.tmp", "m.onnx"]


# ------------------------------------------------------------------ killed writers
def _dataset(names: list[str], value: int):
    from sar_atd.evalset import EvalImage

    return [EvalImage(n, np.full((32, 32), value, np.uint8),
                      np.array([[4, 4, 12 + i, 12]], np.float32)) for i, n in enumerate(names)]


def test_killed_dataset_write_leaves_old_dataset(tmp_path: Path) -> None:
    """``eval build-patchworks`` writes through write_coco_dataset: a kill after the new
    images are written (annotations next) leaves the old dataset whole, nothing visible."""
    from sar_atd.evalset import read_coco_dataset, write_coco_dataset

    ds = tmp_path / "ds"
    write_coco_dataset(_dataset(["a", "b"], 50), ds)
    code = """
import numpy as np
import sar_atd.evalset as ev
from sar_atd.evalset import EvalImage
pause_after(ev.json, "dumps")
items = [EvalImage(f"new{i}", np.full((32, 32), 200, np.uint8),
                   np.array([[1, 1, 9, 9]], np.float32)) for i in range(5)]
ev.write_coco_dataset(items, sys.argv[1], overwrite=True)
"""
    kill_while_writing(code, str(ds))
    hidden = [p for p in tmp_path.iterdir() if p.name.startswith(".ds.")]
    assert len(hidden) == 1 and len(list((hidden[0] / "images").iterdir())) == 5
    got = read_coco_dataset(ds)
    assert [g.name for g in got] == ["a", "b"] and all(int(g.image[0, 0]) == 50 for g in got)
    assert visible(tmp_path) == ["ds"] and visible(ds / "images") == ["a.png", "b.png"]
    assert clean_stale_temporaries(ds) == hidden and visible(tmp_path) == ["ds"]


def test_killed_report_write_leaves_old_report(tmp_path: Path) -> None:
    """``sar-atd eval`` killed while writing its report figures leaves the old report."""
    from sar_atd.evalset import write_coco_dataset
    from sar_atd_training.cli import main

    ds = tmp_path / "ds"
    write_coco_dataset(_dataset(["a", "b"], 30), ds)
    rep = tmp_path / "rep"
    assert main(["eval", "--detector", "cfar", "--dataset", str(ds), "--out", str(rep),
                 "--no-progress", "--examples", "1"]) == 0
    before = {p.name: p.read_bytes() for p in rep.iterdir()}
    code = """
import sar_atd.plots as plots
from sar_atd_training.cli import main
pause_after(plots, "save_png")
main(["eval", "--detector", "cfar-os", "--dataset", sys.argv[1], "--out", sys.argv[2],
      "--no-progress", "--examples", "1", "--overwrite"])
"""
    kill_while_writing(code, str(ds), str(rep))
    hidden = [p for p in tmp_path.iterdir() if p.name.startswith(".rep.")]
    assert len(hidden) == 1 and any(hidden[0].iterdir())  # the new report was under way
    assert {p.name: p.read_bytes() for p in rep.iterdir()} == before
    assert "CFAR-CA" in json.loads((rep / "metrics.json").read_text())["detectors"]
    assert visible(tmp_path) == ["ds", "rep"]
    assert clean_stale_temporaries(rep) == hidden


@pytest.mark.slow
def test_killed_export_leaves_old_model_and_no_visible_temporary(tmp_path: Path) -> None:
    """``sar-atd export`` killed after the ONNX graph is written (before the rename) leaves
    the old model file byte-identical and no visible ``tmp*.onnx``; the next export removes
    the hidden temporary."""
    import torch

    from sar_atd.models import build_detector, save_weights

    torch.manual_seed(0)
    kw = {"fpn_channels": 32}
    save_weights(tmp_path / "w.pt", build_detector("retinanet_r18_fpn", **kw),
                 "retinanet_r18_fpn", kw)
    old = tmp_path / "m.onnx"
    old.write_bytes(b"old model bytes")
    code = """
import onnx
from sar_atd_training.cli import main
pause_after(onnx, "load")
main(["export", "--checkpoint", sys.argv[1], "--out", sys.argv[2], "--precision", "fp32"])
"""
    kill_while_writing(code, str(tmp_path / "w.pt"), str(old))
    hidden = [p for p in tmp_path.iterdir() if p.name.startswith(".m.onnx.")]
    assert len(hidden) == 1 and hidden[0].stat().st_size > 100_000
    assert old.read_bytes() == b"old model bytes"
    assert visible(tmp_path) == ["m.onnx", "w.pt"]
    assert clean_stale_temporaries(old) == hidden


def test_killed_bank_write_resumes_cleanly(tmp_path: Path) -> None:
    """``sar-atd simulate`` killed while a chunk file is being written: the manifest never
    lists the chunk, no visible temporary is left, and the resumed run removes the hidden
    one and completes a bank that opens with full checksum verification."""
    from sar_atd_training.simulator.bank import BankConfig, SignatureBank, write_bank

    bank = tmp_path / "bank"
    code = """
import numpy as np
from sar_atd_training.simulator.bank import BankConfig, write_bank
pause_after(np, "save")
write_bank(sys.argv[1], BankConfig(classes=("T72",), azimuth_step_deg=90.0,
                                   depressions_deg=(17.0,), objects=()), progress=False)
"""
    kill_while_writing(code, str(bank))
    hidden = [p.name for p in bank.iterdir() if p.name.startswith(".")]
    assert len(hidden) == 1 and hidden[0].startswith(".T72_17.sig.npy.")
    assert visible(bank) == ["manifest.json"]
    assert json.loads((bank / "manifest.json").read_text())["chunks"] == []
    write_bank(bank, BankConfig(classes=("T72",), azimuth_step_deg=90.0,
                                depressions_deg=(17.0,), objects=()), progress=False)
    assert not [p for p in bank.iterdir() if p.name.startswith(".")]
    assert len(SignatureBank.open(bank, verify="full")) == 4
