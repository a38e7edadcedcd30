"""Onboard runtime figures: scene throughput, batched tiler, tiler memory, accuracy via tiles.

    python -m benchmarks.bench_runtime [--model models/default.pt] [--scene 2048]
        [--tile 640] [--overlap 128] [--batch 4] [--scenes 2] [--only PART ...]

Parts (``--only``):

* ``throughput``: a ``--scene`` x ``--scene`` float32 amplitude scene through the scene
  detector: megapixels/s and milliseconds per tile for the torch backend and ONNX Runtime
  (the batched tile graph exported on the fly), CFAR beside them; torch CUDA (fp16 weights
  cast) and peak GPU memory when a GPU is present.
* ``tiler``: the batched tiler (one LUT pass per scene, stacked tile views) against a
  per-tile Python loop (slice, LUT, convert per tile) on the same scene: medians and ratio.
* ``memory``: the tiler's peak extra resident memory (Linux ``VmHWM`` after resetting it,
  ``clear_refs`` 5) for one scene, every batch consumed, against the scene array's bytes,
  for float32 and complex64 scenes (goal <= 1.5x); ``torch.cuda.max_memory_allocated`` on
  a GPU.
* ``accuracy``: ``--scenes`` large scenes, each 4 x 4 real-chip patchworks (464 px, SARBake
  boxes) side by side (1856 x 1856 px), evaluated through ``--tile``/``--overlap`` tiles
  and, untiled, patchwork by patchwork: AP25/AP50 of both (goal: within 0.01) and targets
  reported more than once at the operating threshold (duplicates), for the model and CFAR.

Figures are medians of ``--repeats`` runs in one process; the machine and thread count are
printed. Skips the real-data part with a message when ``../shared/data`` is absent.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

PARTS = ("throughput", "tiler", "memory", "accuracy")
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "models" / "default.pt"


def _median_time(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _scene(side: int, seed: int = 0, dtype: Any = np.float32) -> np.ndarray:
    """Rayleigh speckle amplitude (median ~0.03, MSTAR grass level) with bright blobs."""
    rng = np.random.default_rng(seed)
    amp = rng.rayleigh(0.025, (side, side)).astype(np.float32)
    for y, x in rng.integers(40, side - 40, (side // 128, 2)):
        amp[y:y + 14, x:x + 26] += rng.rayleigh(0.5, (14, 26)).astype(np.float32)
    if np.issubdtype(dtype, np.complexfloating):
        phase = rng.uniform(0, 2 * np.pi, amp.shape).astype(np.float32)
        return (amp * np.exp(1j * phase)).astype(dtype)
    return amp.astype(dtype)


def _scene_detector(det: Any, args: argparse.Namespace, device: str = "cpu",
                    batch: int | None = None, score_threshold: float = 0.0) -> Any:
    from sar_atd.config import SceneDetectorConfig, TilerConfig
    from sar_atd.scene import SceneDetector

    cfg = TilerConfig(tile_size=args.tile, overlap=args.overlap,
                      batch_size=batch or args.batch, device=device)  # model's rendering
    return SceneDetector(det, cfg, SceneDetectorConfig(score_threshold=score_threshold))


def part_throughput(args: argparse.Namespace) -> None:
    import torch

    from sar_atd.runtime import resolve_detector
    from sar_atd.tiling import tile_grid

    scene = _scene(args.scene)
    n_tiles = len(tile_grid(args.scene, args.scene, args.tile, args.overlap))
    mp = scene.size / 1e6
    print(f"\n[throughput] {args.scene}x{args.scene} float32 scene, {n_tiles} tiles of "
          f"{args.tile} px (overlap {args.overlap}), batch {args.batch}, CPU threads "
          f"{torch.get_num_threads()}")
    rows = []
    specs: list[tuple[str, str, dict]] = [("CFAR (CA)", "cfar", {})]
    if args.model.is_file():
        specs.append(("model, torch", str(args.model), {}))
        tmp = Path(tempfile.mkdtemp(prefix="bench_runtime_"))
        onnx_path = tmp / f"model_b{args.batch}_t{args.tile}.onnx"
        from sar_atd_training.export import export_checkpoint

        t0 = time.perf_counter()
        export_checkpoint(args.model, onnx_path, score_threshold=0.01, batch=args.batch,
                          tile=args.tile)
        print(f"  exported the batched ONNX graph in {time.perf_counter() - t0:.0f} s")
        specs.append(("model, ONNX Runtime", str(onnx_path), {}))
    for label, spec, kw in specs:
        det, _ = resolve_detector(spec, device="cpu", score_threshold=0.01, **kw)
        sd = _scene_detector(det, args)
        sd.detect(scene[:args.tile, :args.tile])  # warm-up
        s = _median_time(lambda sd=sd: sd.detect(scene), args.repeats)
        rows.append((label, mp / s, s * 1e3 / n_tiles))
    if torch.cuda.is_available() and args.model.is_file():
        det, _ = resolve_detector(str(args.model), device="cuda", score_threshold=0.01)
        det.model.half()
        det.detect_batch = _half_inputs(det.detect_batch)
        sd = _scene_detector(det, args, device="cuda")
        sd.detect(scene)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        s = _median_time(lambda: (sd.detect(scene), torch.cuda.synchronize()), args.repeats)
        rows.append((f"model, torch CUDA fp16 ({torch.cuda.get_device_name(0)})", mp / s,
                     s * 1e3 / n_tiles))
        print(f"  peak GPU memory (torch allocator): "
              f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    print(f"  {'detector':<44s} {'MP/s':>8s} {'ms/tile':>9s}")
    for label, mps, ms in rows:
        print(f"  {label:<44s} {mps:8.3f} {ms:9.1f}")


def _half_inputs(fn: Any) -> Any:
    def wrapped(tiles: Any) -> Any:
        return fn(tiles.half())
    return wrapped


def part_tiler(args: argparse.Namespace) -> None:
    import torch

    from sar_atd.config import TilerConfig
    from sar_atd.sar.lut import power_law_render
    from sar_atd.tiling import Tiler

    scene = _scene(args.scene)
    cfg = TilerConfig(tile_size=args.tile, overlap=args.overlap, batch_size=args.batch,
                      device="cpu", amplitude_ref=0.5)
    tiler = Tiler(cfg)
    rects = tiler.grid(*scene.shape)

    def batched() -> int:
        n = 0
        for b in tiler.tiles(scene):
            n += b.tiles.shape[0]
        return n

    def loop() -> int:
        n = 0
        for i0 in range(0, len(rects), args.batch):
            tiles = []
            for x0, y0, x1, y1 in rects[i0:i0 + args.batch]:
                t = power_law_render(torch.from_numpy(scene[y0:y1, x0:x1]), 0.5, 0.5)
                tiles.append(t.to(torch.float32)[None])
            n += len(torch.stack(tiles))
        return n

    assert batched() == loop() == len(rects)
    tb, tl = _median_time(batched, args.repeats), _median_time(loop, args.repeats)
    print(f"\n[tiler] {args.scene}x{args.scene} float32 -> {len(rects)} tiles, CPU: batched "
          f"{tb * 1e3:.0f} ms, per-tile loop {tl * 1e3:.0f} ms, ratio {tl / tb:.2f}x")
    if torch.cuda.is_available():
        gcfg = TilerConfig(tile_size=args.tile, overlap=args.overlap, batch_size=args.batch,
                           device="cuda", amplitude_ref=0.5)
        gt = Tiler(gcfg)
        sc = torch.from_numpy(scene).cuda()

        def gbatched() -> None:
            for _ in gt.tiles(sc):
                pass
            torch.cuda.synchronize()

        def gloop() -> None:
            for x0, y0, x1, y1 in rects:
                power_law_render(sc[y0:y1, x0:x1], 0.5, 0.5).float()
            torch.cuda.synchronize()

        gbatched(), gloop()
        a, b = _median_time(gbatched, args.repeats), _median_time(gloop, args.repeats)
        print(f"[tiler] GPU ({torch.cuda.get_device_name(0)}): batched {a * 1e3:.1f} ms, "
              f"per-tile loop {b * 1e3:.1f} ms, ratio {b / a:.2f}x")


def _rss_hwm_kib() -> tuple[int, int]:
    vals = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                vals[line.split(":")[0]] = int(line.split()[1])
    return vals["VmRSS"], vals["VmHWM"]


def _memory_child(side: int, tile: int, overlap: int, batch: int, dtype: str) -> None:
    """Run in a fresh process with glibc's mmap threshold fixed (every large buffer is
    mapped on allocation and unmapped on free, so resident memory follows the live
    allocations): print the peak extra resident bytes of tiling one scene."""
    import torch

    from sar_atd.config import TilerConfig
    from sar_atd.tiling import Tiler

    torch.set_num_threads(2)
    tiler = Tiler(TilerConfig(tile_size=tile, overlap=overlap, batch_size=batch,
                              device="cpu", amplitude_ref=0.5))
    for _ in tiler.tiles(_scene(256, dtype=np.dtype(dtype))):  # code paths, lazy imports
        pass
    scene = _scene(side, dtype=np.dtype(dtype))
    rss0, _ = _rss_hwm_kib()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    for b in tiler.tiles(scene):
        del b
    _, hwm = _rss_hwm_kib()
    print(f"{(hwm - rss0) * 1024} {scene.nbytes}")


def part_memory(args: argparse.Namespace) -> None:
    import subprocess

    import torch

    from sar_atd.config import TilerConfig
    from sar_atd.tiling import Tiler

    print(f"\n[memory] tiler peak extra resident memory for one {args.scene}x{args.scene} "
          f"scene, all batches consumed (batch {args.batch}; fresh process, "
          f"MALLOC_MMAP_THRESHOLD_=65536)")
    if not Path("/proc/self/clear_refs").exists():
        print("  SKIPPED: needs Linux /proc/self/clear_refs")
        return
    batch_bytes = args.batch * args.tile * args.tile * 4
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    for dtype in ("float32", "complex64"):
        peaks = []
        for _ in range(args.repeats):
            code = (f"from benchmarks.bench_runtime import _memory_child; _memory_child("
                    f"{args.scene}, {args.tile}, {args.overlap}, {args.batch}, '{dtype}')")
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 env=env, cwd=Path(__file__).resolve().parents[1], check=True)
            peak, nbytes = (int(v) for v in res.stdout.split()[-2:])
            peaks.append(peak)
        peak = max(0, statistics.median(peaks))
        print(f"  {dtype:<9s} scene {nbytes / 2**20:6.1f} MiB: peak extra "
              f"{peak / 2**20:6.1f} MiB = {peak / nbytes:.2f}x the scene (one tile batch "
              f"alone: {batch_bytes / 2**20:.1f} MiB; goal <= 1.5x)")
    if torch.cuda.is_available():
        gt = Tiler(TilerConfig(tile_size=args.tile, overlap=args.overlap,
                               batch_size=args.batch, device="cuda", amplitude_ref=0.5))
        sc = torch.from_numpy(_scene(args.scene)).cuda()
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        for b in gt.tiles(sc):
            del b
        torch.cuda.synchronize()
        extra = torch.cuda.max_memory_allocated() - base
        print(f"  GPU float32 scene {sc.numel() * 4 / 2**20:.1f} MiB: peak extra "
              f"{extra / 2**20:.1f} MiB = {extra / (sc.numel() * 4):.2f}x")


def _big_scenes(args: argparse.Namespace, chips: Path) -> list[tuple[np.ndarray, np.ndarray,
                                                                     list]]:
    """``--scenes`` scenes of 4 x 4 patchworks side by side; (scene, boxes, patchworks)."""
    from sar_atd_training.evaluation.patchwork import build_patchworks, mosaic

    out = []
    for k in range(args.scenes):
        pws = build_patchworks(chips, n=16, seed=100 + k, progress=False)
        out.append((*mosaic(pws, 4), pws))
    return out


def _duplicates(dets: Any, gts: np.ndarray, threshold: float) -> int:
    """Targets matched (IoU >= 0.3) by more than one detection scored >= threshold."""
    from sar_atd.boxes import box_iou

    keep = dets.scores >= threshold
    if not keep.any() or not len(gts):
        return 0
    hits = (box_iou(dets.boxes[keep], gts) >= 0.3).sum(0)
    return int((hits > 1).sum())


def part_accuracy(args: argparse.Namespace) -> None:
    from sar_atd.metrics import evaluate
    from sar_atd.runtime import resolve_detector
    from sar_atd_training.paths import MISSING_DATA_MESSAGE, mstar_chips_dir

    chips = mstar_chips_dir()
    print(f"\n[accuracy] {args.scenes} scene(s) of 4x4 real-chip patchworks (1856 px), "
          f"tiles {args.tile}/{args.overlap} vs untiled patchworks")
    if chips is None:
        print(f"  SKIPPED: {MISSING_DATA_MESSAGE}")
        return
    scenes = _big_scenes(args, chips)
    n_gt = sum(len(b) for _, b, _ in scenes)
    specs = ["cfar"] + ([str(args.model)] if args.model.is_file() else [])
    print(f"  {n_gt} targets; {'detector':<26s} {'AP25 tiled/untiled':>20s} "
          f"{'AP50 tiled/untiled':>20s} {'dupl.':>6s} {'merged':>7s} {'s':>6s}")
    for spec in specs:
        det, _ = resolve_detector(spec, device="cpu", score_threshold=0.01)
        sd = _scene_detector(det, args, score_threshold=0.0)
        t0 = time.perf_counter()
        tiled, untiled, gts_t, gts_u = [], [], [], []
        n_merged = 0
        for scene, boxes, pws in scenes:
            out = sd.detect(scene)
            n_merged += out.n_raw - len(out)
            tiled.append(out.to_detections())
            gts_t.append(boxes)
            for pw in pws:
                untiled.append(det.detect(pw.image))
                gts_u.append(pw.boxes)
        secs = time.perf_counter() - t0
        mt = evaluate(tiled, gts_t, (0.25, 0.5))
        mu = evaluate(untiled, gts_u, (0.25, 0.5))
        op = (mu.get("operating_points") or {}).get("0.50", {}).get("score_threshold", 0.0)
        dup = sum(_duplicates(d, g, op) for d, g in zip(tiled, gts_t, strict=True))
        dup_u = sum(_duplicates(d, g, op) for d, g in zip(untiled, gts_u, strict=True))
        print(f"  {det.name:<36s} {mt['AP25']:.3f}/{mu['AP25']:.3f}"
              f"{'':>9s}{mt['AP50']:.3f}/{mu['AP50']:.3f}{'':>5s}{dup:>4d} "
              f"(untiled {dup_u}) {n_merged:>6d} {secs:6.0f}")
        print(f"    |dAP25| {abs(mt['AP25'] - mu['AP25']):.4f}  |dAP50| "
              f"{abs(mt['AP50'] - mu['AP50']):.4f}  (goal <= 0.01); duplicates counted at the "
              f"untiled best-F1 threshold {op:.3g}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_runtime",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--scene", type=int, default=2048, help="throughput scene side (px)")
    ap.add_argument("--tile", type=int, default=640)
    ap.add_argument("--overlap", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--scenes", type=int, default=2, help="accuracy scenes (16 patchworks)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    args = ap.parse_args(argv)
    import logging

    import torch

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    print(f"bench_runtime on {platform.node()} ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"GPU: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'})")
    for part in args.only:
        globals()[f"part_{part}"](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
