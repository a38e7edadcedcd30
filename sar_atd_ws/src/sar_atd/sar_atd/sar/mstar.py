"""Reader and byte-exact writer for original MSTAR files (Phoenix header + float32 blocks).

Layout of a file from the MSTAR CDs (target chips and clutter scenes alike)::

    [PhoenixHeaderVer01.04]            ASCII "key= value" lines (a leading newline is usual)
    PhoenixHeaderLength= 01977         bytes from the start of the file to the end of the
    native_header_length= 0              Phoenix header (incl. the newline after the marker)
    NumberOfColumns= 54                then ``native_header_length`` bytes of native header
    NumberOfRows= 54                     (skipped, kept for the round trip), then
    ...                                rows*cols big-endian float32 magnitudes (row-major),
    [EndofPhoenixHeader]               then rows*cols big-endian float32 phases (radians,
    <native header> <magnitude> [<phase>]  [0, 2 pi)); clutter files may carry magnitude only.

:func:`read_mstar` returns an :class:`MstarFile` with the header as typed fields
(:class:`MstarHeader`), every raw key/value, and the complex64 image;
:func:`write_mstar` writes it back byte-for-byte (the original header text, native header and
float32 bit patterns are kept; magnitude/phase are re-derived only if the image changed).
Truncated, corrupt or mislabelled files raise :class:`~sar_atd.errors.MstarFormatError`
naming the file and the problem.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sar_atd.errors import MstarFormatError
from sar_atd.sar.sensor import SensorConfig

log = logging.getLogger(__name__)

START_MARKER = b"[PhoenixHeaderVer"
END_MARKER = b"[EndofPhoenixHeader]"
_MAX_HEADER_SEARCH = 1 << 20  # the end marker must lie in the first MiB
_FLOAT = np.dtype(">f4")
_UNIT_SCALE = {"hz": 1.0, "khz": 1e3, "mhz": 1e6, "ghz": 1e9}


@dataclass(frozen=True)
class MstarHeader:
    """Typed view of a Phoenix header. Optional fields are ``None`` where the file lacks them
    (clutter files carry no target fields).

    Attributes:
        rows, cols: image size (NumberOfRows, NumberOfColumns), pixels.
        phoenix_header_length: bytes of Phoenix header (PhoenixHeaderLength).
        native_header_length: bytes of native header after it (0 for target chips).
        filename: Filename field (e.g. ``hb14931.0015``).
        target_type, serial: TargetType (e.g. ``slicey``, ``bmp2_tank``), TargetSerNum.
        azimuth_deg: TargetAz, degrees.
        depression_deg: MeasuredDepression (DesiredDepression if absent), degrees.
        desired_depression_deg: DesiredDepression, degrees.
        range_res_m, xrange_res_m: RangeResolution, CrossRangeResolution (m).
        range_3db_width_m, xrange_3db_width_m: Range3dBWidth, CrossRange3dBWidth (m).
        range_spacing_m, xrange_spacing_m: RangePixelSpacing, CrossRangePixelSpacing (m).
        centre_freq_hz, bandwidth_hz: CenterFrequency, Bandwidth (Hz).
        polarisation: Polarization (e.g. ``HH``).
        radar_position: RadarPosition (``bottom``: the sensor is below the image).
        range_weighting, xrange_weighting: e.g. ``-35dB_Taylor``.
        sensor_calibration_factor, average_image_cal_factor: calibration factors.
        collection_date: CollectionDate (YYYYMMDD) as a date; collection_time: raw HHMMSS.
        site, sensor_name, radar_mode, parent_scene: descriptive strings.
        fields: every raw ``key -> value`` (stripped strings), in file order.
    """

    rows: int
    cols: int
    phoenix_header_length: int
    native_header_length: int = 0
    filename: str | None = None
    target_type: str | None = None
    serial: str | None = None
    azimuth_deg: float | None = None
    depression_deg: float | None = None
    desired_depression_deg: float | None = None
    range_res_m: float | None = None
    xrange_res_m: float | None = None
    range_3db_width_m: float | None = None
    xrange_3db_width_m: float | None = None
    range_spacing_m: float | None = None
    xrange_spacing_m: float | None = None
    centre_freq_hz: float | None = None
    bandwidth_hz: float | None = None
    polarisation: str | None = None
    radar_position: str | None = None
    range_weighting: str | None = None
    xrange_weighting: str | None = None
    sensor_calibration_factor: float | None = None
    average_image_cal_factor: float | None = None
    collection_date: dt.date | None = None
    collection_time: str | None = None
    site: str | None = None
    sensor_name: str | None = None
    radar_mode: str | None = None
    parent_scene: str | None = None
    fields: dict[str, str] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class MstarFile:
    """An MSTAR file in memory.

    Attributes:
        header: typed header.
        image: complex64 (rows, cols) ``magnitude * exp(1j * phase)`` (phase 0 for a
            magnitude-only file).
        raw_header_text: the Phoenix header exactly as stored (latin-1 decoded), including any
            padding up to ``PhoenixHeaderLength``.
        native_header: the native header bytes (``native_header_length`` of them).
        has_phase: False for a magnitude-only (clutter) file: :func:`write_mstar` then writes
            the magnitude block only.
        magnitude, phase: the float32 (rows, cols) blocks as read (native byte order), kept so
            that an unchanged image is written back with identical bit patterns; ``None`` when
            built from scratch.
    """

    header: MstarHeader
    image: np.ndarray
    raw_header_text: str
    native_header: bytes = b""
    has_phase: bool = True
    magnitude: np.ndarray | None = field(default=None, repr=False, compare=False)
    phase: np.ndarray | None = field(default=None, repr=False, compare=False)


# --------------------------------------------------------------------------- parsing helpers
def _parse_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("[") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip()
        if key and key not in fields:
            fields[key] = value.strip()
    return fields


def _int_field(fields: dict[str, str], key: str, path: Path, *, required: bool,
               default: int | None = None, minimum: int = 0) -> int | None:
    if key not in fields:
        if required:
            raise MstarFormatError(f"{path}: Phoenix header has no {key} field")
        return default
    raw = fields[key]
    try:
        value = int(raw)
    except ValueError:
        raise MstarFormatError(f"{path}: {key}= {raw!r} is not an integer "
                               "(corrupt header)") from None
    if value < minimum:
        raise MstarFormatError(f"{path}: {key}= {value} must be >= {minimum}")
    return value


def _float_field(fields: dict[str, str], key: str, path: Path) -> float | None:
    raw = fields.get(key)
    if raw is None or raw == "":
        return None
    m = re.match(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)", raw)
    if m is None:
        log.warning("%s: ignoring non-numeric %s= %r", path, key, raw)
        return None
    return float(m.group(1))


def _freq_field(fields: dict[str, str], key: str, path: Path) -> float | None:
    """A frequency such as ``9.599000 GHz`` in Hz (no unit: Hz if >= 1e6, else GHz)."""
    value = _float_field(fields, key, path)
    if value is None:
        return None
    unit = re.search(r"([kKmMgG]?[hH][zZ])\s*$", fields[key])
    if unit:
        return value * _UNIT_SCALE[unit.group(1).lower()]
    return value if value >= 1e6 else value * 1e9


def _str_field(fields: dict[str, str], key: str) -> str | None:
    value = fields.get(key)
    return value if value else None


def _date_field(fields: dict[str, str], key: str, path: Path) -> dt.date | None:
    raw = fields.get(key)
    if not raw:
        return None
    try:
        return dt.datetime.strptime(raw, "%Y%m%d").date()
    except ValueError:
        log.warning("%s: ignoring unparseable %s= %r", path, key, raw)
        return None


def _header_from_fields(fields: dict[str, str], path: Path) -> MstarHeader:
    hlen = _int_field(fields, "PhoenixHeaderLength", path, required=True, minimum=1)
    nlen = _int_field(fields, "native_header_length", path, required=False, default=0)
    cols = _int_field(fields, "NumberOfColumns", path, required=True, minimum=1)
    rows = _int_field(fields, "NumberOfRows", path, required=True, minimum=1)
    assert hlen is not None and nlen is not None and rows is not None and cols is not None
    measured = _float_field(fields, "MeasuredDepression", path)
    desired = _float_field(fields, "DesiredDepression", path)
    return MstarHeader(
        rows=rows,
        cols=cols,
        phoenix_header_length=hlen,
        native_header_length=nlen,
        filename=_str_field(fields, "Filename"),
        target_type=_str_field(fields, "TargetType"),
        serial=_str_field(fields, "TargetSerNum"),
        azimuth_deg=_float_field(fields, "TargetAz", path),
        depression_deg=measured if measured is not None else desired,
        desired_depression_deg=desired,
        range_res_m=_float_field(fields, "RangeResolution", path),
        xrange_res_m=_float_field(fields, "CrossRangeResolution", path),
        range_3db_width_m=_float_field(fields, "Range3dBWidth", path),
        xrange_3db_width_m=_float_field(fields, "CrossRange3dBWidth", path),
        range_spacing_m=_float_field(fields, "RangePixelSpacing", path),
        xrange_spacing_m=_float_field(fields, "CrossRangePixelSpacing", path),
        centre_freq_hz=_freq_field(fields, "CenterFrequency", path),
        bandwidth_hz=_freq_field(fields, "Bandwidth", path),
        polarisation=_str_field(fields, "Polarization"),
        radar_position=_str_field(fields, "RadarPosition"),
        range_weighting=_str_field(fields, "RangeWeighting"),
        xrange_weighting=_str_field(fields, "CrossRangeWeighting"),
        sensor_calibration_factor=_float_field(fields, "SensorCalibrationFactor", path),
        average_image_cal_factor=_float_field(fields, "AverageImageCalFactor", path),
        collection_date=_date_field(fields, "CollectionDate", path),
        collection_time=_str_field(fields, "CollectionTime"),
        site=_str_field(fields, "Site"),
        sensor_name=_str_field(fields, "SensorName"),
        radar_mode=_str_field(fields, "RadarMode"),
        parent_scene=_str_field(fields, "ParentScene"),
        fields=fields,
    )


def _phoenix_header_end(data: bytes, path: Path) -> int:
    """Byte offset just past ``[EndofPhoenixHeader]`` and its line ending."""
    start = re.match(rb"\s*" + re.escape(START_MARKER) + rb"[^\]\r\n]*\]", data[:256])
    if start is None:
        raise MstarFormatError(
            f"{path}: no Phoenix header (file does not start with '[PhoenixHeaderVer..]'): "
            "not an MSTAR file or corrupt")
    end = data.find(END_MARKER, 0, _MAX_HEADER_SEARCH)
    if end < 0:
        raise MstarFormatError(
            f"{path}: no '[EndofPhoenixHeader]' marker in the first {_MAX_HEADER_SEARCH} "
            "bytes: header truncated or corrupt")
    end += len(END_MARKER)
    if data[end:end + 2] == b"\r\n":
        end += 2
    elif data[end:end + 1] == b"\n":
        end += 1
    return end


def _image_from_blocks(mag: np.ndarray, phase: np.ndarray | None) -> np.ndarray:
    """complex64 ``mag * exp(1j * phase)`` computed in float32 (deterministic)."""
    if phase is None:
        return mag.astype(np.complex64)
    out = np.empty(mag.shape, dtype=np.complex64)
    out.real = mag * np.cos(phase)
    out.imag = mag * np.sin(phase)
    return out


# --------------------------------------------------------------------------- public API
def read_mstar(path: str | Path) -> MstarFile:
    """Read an original MSTAR file (target chip or clutter scene).

    Args:
        path: the file (e.g. ``HB14931.015``).

    Returns:
        :class:`MstarFile` with the typed header and the complex64 (rows, cols) image.

    Raises:
        MstarFormatError: missing file; no Phoenix header or end marker; a
            PhoenixHeaderLength inconsistent with the end marker or the file size; missing or
            non-numeric NumberOfRows/NumberOfColumns; a data size that is neither one block
            (magnitude only) nor two blocks (magnitude + phase) of rows*cols float32
            (truncated, extra trailing bytes, or mislabelled); NaN/inf or negative
            magnitudes in the data.
    """
    path = Path(path)
    if not path.is_file():
        raise MstarFormatError(f"MSTAR file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise MstarFormatError(f"cannot read MSTAR file {path}: {err}") from None

    marker_end = _phoenix_header_end(data, path)
    fields = _parse_fields(data[:marker_end].decode("latin-1"))
    header = _header_from_fields(fields, path)
    hlen = header.phoenix_header_length
    if hlen < marker_end:
        raise MstarFormatError(
            f"{path}: PhoenixHeaderLength= {hlen} is inconsistent: the header ends at byte "
            f"{marker_end} ('[EndofPhoenixHeader]')")
    if hlen > len(data):
        raise MstarFormatError(
            f"{path}: truncated: PhoenixHeaderLength= {hlen} but the file has only "
            f"{len(data)} bytes")
    padding = data[marker_end:hlen]
    if padding.strip(b" \t\r\n\x00"):
        raise MstarFormatError(
            f"{path}: PhoenixHeaderLength= {hlen} is inconsistent: {len(padding)} non-blank "
            f"bytes lie between '[EndofPhoenixHeader]' (byte {marker_end}) and it")
    raw_header_text = data[:hlen].decode("latin-1")

    nlen = header.native_header_length
    data_start = hlen + nlen
    if data_start > len(data):
        raise MstarFormatError(
            f"{path}: truncated: native_header_length= {nlen} runs past the end of the file "
            f"({len(data)} bytes)")
    native = data[hlen:data_start]

    rows, cols = header.rows, header.cols
    block = rows * cols * _FLOAT.itemsize
    size = len(data) - data_start
    if size == block:
        has_phase = False
    elif size == 2 * block:
        has_phase = True
    elif size < block:
        raise MstarFormatError(
            f"{path}: truncated: {size} data bytes for a {rows}x{cols} image, expected "
            f"{block} (magnitude only) or {2 * block} (magnitude + phase)")
    elif size > 2 * block:
        raise MstarFormatError(
            f"{path}: {size - 2 * block} extra trailing bytes after the magnitude and phase "
            f"blocks of a {rows}x{cols} image ({2 * block} bytes): mislabelled size or "
            "corrupt file")
    else:
        raise MstarFormatError(
            f"{path}: truncated or mislabelled: {size} data bytes is neither 1 block "
            f"({block}, magnitude only) nor 2 blocks ({2 * block}, magnitude + phase) of "
            f"{rows}x{cols} float32")
    psize = _int_field(fields, "PhoenixSigSize", path, required=False)
    if psize is not None and psize != len(data):
        log.warning("%s: PhoenixSigSize= %d but the file has %d bytes", path, psize, len(data))

    mag = np.frombuffer(data, dtype=_FLOAT, count=rows * cols, offset=data_start)
    mag = mag.astype(np.float32).reshape(rows, cols)
    phase = None
    if has_phase:
        phase = np.frombuffer(data, dtype=_FLOAT, count=rows * cols, offset=data_start + block)
        phase = phase.astype(np.float32).reshape(rows, cols)
    for name, arr in (("magnitude", mag), ("phase", phase)):
        if arr is not None and not np.all(np.isfinite(arr)):
            bad = np.argwhere(~np.isfinite(arr))[0]
            raise MstarFormatError(
                f"{path}: corrupt data: {int((~np.isfinite(arr)).sum())} NaN/inf values in the "
                f"{name} block (first at row {bad[0]}, col {bad[1]})")
    if np.any(mag < 0):
        raise MstarFormatError(f"{path}: corrupt data: negative values in the magnitude block")

    return MstarFile(header=header, image=_image_from_blocks(mag, phase),
                     raw_header_text=raw_header_text, native_header=native,
                     has_phase=has_phase, magnitude=mag, phase=phase)


def write_mstar(path: str | Path, mstar_file: MstarFile) -> None:
    """Write an :class:`MstarFile`; reading a file and writing it back is byte-exact.

    The stored header text and native header are written as they are; the magnitude/phase
    blocks read from the file are reused while ``image`` is unchanged, otherwise re-derived
    (magnitude ``|image|``, phase ``angle(image)`` wrapped to [0, 2 pi); magnitude only when
    ``has_phase`` is False).

    Raises:
        ValueError: the image is not 2-D, or its shape disagrees with the header text's
            NumberOfRows/NumberOfColumns, or it holds NaN/inf.
        MstarFormatError: the header text is not a valid Phoenix header.
    """
    path = Path(path)
    m = mstar_file
    head = m.raw_header_text.encode("latin-1")
    fields = _parse_fields(head.decode("latin-1"))
    rows = _int_field(fields, "NumberOfRows", path, required=True, minimum=1)
    cols = _int_field(fields, "NumberOfColumns", path, required=True, minimum=1)
    hlen = _int_field(fields, "PhoenixHeaderLength", path, required=True, minimum=1)
    if hlen != len(head):
        raise MstarFormatError(f"{path}: header text is {len(head)} bytes but says "
                               f"PhoenixHeaderLength= {hlen}")
    image = np.asarray(m.image)
    if image.shape != (rows, cols):
        raise ValueError(f"{path}: image shape {image.shape} does not match the header "
                         f"({rows}x{cols} rows x cols)")
    if not np.all(np.isfinite(image)):
        raise ValueError(f"{path}: image contains NaN or infinite values")

    mag, phase = m.magnitude, (m.phase if m.has_phase else None)
    stored_ok = (mag is not None and (phase is not None or not m.has_phase)
                 and mag.shape == image.shape
                 and np.array_equal(_image_from_blocks(mag, phase), image))
    if not stored_ok:
        mag = np.abs(image).astype(np.float32)
        phase = None
        if m.has_phase:
            phase = np.mod(np.angle(image), 2.0 * math.pi).astype(np.float32)
            phase[phase >= np.float32(2.0 * math.pi)] = 0.0
    assert mag is not None
    blocks = [mag.astype(_FLOAT).tobytes()]
    if phase is not None:
        blocks.append(phase.astype(_FLOAT).tobytes())
    path.write_bytes(b"".join([head, m.native_header, *blocks]))


def read_mstar_magnitude(path: str | Path) -> np.ndarray:
    """The magnitude block of an MSTAR file as float32 (rows, cols), exactly as stored."""
    m = read_mstar(path)
    assert m.magnitude is not None
    return m.magnitude


def _taylor_sll_db(weighting: str | None, what: str) -> float | None:
    if weighting is None:
        return None
    match = re.match(r"^\s*-?(\d+(?:\.\d+)?)\s*dB[_ ]?Taylor", weighting, flags=re.IGNORECASE)
    if match is None:
        raise ValueError(f"unsupported {what} weighting {weighting!r}: only Taylor windows "
                         "(e.g. '-35dB_Taylor') are modelled")
    return float(match.group(1))


def mstar_to_sensor_config(header: MstarHeader) -> SensorConfig:
    """The :class:`SensorConfig` matching an MSTAR header (missing fields keep defaults).

    Raises:
        ValueError: non-Taylor weighting, or different range/cross-range sidelobe levels.
    """
    default = SensorConfig()
    sll_r = _taylor_sll_db(header.range_weighting, "range")
    sll_x = _taylor_sll_db(header.xrange_weighting, "cross-range")
    if sll_r is not None and sll_x is not None and sll_r != sll_x:
        raise ValueError(f"range ({sll_r} dB) and cross-range ({sll_x} dB) Taylor weightings "
                         "differ; SensorConfig models one sidelobe level")
    sll = sll_r if sll_r is not None else sll_x

    def pick(value: float | None, fallback: float) -> float:
        return fallback if value is None else value

    return SensorConfig(
        centre_freq_hz=pick(header.centre_freq_hz, default.centre_freq_hz),
        range_res_m=pick(header.range_res_m, default.range_res_m),
        xrange_res_m=pick(header.xrange_res_m, default.xrange_res_m),
        range_spacing_m=pick(header.range_spacing_m, default.range_spacing_m),
        xrange_spacing_m=pick(header.xrange_spacing_m, default.xrange_spacing_m),
        taylor_sll_db=pick(sll, default.taylor_sll_db),
        taylor_nbar=default.taylor_nbar,
    )
