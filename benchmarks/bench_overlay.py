"""Throughput and memory of the on-the-fly overlay pipeline.

``python -m benchmarks.bench_overlay [--seconds 5] [--threads N]``

Prints generated 640 x 640 images/s on the CPU (batch sizes 1 and 8, with the torch thread
count), the peak RSS of a DataLoader worker (``resource.getrusage`` inside the worker), and the
CUDA figures when a GPU is present (skipped otherwise, with a message). Signatures: the physics
simulator when installed (a few made on the fly), else toy point-scatterer signatures; the
background is one generated 1784 x 1478 clutter scene.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from typing import Any

import torch
from torch.utils.data import DataLoader

from sar_atd_training.clutter import BackgroundSet, ClutterConfig
from sar_atd_training.overlay import OverlayConfig, OverlayDataset, OverlayPipeline, toybank


def rate(pipe: OverlayPipeline, batch: int, seconds: float) -> float:
    g = torch.Generator().manual_seed(0)
    pipe.generate(batch, g)  # warm-up
    if pipe.device.type == "cuda":
        torch.cuda.synchronize()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        out = pipe.generate(batch, g)
        n += len(out)
    if pipe.device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


class _RssDataset(OverlayDataset):
    """Adds the worker's peak RSS (MiB) to each target."""

    def __iter__(self) -> Any:
        for img, tgt in super().__iter__():
            tgt["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
            yield img, tgt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="timing window per figure")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--worker-images", type=int, default=48)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        bank = toybank.simulated_bank()
        source = "simulated (simulate_signature)"
    except ImportError:
        bank = toybank.make_toy_bank(classes=("T72", "BMP2", "ZIL131", "2S1"), ood=True)
        source = "toy point-scatterer (simulator not installed)"
    bgs = BackgroundSet.generated(1, ClutterConfig(), seed=0)
    bgs[0]
    cfg = OverlayConfig()
    print(f"signatures: {source}, {len(bank)} records; background: generated 1784x1478")
    pipe = OverlayPipeline(cfg, bank, bgs, "cpu")
    for b in (1, 8):
        print(f"CPU ({args.threads} torch threads), batch {b}: "
              f"{rate(pipe, b, args.seconds):7.1f} images/s (640x640, 1-3 targets)")
    ds = _RssDataset(cfg, bank, bgs, seed=0, batch_size=8, length=args.worker_images)
    loader = DataLoader(ds, batch_size=8, num_workers=1,
                        collate_fn=lambda b: ([x[0] for x in b], [x[1] for x in b]))
    t0, n, rss = time.perf_counter(), 0, 0.0
    for imgs, tgts in loader:
        n += len(imgs)
        rss = max(rss, max(t["rss_mib"] for t in tgts))
    print(f"DataLoader, 1 worker: {n / (time.perf_counter() - t0):.1f} images/s incl. start-up;"
          f" worker peak RSS {rss:.0f} MiB")
    if torch.cuda.is_available():
        gpipe = OverlayPipeline(cfg, bank, bgs, "cuda")
        name = torch.cuda.get_device_name()
        for b in (8, 64):
            print(f"CUDA ({name}), batch {b}: {rate(gpipe, b, args.seconds):8.1f} images/s")
    else:
        print("CUDA: skipped (no CUDA device on this machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
