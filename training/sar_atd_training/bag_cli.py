"""``sar-atd bag make|info``: SAR bags (rosbag2, mcap or sqlite3) for the ROS 2 node graph.

``make`` writes scenes and their ground truth from an evaluation dataset (a COCO folder, a
folder of MSTAR chips + SARBake masks turned into patchworks) or from generated scenes
(clutter + synthetic targets from the overlay pipeline, float32 amplitude, e.g. 2048 x
2048); ``info`` summarises a bag. The bag format lives in :mod:`sar_atd_ros.bag`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bag", help="make or inspect SAR bags for the ROS 2 nodes")
    bsub = p.add_subparsers(dest="bag_command", metavar="SUBCOMMAND")
    m = bsub.add_parser("make", help="write scenes + ground truth to a new rosbag2 bag")
    src = m.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", type=Path,
                     help="COCO folder/JSON, or a folder of chips + masks (-> patchworks)")
    src.add_argument("--generate", type=int, metavar="N",
                     help="N generated scenes: clutter + synthetic targets (float amplitude)")
    m.add_argument("--out", type=Path, required=True, help="new bag folder")
    m.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    m.add_argument("--rate-hz", type=float, default=1.0, help="scene rate of the bag (Hz)")
    m.add_argument("--size", type=int, default=2048, help="generated scene side (px)")
    m.add_argument("--targets", type=int, nargs=2, default=(4, 8), metavar=("MIN", "MAX"),
                   help="targets per generated scene")
    m.add_argument("--n", type=int, default=50, help="patchworks built from a chips folder")
    m.add_argument("--max-scenes", type=int, default=0, help="first N scenes only (0 = all)")
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(func=run_make)
    i = bsub.add_parser("info", help="summarise a bag: topics, counts, rate, encodings")
    i.add_argument("bag", type=Path)
    i.set_defaults(func=run_info)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def dataset_scenes(path: Path, n: int = 50, seed: int = 0) -> Iterator[Any]:
    """BagScenes of a COCO dataset or of patchworks built from a chips + masks folder."""
    from sar_atd_ros.bag import BagScene

    if path.is_file() or (path / "annotations.json").is_file():
        from sar_atd.evalset import load_eval_dataset

        images, desc = load_eval_dataset(path)
        LOG.info("%s", desc)
        for im in images:
            yield BagScene(im.name, im.image, im.boxes, list(getattr(im, "labels", []) or []))
        return
    if not path.is_dir():
        raise FileNotFoundError(f"dataset not found: {path}")
    from sar_atd_training.evaluation.patchwork import build_patchworks

    for pw in build_patchworks(path, n=n, seed=seed):
        yield BagScene(pw.name, pw.image, pw.boxes, list(pw.labels or []))


def generated_scenes(n: int, size: int = 2048, targets: tuple[int, int] = (4, 8),
                     seed: int = 0) -> Iterator[Any]:
    """``n`` float32 amplitude scenes: generated clutter + targets of a small simulated bank
    overlaid by the training pipeline (boxes from the placement)."""
    import torch

    from sar_atd_ros.bag import BagScene
    from sar_atd_training.clutter.generator import ClutterConfig, generate_scene
    from sar_atd_training.overlay.pipeline import OverlayConfig, OverlayPipeline
    from sar_atd_training.overlay.toybank import simulated_bank

    bank = simulated_bank(classes=("T72", "BMP2", "ZIL131", "2S1", "BTR70", "D7"),
                          azimuths_deg=(0.0, 45.0, 90.0, 135.0, 200.0, 300.0), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    for i in range(n):
        clutter = generate_scene(ClutterConfig(height=size, width=size), seed=seed * 1000 + i)
        pipe = OverlayPipeline(OverlayConfig(image_size=size, targets_per_image=tuple(targets)),
                               bank, [clutter])
        sample = pipe.generate(1, gen, keep_complex=True)[0]
        amp = sample.complex_image.abs().to(torch.float32).cpu().numpy()
        boxes = sample.boxes.cpu().numpy()
        labels = [str(o.get("class", "")) for o in sample.meta.get("objects", [])
                  if o.get("is_target")]
        yield BagScene(f"generated_{i:04d}", amp, boxes,
                       labels if len(labels) == len(boxes) else [])


def run_make(args: argparse.Namespace) -> int:
    import itertools

    from tqdm import tqdm

    from sar_atd_ros.bag import write_bag

    if args.out.exists():
        raise FileExistsError(f"bag {args.out} already exists (choose another path)")
    if args.generate is not None:
        if args.generate < 1 or args.size < 64:
            raise ValueError("--generate needs N >= 1 and --size >= 64")
        scenes: Any = generated_scenes(args.generate, args.size, tuple(args.targets), args.seed)
        total = args.generate
    else:
        scenes = dataset_scenes(args.dataset, args.n, args.seed)
        total = None
    if args.max_scenes:
        scenes = itertools.islice(scenes, args.max_scenes)
        total = min(total or args.max_scenes, args.max_scenes)
    info = write_bag(tqdm(scenes, total=total, desc="bag make", unit="scene"), args.out,
                     storage=args.storage, rate_hz=args.rate_hz)
    print(f"wrote {info['scenes']} scenes ({info['boxes']} boxes, "
          f"{', '.join(f'{k} x{v}' for k, v in info['encodings'].items())}) to {info['bag']} "
          f"({info['storage']}, {info['bytes'] / 1e6:.1f} MB)")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from sar_atd_ros.bag import bag_info, format_bag_info

    print(format_bag_info(bag_info(args.bag)))
    return 0
