"""``sar-atd run``: the ROS 2 node graph on a bag, as separate processes over DDS.

Thin front end of :func:`sar_atd_ros.runner.run_graph`: replays the bag through
``scene_player -> scene_detector (or tiler -> detector) -> evaluator``, stops every node
when the bag is done, prints the evaluator's summary and writes its report. Exit code 1
names the node that failed to start or crashed (e.g. a missing model file).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

LOG = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the ROS 2 node graph on a bag (separate processes, DDS)")
    p.add_argument("--bag", type=Path, required=True, help="bag to replay (sar-atd bag make)")
    p.add_argument("--detector", help="cfar | cfar-os | model file (.pt/.onnx/.engine); "
                   "default: the parameter file's")
    p.add_argument("--params", type=Path, help="parameter file (default: the package's "
                   "params/default.yaml)")
    p.add_argument("--report", type=Path, help="report folder (report.json, pr_curves.png)")
    p.add_argument("--record", type=Path, help="write detections and metrics to this new bag")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--lossless", action="store_const", const="lossless", dest="mode",
                      help="next scene when the previous one's detections arrived (default)")
    pace.add_argument("--speed", type=float, help="bag timing divided by this factor")
    pace.add_argument("--max-rate", action="store_const", const="max_rate", dest="mode",
                      help="as fast as the player can publish (drops are counted)")
    pace.add_argument("--realtime", action="store_const", const="realtime", dest="mode",
                      help="the bag's own timing")
    p.add_argument("--backend", choices=("auto", "torch", "onnxruntime", "tensorrt"))
    p.add_argument("--device", help="auto | cpu | cuda[:N]")
    p.add_argument("--layout", choices=("scene_detector", "split"), default="scene_detector",
                   help="one-process tiler+detector (default) or separate tiler and detector")
    p.add_argument("--wait-for-model", action="store_true",
                   help="keep the detector waiting for a missing model file")
    p.add_argument("--restarts", type=int, default=3,
                   help="restart a tiler/detector that dies mid-stream this many times "
                        "(0: a crash ends the run)")
    p.add_argument("--timeout", type=float, default=1800.0, help="give up after this (s)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run, mode=None)


def run(args: argparse.Namespace) -> int:
    from sar_atd_ros.runner import GraphOptions, format_summary, run_graph

    mode = "speed" if args.speed is not None else args.mode
    if args.speed is not None and not args.speed > 0:
        raise ValueError(f"--speed must be > 0, got {args.speed}")
    if args.restarts < 0:
        raise ValueError(f"--restarts must be >= 0, got {args.restarts}")
    opts = GraphOptions(bag=args.bag, params=args.params, detector=args.detector,
                        backend=args.backend, device=args.device, mode=mode,
                        speed=args.speed, report=args.report, record=args.record,
                        wait_for_model=args.wait_for_model, layout=args.layout,
                        timeout_s=args.timeout, restarts=args.restarts)
    result = run_graph(opts)
    print(json.dumps(result["summary"], indent=1) if args.json else format_summary(result))
    if result.get("player_error"):  # the report covers the part of the bag that was read
        print(f"sar-atd run: error: {result['player_error']}", file=sys.stderr)
        return 1
    return 0
