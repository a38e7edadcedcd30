"""Run every benchmark in turn and print its figures (``make bench``).

    python -m benchmarks.run_all [--only NAME ...]

Each benchmark is also runnable alone (``python -m benchmarks.bench_<name> --help``).
Benchmarks that need ``../shared/data`` print a SKIPPED line where it is absent.
Expect about 20-30 minutes on 2 CPU cores (the simulator rate and training steps dominate).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

BENCHMARKS = ("sensor", "simulator", "clutter", "overlay", "domain_gap", "real_patchworks",
              "box_diagnosis", "box_refine", "box_default", "box_tta",
              "rendering", "sim_geometry", "training", "streaming", "runtime",
              "deployment", "attack", "verifier", "ood_kinds", "box_calibration")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run_all",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    args = ap.parse_args(argv)
    failed = []
    for name in args.only:
        print(f"\n===== benchmarks.bench_{name} =====", flush=True)
        t0 = time.perf_counter()
        mod = importlib.import_module(f"benchmarks.bench_{name}")
        try:
            rc = mod.main([])  # every benchmark: main(argv=None), defaults with []
        except SystemExit as exc:  # argparse exit
            rc = exc.code
        if rc:
            failed.append(name)
        print(f"===== {name}: {time.perf_counter() - t0:.0f} s =====", flush=True)
    if failed:
        print(f"failed: {failed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
