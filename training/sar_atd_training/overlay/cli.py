"""``sar-atd dataset``: inspect the on-the-fly training data (``preview`` writes a PNG grid)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

LOG = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dataset", help="training-data tools (overlay pipeline)")
    dsub = p.add_subparsers(dest="dataset_command", metavar="ACTION")
    pv = dsub.add_parser("preview", help="write a PNG grid of generated images with boxes")
    pv.add_argument("--bank", type=Path, help="signature bank folder (default: simulate a "
                    "few signatures on the fly, or toy signatures without the simulator)")
    pv.add_argument("--backgrounds", type=Path, help="folder of backgrounds (MSTAR clutter "
                    "files, .npy, images); default: generated clutter")
    pv.add_argument("--config", type=Path, help="YAML OverlayConfig (optional section "
                    "'overlay')")
    pv.add_argument("--out", type=Path, required=True, help="output PNG")
    pv.add_argument("--n", type=int, default=8, help="images (default 8, at most 256)")
    pv.add_argument("--seed", type=int, default=0)
    pv.add_argument("--device", default="cpu")
    pv.add_argument("--ood", action="store_true", help="also overlay 0-1 OOD objects "
                    "(boxes in red)")
    pv.set_defaults(func=preview)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _bank(path: Path | None):  # noqa: ANN202 - returns a BankLike
    from sar_atd_training.overlay import toybank

    if path is not None:
        from sar_atd_training.simulator.bank import SignatureBank

        return SignatureBank.open(path)
    try:
        return toybank.simulated_bank()
    except ImportError:
        LOG.warning("simulator not available: previewing toy point-scatterer signatures")
        return toybank.make_toy_bank(classes=("T72", "BMP2", "ZIL131", "2S1"), ood=True)


def preview(args: argparse.Namespace) -> int:
    import dataclasses

    import cv2
    import numpy as np
    import torch

    from sar_atd.atomic import atomic_write_bytes
    from sar_atd.config import from_dict, load_yaml
    from sar_atd.errors import ConfigError
    from sar_atd_training.cliutil import check_device, check_number, check_output_file
    from sar_atd_training.clutter import BackgroundSet, ClutterConfig
    from sar_atd_training.overlay.pipeline import OverlayConfig, OverlayPipeline

    check_output_file(args.out, (".png",), "--out")
    check_number(args.n, "--n", 1, 256)
    check_device(args.device)
    cfg = OverlayConfig()
    if args.config:
        data = load_yaml(args.config)
        if not data:
            raise ConfigError(f"config {args.config} is empty (remove --config for the "
                              "defaults)")
        cfg = from_dict(OverlayConfig, data.get("overlay", data), where=str(args.config))
    bank = _bank(args.bank)
    if args.ood and len(bank.select(kind="tree")) + len(bank.select(kind="house")):
        cfg = dataclasses.replace(cfg, ood_per_image=(0, 1))
    bgs = (BackgroundSet.from_folder(args.backgrounds) if args.backgrounds
           else BackgroundSet.generated(2, ClutterConfig(), seed=args.seed))
    pipe = OverlayPipeline(cfg, bank, bgs, args.device)
    samples = pipe.generate(args.n, torch.Generator().manual_seed(args.seed))
    tiles = []
    for s in samples:
        im = cv2.cvtColor(s.image.cpu().numpy(), cv2.COLOR_GRAY2BGR)
        for boxes, colour in ((s.boxes, (0, 255, 0)), (s.ood_boxes, (0, 0, 255))):
            for b in boxes.cpu().numpy().astype(int):
                cv2.rectangle(im, (b[0], b[1]), (b[2] - 1, b[3] - 1), colour, 2)
        tiles.append(im)
    cols = int(np.ceil(np.sqrt(len(tiles))))
    rows = int(np.ceil(len(tiles) / cols))
    h, w = tiles[0].shape[:2]
    grid = np.zeros((rows * h, cols * w, 3), np.uint8)
    for i, t in enumerate(tiles):
        grid[(i // cols) * h:(i // cols + 1) * h, (i % cols) * w:(i % cols + 1) * w] = t
    ok, buf = cv2.imencode(".png", grid)
    if not ok:
        raise OSError(f"cannot encode {args.out}")
    atomic_write_bytes(args.out, buf.tobytes())
    n_boxes = sum(len(s.boxes) for s in samples)
    print(f"wrote {args.out}: {len(samples)} images, {n_boxes} target boxes")
    return 0
