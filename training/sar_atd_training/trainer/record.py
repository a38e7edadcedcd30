"""The training record that travels with a released model: config, seed, steps, wall time,
hardware, loss curve and validation figures, gathered from a run folder.

    sar-atd train record --run runs/default --out models/default

writes ``models/default_record.json`` and ``models/default_loss.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import yaml

from sar_atd.atomic import atomic_write_json
from sar_atd.errors import CheckpointError


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise CheckpointError(f"run folder lacks {path.name}: {path}")
    with path.open() as f:
        return list(csv.DictReader(f))


def build_record(run: Path) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The record dict of run folder ``run`` and its per-step training rows."""
    rows = _read_csv(run / "train.csv")
    val_rows = _read_csv(run / "val.csv") if (run / "val.csv").is_file() else []
    record: dict[str, Any] = {}
    if (run / "record.json").is_file():
        record.update(json.loads((run / "record.json").read_text()))
    record["config"] = yaml.safe_load((run / "config.yaml").read_text())
    # loss curve, decimated to <= 200 points (mean over each window)
    every = max(1, len(rows) // 200)
    curve = []
    for i in range(0, len(rows), every):
        win = rows[i:i + every]
        curve.append({"step": int(win[-1]["step"]),
                      "loss": sum(float(r["loss"]) for r in win) / len(win)})
    record["loss_curve"] = curve
    record["validation_history"] = [
        {k: (float(v) if k not in ("set",) else v) for k, v in r.items()} for r in val_rows]
    s_per_step = sorted(float(r["s_per_step"]) for r in rows)
    record["median_s_per_step"] = s_per_step[len(s_per_step) // 2] if s_per_step else None
    record.setdefault("step", int(rows[-1]["step"]) if rows else 0)
    return record, rows


def plot_record(record: dict[str, Any], rows: list[dict[str, str]], out_png: Path) -> None:
    """Training loss (raw and smoothed) and validation AP over steps."""
    from sar_atd.plots import new_figure, save_png

    steps = [int(r["step"]) for r in rows]
    loss = [float(r["loss"]) for r in rows]
    fig = new_figure((11, 4))
    a, b = fig.subplots(1, 2)
    a.plot(steps, loss, lw=0.5, alpha=0.4, label="loss")
    a.plot([c["step"] for c in record["loss_curve"]], [c["loss"] for c in record["loss_curve"]],
           lw=1.5, label="window mean")
    a.set_xlabel("step")
    a.set_ylabel("training loss")
    a.legend()
    a.grid(alpha=0.3)
    for name in sorted({v["set"] for v in record["validation_history"]}):
        hist = [v for v in record["validation_history"] if v["set"] == name]
        for key in ("AP25", "AP50"):
            b.plot([v["step"] for v in hist], [v[key] for v in hist], marker="o",
                   label=f"{name} {key}")
    b.set_xlabel("step")
    b.set_ylabel("AP")
    b.set_ylim(0, 1)
    if record["validation_history"]:
        b.legend()
    else:
        b.text(0.5, 0.5, "no validation in this run", ha="center", transform=b.transAxes)
    b.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, out_png, dpi=100)


def main(args: argparse.Namespace) -> int:
    record, rows = build_record(args.run)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = out.with_name(out.name + "_record.json")
    png_path = out.with_name(out.name + "_loss.png")
    atomic_write_json(json_path, record, indent=2)
    plot_record(record, rows, png_path)
    print(f"wrote {json_path} and {png_path}")
    return 0


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", type=Path, required=True, help="run folder of sar-atd train detector")
    p.add_argument("--out", type=Path, required=True,
                   help="output prefix: writes PREFIX_record.json and PREFIX_loss.png")


def loss_summary(losses: list[float]) -> dict[str, Any]:
    """Mean loss of the first and last 50 steps and the curve of 10-step means (record keys
    ``loss_first_50``, ``loss_last_50``, ``loss_curve``)."""
    import numpy as np

    return {"loss_first_50": float(np.mean(losses[:50])),
            "loss_last_50": float(np.mean(losses[-50:])),
            "loss_curve": [float(np.mean(losses[i:i + 10]))
                           for i in range(0, len(losses), 10)]}
