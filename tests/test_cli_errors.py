"""Every user mistake on the ``sar-atd`` CLI is one clear line, exit 2 (usage) or 1 (runtime).

The first tests are driven from the command registry (``COMMANDS``): every subcommand,
present and future, gets a handful of wrong arguments derived from its own parser (an
unknown flag, non-numbers for numeric options, missing required arguments, required paths
that do not exist or sit under a file). The others reproduce named cases. Everything runs
in-process through ``main(argv)`` on files made in ``tmp_path``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sar_atd_training.cli import COMMANDS, build_parser, main

OUTPUT_DESTS = {"out", "output", "report", "record", "preview"}


def parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
            ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, bool]]:
    """``(command path, parser, is_leaf)`` for every parser below the registry."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    yield path, parser, not subs
    for sub in subs:
        for name, child in sub.choices.items():
            yield from parsers(child, (*path, name))


def registry_cases() -> list[tuple[str, list[str], tuple[int, ...]]]:
    """``(case id, argv, accepted exit codes)`` for every subcommand of the registry."""
    root = build_parser()
    top = [a for a in root._actions if isinstance(a, argparse._SubParsersAction)][0]
    assert set(top.choices) <= set(COMMANDS)
    cases = []
    for path, parser, leaf in parsers(root):
        if not path:
            continue
        name = " ".join(path)
        cases.append((f"{name}: unknown flag", [*path, "--no-such-flag"], (2,)))
        for a in parser._actions:
            if a.option_strings and a.type in (int, float):
                cases.append((f"{name}: {a.option_strings[-1]} x",
                              [*path, a.option_strings[-1], "x"], (2,)))
        required = [a for a in parser._actions
                    if (a.required or not a.option_strings) and a.nargs != 0
                    and not isinstance(a, (argparse._SubParsersAction, argparse._HelpAction))]
        if leaf and required:
            cases.append((f"{name}: nothing", list(path), (2,)))
            argv: list[str] = list(path)
            positionals: list[str] = []
            for a in required:
                is_out = a.dest in OUTPUT_DESTS
                value = "{FILE}/sub/out.x" if is_out else "{TMP}/missing.x"
                if a.option_strings:
                    argv += [a.option_strings[-1], value]
                else:
                    positionals.append(value)
            cases.append((f"{name}: missing inputs, output under a file", argv + positionals,
                          (1, 2)))
    return cases


CASES = registry_cases()


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line(err: str, out: str = "") -> str:
    """Exactly one ``error:`` line on stderr, prefixed with the command; no traceback."""
    assert "Traceback" not in err + out, err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1, err
    assert lines[0].startswith("sar-atd"), lines[0]
    assert "internal error" not in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_registry_wrong_arguments_give_one_line(case, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Each subcommand refuses wrong arguments with one line and exit code 2 or 1, fast."""
    _, argv, codes = case
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    argv = [a.replace("{FILE}", str(afile)).replace("{TMP}", str(tmp_path)) for a in argv]
    t0 = time.perf_counter()
    rc, out, err = run_cli(argv, capsys)
    assert rc in codes, (rc, err)
    assert_one_line(err, out)
    assert time.perf_counter() - t0 < 30, "a wrong argument must be refused before work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing written


def test_verbose_adds_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    rc, _, err = run_cli(["-v", "export", "--checkpoint", str(empty), "--out",
                          str(tmp_path / "m.onnx")], capsys)
    assert rc == 1 and "Traceback" in err and "empty file" in err


# ---------------------------------------------------------------- named cases (issue list)
def test_empty_pt_file_is_one_line_in_export_and_train_resume(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty .pt no longer crashes the error path (IndexError) anywhere."""
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    rc, out, err = run_cli(["export", "--checkpoint", str(empty), "--out",
                            str(tmp_path / "m.onnx")], capsys)
    assert rc == 1 and "empty file" in assert_one_line(err, out)
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"")
    cfg = tmp_path / "r.yaml"
    cfg.write_text(yaml.safe_dump({"model": "retinanet_r18_fpn", "input_size": 64,
                                   "val_images": 0, "val_patchworks": 0,
                                   "data": {"kind": "toy"}}))
    rc, out, err = run_cli(["train", "detector", "--config", str(cfg), "--out", str(run),
                            "--resume", "--device", "cpu", "--no-progress"], capsys)
    assert rc == 1 and "empty file" in assert_one_line(err, out)


def test_empty_pt_file_in_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sar_atd.evalset import EvalImage, write_coco_dataset

    img = np.full((64, 64), 40, np.uint8)
    write_coco_dataset([EvalImage("a", img, np.array([[10, 10, 30, 30]], np.float32))],
                       tmp_path / "ds")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    rc, out, err = run_cli(["eval", "--detector", str(empty), "--dataset", str(tmp_path / "ds"),
                            "--out", str(tmp_path / "rep"), "--no-progress"], capsys)
    assert rc in (1, 2)
    assert "empty" in assert_one_line(err, out)


def test_unknown_detector_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cli(["eval", "--detector", "yolo", "--dataset", str(tmp_path),
                            "--out", str(tmp_path / "rep")], capsys)
    assert rc in (1, 2)
    assert_one_line(err, out)


def test_output_paths_that_are_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    for argv in (["simulate", "--out", str(afile)],
                 ["clutter", "--out", str(afile / "s.npy")],
                 ["dataset", "preview", "--out", str(afile / "p.png")],
                 ["demo", "--out", str(afile)]):
        rc, out, err = run_cli(argv, capsys)
        assert rc == 2, argv
        assert str(afile) in assert_one_line(err, out)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only permissions")
def test_read_only_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        rc, out, err = run_cli(["clutter", "--out", str(ro / "s.npy")], capsys)
        assert rc == 1 and "not writable" in assert_one_line(err, out)
    finally:
        ro.chmod(0o700)


def test_bad_suffixes_and_render_options(tmp_path: Path, synthetic_mstar_file: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Wrong output suffixes are refused (never silently renamed); bad render options."""
    src = synthetic_mstar_file
    for argv, needle in (
            (["clutter", "--out", str(tmp_path / "adir")], "expected a .npy"),
            (["clutter", "--out", str(tmp_path / "s.npy"), "--preview",
              str(tmp_path / "p.gif")], "expected a .png"),
            (["mstar", "render", str(src), "-o", str(tmp_path / "x.gif")], "expected a .png"),
            (["mstar", "render", str(src), "-o", str(tmp_path / "x.png"), "--ref", "0"],
             "--ref must be in (0"),
            (["mstar", "render", str(src), "-o", str(tmp_path / "x.png"), "--ref", "nan"],
             "--ref must be in"),
            (["simulate", "--out", str(tmp_path / "b"), "--preview", str(tmp_path / "p.jpg")],
             "expected a .png")):
        rc, out, err = run_cli(argv, capsys)
        assert rc == 2, argv
        assert needle in assert_one_line(err, out), (argv, err)
    rc, out, err = run_cli(["mstar", "render", str(src), "-o", str(tmp_path / "x.png")], capsys)
    assert rc == 0 and (tmp_path / "x.png").stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic.015", "x.png"]


def test_sizes_and_values_checked_before_work(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Clutter sizes and simulate ranges/duplicates are refused before anything is written."""
    for argv, needle in (
            (["clutter", "--out", str(tmp_path / "s.npy"), "--height", "0"], "got 0 x"),
            (["clutter", "--out", str(tmp_path / "s.npy"), "--height", "100000", "--width",
              "100000"], "between 16 x 16 and 8192 x 8192"),
            (["simulate", "--out", str(tmp_path / "b"), "--depressions", "17", "17"],
             "duplicate depression"),
            (["simulate", "--out", str(tmp_path / "b"), "--depressions", "95"],
             "depression must be in"),
            (["simulate", "--out", str(tmp_path / "b"), "--azimuth-step", "0"],
             "azimuth step must be in"),
            (["simulate", "--out", str(tmp_path / "b"), "--azimuth-step", "nan"],
             "azimuth step must be in"),
            (["simulate", "--out", str(tmp_path / "b"), "--workers", "0"], "--workers"),
            (["dataset", "preview", "--out", str(tmp_path / "p.png"), "--n", "0"], "--n")):
        rc, out, err = run_cli(argv, capsys)
        assert rc == 2, (argv, err)
        assert needle in assert_one_line(err, out), (argv, err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "r.yaml"
    cfg.write_text(yaml.safe_dump({"model": "retinanet_r18_fpn", "data": {"kind": "toy"}}))
    for argv in (["train", "detector", "--config", str(cfg), "--device", "cuda", "--out",
                  str(tmp_path / "run")],
                 ["dataset", "preview", "--out", str(tmp_path / "p.png"), "--device", "cuda"]):
        rc, out, err = run_cli(argv, capsys)
        assert rc == 1 and "CUDA is not available" in assert_one_line(err, out)
    rc, out, err = run_cli(["dataset", "preview", "--out", str(tmp_path / "p.png"),
                            "--device", "tpu"], capsys)
    assert rc == 2 and "not a device" in assert_one_line(err, out)
    assert not (tmp_path / "run").exists()


def test_recipe_mistakes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty recipe and unknown data keys are one-line errors, before any work."""
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"data": {"kind": "overlay", "bnk": "x"}}))
    for cfg, needle in ((empty, "is empty"), (bad, "unknown key(s) ['bnk']")):
        rc, out, err = run_cli(["train", "detector", "--config", str(cfg), "--out",
                                str(tmp_path / "run")], capsys)
        assert rc == 1 and needle in assert_one_line(err, out)
    assert not (tmp_path / "run").exists()
    for argv in (["clutter", "--out", str(tmp_path / "s.npy"), "--config", str(empty)],
                 ["dataset", "preview", "--out", str(tmp_path / "p.png"), "--config",
                  str(empty)]):
        rc, out, err = run_cli(argv, capsys)
        assert rc == 1 and "is empty" in assert_one_line(err, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "empty.yaml"]


def test_existing_run_refused_from_the_cli(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "train.csv").write_text("step,loss\n1,1.0\n")
    cfg = tmp_path / "r.yaml"
    cfg.write_text(yaml.safe_dump({"model": "retinanet_r18_fpn", "data": {"kind": "toy"},
                                   "device": "cpu"}))
    rc, out, err = run_cli(["train", "detector", "--config", str(cfg), "--out", str(run)],
                           capsys)
    assert rc == 1 and "already holds a run" in assert_one_line(err, out)
    assert (run / "train.csv").read_text() == "step,loss\n1,1.0\n"


def test_demo_with_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cli(["demo", "--out", str(tmp_path / "d"), "--model",
                            str(tmp_path / "MISSING.pt")], capsys)
    assert rc == 1 and "--model not found" in assert_one_line(err, out)
    assert not (tmp_path / "d").exists()
