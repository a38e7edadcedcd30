"""Training and inference speed of each detector on this machine.

    python -m benchmarks.bench_training [--steps 3] [--sizes 640 320] [--models ...]
        [--threads 2] [--device cpu]

Prints, per model and crop size (batch 2, toy speckle images, SGD):
* training s/step and images/s without FGSM and with FGSM on the whole batch (fraction 1),
  and the FGSM overhead ratio (step time with / without);
* inference ms/image (batch 1) for torch and ONNX Runtime (light model at each size);
* training-data generation rate of the overlay pipeline (images/s) vs. the training rate.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def _batch(size: int, n: int, seed: int):
    from sar_atd_training.trainer.data import ToyConfig, ToyDataset, take

    samples = take(lambda s: ToyDataset(ToyConfig(size=size, side_px=(15, 60)), s), seed, n)
    return [s[0].float()[None] for s in samples], [s[1] for s in samples]


def time_training(name: str, size: int, steps: int, fgsm_eps: float, device: str) -> float:
    """Median seconds per SGD step (batch 2) after one warm-up step."""
    from sar_atd.models import build_detector
    from sar_atd_training.trainer.fgsm import fgsm_perturb

    torch.manual_seed(0)
    model = build_detector(name).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    times = []
    for i in range(steps + 1):
        xs, ts = _batch(size, 2, i)
        xs = [x.to(device) for x in xs]
        ts = [{k: v.to(device) for k, v in t.items()} for t in ts]
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        if fgsm_eps > 0:
            xs = fgsm_perturb(model, xs, ts, fgsm_eps)
        loss = sum(model(xs, ts).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def time_inference(name: str, size: int, reps: int, tmp: Path) -> tuple[float, float]:
    """(torch ms/image, ONNX Runtime ms/image) at batch 1 on CPU."""
    from sar_atd.backends import load_detector
    from sar_atd.models import build_detector, save_weights
    from sar_atd_training.export import export_checkpoint

    torch.manual_seed(0)
    model = build_detector(name)
    pt = save_weights(tmp / f"{name}.pt", model, name, {})
    onnx_path = tmp / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_checkpoint(pt, onnx_path)
    image = np.random.default_rng(0).integers(0, 256, (size, size)).astype(np.uint8)
    out = []
    for det in (load_detector(pt), load_detector(onnx_path)):
        det.detect(image)
        t0 = time.perf_counter()
        for _ in range(reps):
            det.detect(image)
        out.append(1000 * (time.perf_counter() - t0) / reps)
    return out[0], out[1]


def time_generation(size: int, n: int) -> float | None:
    """Overlay-pipeline images/s at ``size`` px on CPU (None when it cannot be built)."""
    try:
        from sar_atd_training.trainer.data import overlay_factory

        factory = overlay_factory({"kind": "overlay", "generated_backgrounds": 1}, size)
        it = iter(factory(0))
        next(it)
        t0 = time.perf_counter()
        for _ in range(n):
            next(it)
        return n / (time.perf_counter() - t0)
    except Exception as err:  # noqa: BLE001 - report, do not hide
        print(f"  (overlay generation not measured: {type(err).__name__}: {err})")
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+",
                   default=["retinanet_r18_fpn", "retinanet_r50_fpn", "fasterrcnn_vgg16"])
    p.add_argument("--sizes", nargs="+", type=int, default=[640, 320])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--fgsm-eps", type=float, default=2.0)
    p.add_argument("--skip-inference", action="store_true")
    p.add_argument("--skip-generation", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    dev = args.device
    print(f"torch {torch.__version__}, device {dev}, threads {args.threads}, batch 2, "
          f"{args.steps} timed steps")
    print(f"{'model':20s} {'size':>5s} {'s/step':>8s} {'img/s':>7s} {'s/step+FGSM':>12s} "
          f"{'img/s':>7s} {'FGSM x':>7s}")
    train_rate = {}
    for name in args.models:
        for size in args.sizes:
            plain = time_training(name, size, args.steps, 0.0, dev)
            adv = time_training(name, size, args.steps, args.fgsm_eps, dev)
            train_rate[(name, size)] = 2 / plain
            print(f"{name:20s} {size:5d} {plain:8.2f} {2 / plain:7.2f} {adv:12.2f} "
                  f"{2 / adv:7.2f} {adv / plain:7.2f}", flush=True)
    if not args.skip_inference:
        print(f"\n{'model':20s} {'size':>5s} {'torch ms/img':>13s} {'ORT ms/img':>11s}")
        with tempfile.TemporaryDirectory() as tmp:
            for name in args.models:
                for size in args.sizes:
                    t, o = time_inference(name, size, max(2, args.steps), Path(tmp))
                    print(f"{name:20s} {size:5d} {t:13.1f} {o:11.1f}", flush=True)
    if not args.skip_generation:
        print("\noverlay data generation (CPU, 1 process) vs training rate:")
        for size in args.sizes:
            g = time_generation(size, 8)
            if g is not None:
                rates = ", ".join(f"{n} {train_rate[(n, s)]:.2f}" for (n, s) in train_rate
                                  if s == size)
                print(f"  {size} px: generation {g:.2f} img/s; training img/s: {rates}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
