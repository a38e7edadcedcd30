"""``sar-atd demo``: the end-to-end job on embedded defaults, in a few minutes on a CPU.

Runs each stage through the same CLI commands a user would type, so the demo exercises the
real code paths: simulate a small signature bank (all ten classes, coarse azimuth step),
generate a clutter scene, generate hybrid training images with the overlay pipeline, then
evaluate the CFAR baseline and the committed default model side by side on patchworks of
REAL MSTAR chips (when ``../shared/data`` is present; skipped with a message otherwise).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from sar_atd_training.paths import MISSING_DATA_MESSAGE, REPO_ROOT, mstar_chips_dir

LOG = logging.getLogger(__name__)

DEFAULT_MODEL = REPO_ROOT / "models" / "default.pt"
"""The committed default detector (trained on synthetic targets only)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the end-to-end demo on embedded defaults")
    p.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    p.add_argument("--patchworks", type=int, default=50,
                   help="real patchworks to evaluate on (default 50; the benchmark uses 200)")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                   help="detector (.pt/.onnx) to compare with CFAR (default: models/default.pt)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sar_atd.atomic import atomic_write_json
    from sar_atd_training.cli import main as cli
    from sar_atd_training.cliutil import check_input_file, check_number, check_output_dir

    out: Path = args.out
    check_output_dir(out, "--out")
    check_number(args.patchworks, "--patchworks", 1)
    check_input_file(args.model, "--model", (".pt", ".onnx", ".engine"))
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def stage(name: str, argv: list[str]) -> None:
        LOG.info("demo stage '%s': sar-atd %s", name, " ".join(argv))
        t0 = time.perf_counter()
        rc = cli(argv)
        timings[name] = round(time.perf_counter() - t0, 2)
        if rc:
            raise RuntimeError(f"demo stage '{name}' failed (exit {rc})")

    bank = out / "bank"
    stage("simulate", ["simulate", "--out", str(bank), "--azimuth-step", "30",
                       "--depressions", "17", "--workers", "2", "--seed", str(args.seed),
                       "--preview", str(out / "signatures.png")])
    stage("clutter", ["clutter", "--out", str(out / "scene.npy"), "--preview",
                      str(out / "scene.png"), "--seed", str(args.seed)])
    stage("overlay", ["dataset", "preview", "--bank", str(bank), "--out",
                      str(out / "training_images.png"), "--n", "8", "--ood", "--seed",
                      str(args.seed)])
    chips = mstar_chips_dir()
    summary: dict[str, object] = {"outputs": str(out), "timings_s": timings}
    if chips is None:
        LOG.warning("skipping the real-data evaluation: %s", MISSING_DATA_MESSAGE)
        summary["real_data"] = "absent"
    else:
        dets = ["cfar", str(args.model)]
        argv = ["eval", "--dataset", str(chips), "--n", str(args.patchworks), "--seed",
                str(args.seed), "--out", str(out / "eval"), "--no-progress"]
        for d in dets:
            argv += ["--detector", d]
        stage("evaluate", argv)
        metrics = out / "eval" / "metrics.json"
        if metrics.is_file():
            summary["eval_report"] = str(out / "eval" / "report.md")
    atomic_write_json(out / "demo_summary.json", summary, indent=2)
    print(f"\ndemo finished: outputs in {out}/ (timings {timings})")
    return 0
