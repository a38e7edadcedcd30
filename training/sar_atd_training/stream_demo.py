"""``sar-atd stream-demo`` (``make demo``): the ROS 2 streaming graph on embedded defaults.

Makes demo bags when absent (generated 2048 x 2048 float scenes: clutter + synthetic
targets; and patchworks of REAL MSTAR chips when ``../shared/data`` is present), then runs
the node graph (``sar-atd run``: scene_player -> scene_detector -> evaluator, separate
processes over DDS, lossless replay) with the default model and with the CFAR baseline on
each bag, and prints scenes/s, megapixels/s, latency p50/p99, AP25/AP50 and drops. Bags are
kept under ``--out`` and reused; each invocation writes its reports to a new run folder.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from sar_atd_training.paths import MISSING_DATA_MESSAGE, REPO_ROOT, mstar_chips_dir

LOG = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stream-demo", help="streaming demo: bag -> ROS 2 node graph -> report")
    p.add_argument("--out", type=Path, default=Path("outputs/stream_demo"))
    p.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "default.pt")
    p.add_argument("--scenes", type=int, default=4, help="generated 2048 x 2048 scenes")
    p.add_argument("--size", type=int, default=2048, help="generated scene side (px)")
    p.add_argument("--patchworks", type=int, default=20, help="real patchworks (if data)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def _ensure_bag(path: Path, argv: list[str]) -> None:
    from sar_atd_training.cli import main as cli

    if path.exists():
        LOG.info("using existing demo bag %s", path)
        return
    rc = cli(["bag", "make", *argv, "--out", str(path)])
    if rc:
        raise RuntimeError(f"making the demo bag {path} failed (exit {rc})")


def run(args: argparse.Namespace) -> int:
    from sar_atd_ros.runner import GraphOptions, run_graph

    if not args.model.is_file():
        raise FileNotFoundError(f"model file not found: {args.model}")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    bags = {}
    gen = out / f"generated_{args.scenes}x{args.size}_seed{args.seed}"
    _ensure_bag(gen, ["--generate", str(args.scenes), "--size", str(args.size),
                      "--rate-hz", "1", "--seed", str(args.seed)])
    bags["generated"] = gen
    chips = mstar_chips_dir()
    if chips is not None:
        real = out / f"real_patchworks_{args.patchworks}_seed{args.seed}"
        _ensure_bag(real, ["--dataset", str(chips), "--n", str(args.patchworks),
                           "--rate-hz", "2", "--seed", str(args.seed)])
        bags["real patchworks"] = real
    else:
        LOG.warning("real-data bag skipped: %s", MISSING_DATA_MESSAGE)
    run_dir = out / time.strftime("run_%Y%m%d_%H%M%S")
    rows = []
    for bag_name, bag in bags.items():
        for det_name, spec in (("default model", str(args.model)), ("CA-CFAR", "cfar")):
            LOG.info("stream-demo: %s on %s", det_name, bag_name)
            tag = f"{bag.name}_{'cfar' if spec == 'cfar' else args.model.stem}"
            res = run_graph(GraphOptions(bag=bag, detector=spec, mode="lossless",
                                         report=run_dir / tag, timeout_s=1200))
            rows.append((bag_name, det_name, res["summary"], res["wall_s"]))
    print(format_table(rows))
    print(f"reports: {run_dir}")
    return 0


def _v(x: object, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def format_table(rows: list[tuple[str, str, dict, float]]) -> str:
    """Markdown table of the demo runs."""
    lines = ["| bag | detector | scenes | scenes/s | MP/s | latency p50 / p99 (ms) | AP25 | "
             "AP50 | missing | malformed |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for bag, det, s, _wall in rows:
        lines.append(
            f"| {bag} | {det} | {s['scenes_evaluated']}/{s['scenes_published']} | "
            f"{_v(s['scenes_per_s'], '.2f')} | {_v(s['megapixels_per_s'], '.2f')} | "
            f"{_v(s['latency_p50_ms'], '.0f')} / {_v(s['latency_p99_ms'], '.0f')} | "
            f"{_v(s['AP25'], '.3f')} | {_v(s['AP50'], '.3f')} | {s['scenes_missing']} | "
            f"{s['scenes_malformed']} |")
    return "\n".join(lines)
