"""``sar-atd mstar``: inspect and render original MSTAR files.

    sar-atd mstar info FILE            header summary and image statistics
    sar-atd mstar render FILE -o out.png [--ref 1.0]   quarter-power LUT PNG
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``mstar`` subcommand (with ``info`` and ``render``) to the CLI."""
    p = subparsers.add_parser("mstar", help="inspect/render original MSTAR files",
                              description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="mstar_command", metavar="ACTION", required=True)

    info = sub.add_parser("info", help="print the header summary and image statistics")
    info.add_argument("file", type=Path, help="MSTAR file (e.g. HB14931.015)")
    info.add_argument("--all-fields", action="store_true",
                      help="also print every raw header key/value")
    info.set_defaults(func=cmd_info)

    render = sub.add_parser("render", help="render the magnitude with the quarter-power LUT")
    render.add_argument("file", type=Path, help="MSTAR file")
    render.add_argument("-o", "--output", type=Path, required=True,
                        help="output image (.png, .jpg, .bmp, .tif)")
    render.add_argument("--ref", type=float, default=None,
                        help="LUT reference > 0 (amplitude ref^2 maps to 255; default: the "
                             "library default, 1.0)")
    render.set_defaults(func=cmd_render)


def _fmt(value: object, unit: str = "", scale: float = 1.0, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value / scale:.{digits}g}{(' ' + unit) if unit else ''}"
    return f"{value}{(' ' + unit) if unit else ''}"


def cmd_info(args: argparse.Namespace) -> int:
    """Print the header summary and magnitude/phase statistics of one file."""
    import numpy as np

    from sar_atd.sar.mstar import read_mstar

    m = read_mstar(args.file)
    h = m.header
    mag = np.abs(m.image)
    rows = [
        ("file", str(args.file)),
        ("filename", _fmt(h.filename)),
        ("target", f"{_fmt(h.target_type)} (serial {_fmt(h.serial)})"),
        ("size (rows x cols)", f"{h.rows} x {h.cols}"
                               f" ({'magnitude + phase' if m.has_phase else 'magnitude only'})"),
        ("azimuth", _fmt(h.azimuth_deg, "deg", digits=7)),
        ("depression", f"{_fmt(h.depression_deg, 'deg', digits=7)} (desired "
                       f"{_fmt(h.desired_depression_deg, 'deg')})"),
        ("resolution (rg x xr)", f"{_fmt(h.range_res_m)} x {_fmt(h.xrange_res_m)} m"),
        ("3 dB width (rg x xr)", f"{_fmt(h.range_3db_width_m)} x {_fmt(h.xrange_3db_width_m)} m"),
        ("pixel spacing (rg x xr)", f"{_fmt(h.range_spacing_m, digits=6)} x "
                                    f"{_fmt(h.xrange_spacing_m, digits=6)} m"),
        ("centre frequency", _fmt(h.centre_freq_hz, "GHz", 1e9)),
        ("bandwidth", _fmt(h.bandwidth_hz, "GHz", 1e9)),
        ("polarisation", _fmt(h.polarisation)),
        ("radar position", _fmt(h.radar_position)),
        ("weighting (rg / xr)", f"{_fmt(h.range_weighting)} / {_fmt(h.xrange_weighting)}"),
        ("calibration", f"sensor {_fmt(h.sensor_calibration_factor)}, "
                        f"average image {_fmt(h.average_image_cal_factor)}"),
        ("collected", f"{_fmt(h.collection_date)} {_fmt(h.collection_time)} by "
                      f"{_fmt(h.sensor_name)} at {_fmt(h.site)}"),
        ("header bytes", f"Phoenix {h.phoenix_header_length}, native "
                         f"{h.native_header_length}"),
        ("magnitude", f"min {mag.min():.4g}  mean {mag.mean():.4g}  median "
                      f"{np.median(mag):.4g}  max {mag.max():.4g}"),
        ("peak (row, col)", str(tuple(int(i) for i in np.unravel_index(mag.argmax(),
                                                                       mag.shape)))),
        ("mean power", f"{10 * np.log10(max(float((mag ** 2).mean()), 1e-30)):.2f} dB"),
    ]
    if m.has_phase:
        ph = m.phase if m.phase is not None else np.angle(m.image)
        rows.append(("phase", f"min {ph.min():.4g}  max {ph.max():.4g} rad"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if args.all_fields:
        print()
        for key, value in h.fields.items():
            print(f"{key}= {value}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """Write the quarter-power LUT rendering of the file's magnitude as an 8-bit PNG."""
    import logging

    import cv2

    from sar_atd.atomic import atomic_write_bytes
    from sar_atd.sar.lut import DEFAULT_LUT_REF, quarter_power_lut
    from sar_atd.sar.mstar import read_mstar
    from sar_atd_training.cliutil import IMAGE_SUFFIXES, check_number, check_output_file

    check_output_file(args.output, IMAGE_SUFFIXES, "--output")
    ref = DEFAULT_LUT_REF if args.ref is None else args.ref
    check_number(ref, "--ref", 0.0, lo_open=True)
    m = read_mstar(args.file)
    img = quarter_power_lut(m.image, ref=ref)
    ok, buf = cv2.imencode(args.output.suffix.lower(), img)
    if not ok:
        raise OSError(f"cannot encode {args.output}")
    atomic_write_bytes(args.output, buf.tobytes())
    logging.getLogger("sar-atd.mstar").info("wrote %s (%dx%d, ref %.4g)", args.output,
                                            img.shape[0], img.shape[1], ref)
    print(args.output)
    return 0
