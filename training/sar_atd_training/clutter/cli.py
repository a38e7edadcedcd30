"""``sar-atd clutter``: generate one synthetic clutter scene (complex .npy + PNG preview)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

LOG = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("clutter", help="generate a synthetic MSTAR-like clutter scene")
    p.add_argument("--out", type=Path, required=True,
                   help="output complex64 (H, W) file; must end in .npy")
    p.add_argument("--preview", type=Path, help="also write a quarter-power preview (.png)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", type=Path, help="YAML ClutterConfig (optional section 'clutter')")
    p.add_argument("--height", type=int, help="rows (default 1784; 16-8192)")
    p.add_argument("--width", type=int, help="columns (default 1478; 16-8192)")
    p.add_argument("--lut-ref", type=float, default=0.6,
                   help="quarter-power LUT ref of the preview (default 0.6)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import dataclasses

    import cv2
    import numpy as np

    from sar_atd.atomic import atomic_write_bytes, atomic_write_with
    from sar_atd.config import from_dict, load_yaml
    from sar_atd.errors import ConfigError
    from sar_atd.sar.lut import quarter_power_lut
    from sar_atd_training.cliutil import check_number, check_output_file
    from sar_atd_training.clutter.generator import ClutterConfig, generate_scene
    from sar_atd_training.errors import UsageError

    # every check before any work: paths, values, sizes
    check_output_file(args.out, (".npy",), "--out")
    if args.preview is not None:
        check_output_file(args.preview, (".png",), "--preview")
    check_number(args.lut_ref, "--lut-ref", 0.0, lo_open=True)
    cfg = ClutterConfig()
    if args.config:
        data = load_yaml(args.config)
        if not data:
            raise ConfigError(f"config {args.config} is empty (remove --config for the "
                              "defaults)")
        cfg = from_dict(ClutterConfig, data.get("clutter", data), where=str(args.config))
    try:
        cfg = dataclasses.replace(
            cfg, height=cfg.height if args.height is None else args.height,
            width=cfg.width if args.width is None else args.width)
    except ValueError as err:
        raise UsageError(f"--height/--width: {err}") from None
    scene = generate_scene(cfg, args.seed)  # refuses a scene off its calibrated statistics
    atomic_write_with(args.out, lambda fh: np.save(fh, scene))
    print(f"wrote {args.out}: complex64 {scene.shape[0]} x {scene.shape[1]}, "
          f"median amplitude {np.median(np.abs(scene)):.4f}")
    if args.preview:
        ok, buf = cv2.imencode(".png", quarter_power_lut(scene, args.lut_ref))
        if not ok:
            raise OSError(f"cannot encode preview {args.preview}")
        atomic_write_bytes(args.preview, buf.tobytes())
        print(f"wrote {args.preview}")
    return 0
