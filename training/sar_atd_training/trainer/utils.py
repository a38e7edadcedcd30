"""Trainer utilities: smoothed meters, a logging MetricLogger, CSV rows, distributed helpers."""

from __future__ import annotations

import csv
import io
import logging
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from sar_atd.atomic import atomic_write_text

log = logging.getLogger("sar_atd_training.trainer")


class SmoothedValue:
    """Running window (median, mean) and global average of a scalar series."""

    def __init__(self, window: int = 20) -> None:
        self.values: deque[float] = deque(maxlen=window)
        self.total = 0.0
        self.count = 0

    def update(self, value: float, n: int = 1) -> None:
        self.values.append(float(value))
        self.total += float(value) * n
        self.count += n

    @property
    def median(self) -> float:
        v = sorted(self.values)
        return v[len(v) // 2] if v else float("nan")

    @property
    def avg(self) -> float:
        return sum(self.values) / len(self.values) if self.values else float("nan")

    @property
    def global_avg(self) -> float:
        return self.total / self.count if self.count else float("nan")


class MetricLogger:
    """Named :class:`SmoothedValue` meters, formatted for log lines and tqdm postfixes."""

    def __init__(self, window: int = 20) -> None:
        self.meters: dict[str, SmoothedValue] = {}
        self.window = window

    def update(self, **values: float) -> None:
        for k, v in values.items():
            self.meters.setdefault(k, SmoothedValue(self.window)).update(v)

    def averages(self) -> dict[str, float]:
        return {k: m.avg for k, m in self.meters.items()}

    def __str__(self) -> str:
        return "  ".join(f"{k} {m.median:.4f} ({m.global_avg:.4f})" for k, m in self.meters.items())


class CsvLog:
    """Append rows to a CSV file; the header is the first row's keys (new keys extend it)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.fields: list[str] = []
        if self.path.is_file() and self.path.stat().st_size:
            with self.path.open() as f:
                self.fields = next(csv.reader(f), [])

    def write(self, row: dict[str, Any]) -> None:
        new = [k for k in row if k not in self.fields]
        if new:  # (re)write the file with the wider header, atomically
            rows: list[dict[str, str]] = []
            if self.fields and self.path.is_file():
                with self.path.open() as f:
                    rows = list(csv.DictReader(f))
            self.fields += new
            buf = io.StringIO()
            w = csv.DictWriter(buf, self.fields)
            w.writeheader()
            w.writerows(rows)
            atomic_write_text(self.path, buf.getvalue())
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.fields).writerow(row)


@dataclass
class DistInfo:
    """Process group facts: ``rank``, ``world_size``, ``local_rank``, ``enabled``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group set up by ``torchrun`` (env ``RANK``/``WORLD_SIZE``), if any.

    Uses NCCL on CUDA and gloo on CPU. Single process runs return a disabled DistInfo.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    info = DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(),
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")), enabled=True)
    log.info("distributed: rank %d/%d (local %d)", info.rank, info.world_size, info.local_rank)
    return info


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a tensor over ranks (the value itself when not distributed)."""
    if not info.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / info.world_size
