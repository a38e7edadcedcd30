"""``sar-atd clutter``: generate one synthetic clutter scene (complex .npy + PNG preview)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

LOG = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("clutter", help="generate a synthetic MSTAR-like clutter scene")
    p.add_argument("--out", type=Path, required=True, help="output complex64 .npy (H, W)")
    p.add_argument("--preview", type=Path, help="also write a quarter-power PNG preview")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", type=Path, help="YAML ClutterConfig (optional section 'clutter')")
    p.add_argument("--height", type=int, help="rows (default 1784)")
    p.add_argument("--width", type=int, help="columns (default 1478)")
    p.add_argument("--lut-ref", type=float, default=0.6,
                   help="quarter-power LUT ref of the preview (default 0.6)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import dataclasses

    import cv2
    import numpy as np

    from sar_atd.config import from_dict, load_yaml
    from sar_atd.sar.lut import quarter_power_lut
    from sar_atd_training.clutter.generator import ClutterConfig, generate_scene

    cfg = ClutterConfig()
    if args.config:
        data = load_yaml(args.config)
        cfg = from_dict(ClutterConfig, data.get("clutter", data), where=str(args.config))
    if args.height or args.width:
        cfg = dataclasses.replace(cfg, height=args.height or cfg.height,
                                  width=args.width or cfg.width)
    scene = generate_scene(cfg, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, scene)
    print(f"wrote {args.out}: complex64 {scene.shape[0]} x {scene.shape[1]}, "
          f"median amplitude {np.median(np.abs(scene)):.4f}")
    if args.preview:
        if not cv2.imwrite(str(args.preview), quarter_power_lut(scene, args.lut_ref)):
            raise OSError(f"cannot write preview {args.preview}")
        print(f"wrote {args.preview}")
    return 0
