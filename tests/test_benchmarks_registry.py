"""Every benchmark is runnable alone and from ``benchmarks.run_all``: it defines
``main(argv=None)`` and is registered (checked on the source, without running it)."""

from __future__ import annotations

import ast
from pathlib import Path

from benchmarks.run_all import BENCHMARKS

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


def test_every_benchmark_has_main_argv_and_is_registered() -> None:
    files = sorted(BENCH_DIR.glob("bench_*.py"))
    assert files
    for f in files:
        tree = ast.parse(f.read_text())
        mains = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
        assert mains, f"{f.name} has no main()"
        args = mains[0].args
        assert [a.arg for a in args.args] == ["argv"], f"{f.name}: main must take argv"
        assert len(args.defaults) == 1 and isinstance(args.defaults[0], ast.Constant) \
            and args.defaults[0].value is None, f"{f.name}: main(argv=None)"
    assert {f.stem.removeprefix("bench_") for f in files} <= set(BENCHMARKS)
