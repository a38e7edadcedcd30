"""MSTAR file I/O: the real file HB14931.015, byte-exact round trip, every error branch.

Corrupt files are built in ``tmp_path`` from a synthetic MSTAR file written by the project's
writer (``conftest.synthetic_mstar_bytes``: same 1977-byte header and 54 x 54 blocks as the
real file), so every error branch runs without ``../shared/data``.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pytest

from sar_atd.errors import MstarFormatError
from sar_atd.sar.mstar import (
    MstarFile,
    mstar_to_sensor_config,
    read_mstar,
    read_mstar_magnitude,
    write_mstar,
)
from sar_atd.sar.sensor import SensorConfig
from tests.conftest import synthetic_mstar_bytes

HEADER_LEN = 1977
BLOCK = 54 * 54 * 4


def _synthetic_file(rows: int, cols: int, mag: np.ndarray, phase: np.ndarray | None = None,
                    native: bytes = b"", extra: str = "") -> bytes:
    """A Phoenix file with a self-consistent PhoenixHeaderLength (5 zero-padded digits)."""
    body = ("\n[PhoenixHeaderVer01.04]\nPhoenixHeaderLength= {hlen:05d}\n"
            f"native_header_length= {len(native)}\nNumberOfColumns= {cols}\n"
            f"NumberOfRows= {rows}\nTargetType= clutter\n{extra}[EndofPhoenixHeader]\n")
    hlen = len(body.format(hlen=0))
    head = body.format(hlen=hlen).encode("latin-1")
    blocks = mag.astype(">f4").tobytes()
    if phase is not None:
        blocks += phase.astype(">f4").tobytes()
    return head + native + blocks


@pytest.fixture()
def raw_bytes() -> bytes:
    return synthetic_mstar_bytes()


@pytest.fixture()
def real_bytes(mstar_raw_file: Path) -> bytes:
    return mstar_raw_file.read_bytes()


def _write(tmp_path: Path, data: bytes, name: str = "bad.015") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


# --------------------------------------------------------------------------- real file
def test_real_file_header_and_image(mstar_raw_file: Path) -> None:
    """The typed header matches the file's text; the image is 54x54 complex64."""
    m = read_mstar(mstar_raw_file)
    h = m.header
    assert (h.rows, h.cols) == (54, 54)
    assert m.image.shape == (54, 54) and m.image.dtype == np.complex64
    assert m.has_phase
    assert h.target_type is not None and h.target_type.lower().startswith("slic")
    assert h.serial == "1"
    assert h.depression_deg == pytest.approx(15.042969)
    assert h.desired_depression_deg == 15.0
    assert h.azimuth_deg == pytest.approx(162.952271)
    assert h.centre_freq_hz == pytest.approx(9.599e9)
    assert h.bandwidth_hz == pytest.approx(0.591e9)
    assert h.range_spacing_m == pytest.approx(0.202148)
    assert h.xrange_spacing_m == pytest.approx(0.203125)
    assert h.range_res_m == pytest.approx(0.3047)
    assert h.range_3db_width_m == pytest.approx(0.3078)
    assert h.xrange_3db_width_m == pytest.approx(0.3153)
    assert h.polarisation == "HH" and h.radar_position == "bottom"
    assert h.range_weighting == h.xrange_weighting == "-35dB_Taylor"
    assert h.sensor_calibration_factor == pytest.approx(42.995998)
    assert h.collection_date == dt.date(1996, 11, 20)
    assert h.phoenix_header_length == HEADER_LEN and h.native_header_length == 0
    # raw fields: all of them, in file order
    keys = list(h.fields)
    assert keys[0] == "PhoenixHeaderLength" and keys[-1] == "TargetWaterContent"
    assert h.fields["Filename"] == "hb14931.0015"
    assert m.raw_header_text.rstrip().endswith("[EndofPhoenixHeader]")
    assert len(m.raw_header_text.encode("latin-1")) == HEADER_LEN
    mag = np.abs(m.image)
    assert float(mag.max()) == pytest.approx(1.912, abs=1e-3)
    assert np.all(np.isfinite(m.image))


def test_magnitude_block_matches_file_bytes(mstar_raw_file: Path, real_bytes: bytes) -> None:
    """read_mstar_magnitude returns the stored big-endian floats exactly."""
    mag = read_mstar_magnitude(mstar_raw_file)
    assert mag.dtype == np.float32 and mag.shape == (54, 54)
    expect = np.frombuffer(real_bytes, ">f4", count=54 * 54, offset=HEADER_LEN).reshape(54, 54)
    np.testing.assert_array_equal(mag, expect)
    phase = np.frombuffer(real_bytes, ">f4", count=54 * 54, offset=HEADER_LEN + BLOCK)
    m = read_mstar(mstar_raw_file)
    np.testing.assert_allclose(np.angle(m.image).ravel() % (2 * np.pi),
                               phase % (2 * np.pi), atol=1e-5)


def test_byte_exact_round_trip(mstar_raw_file: Path, real_bytes: bytes, tmp_path: Path) -> None:
    m = read_mstar(mstar_raw_file)
    out = tmp_path / "copy.015"
    write_mstar(out, m)
    assert out.read_bytes() == real_bytes


def test_modified_image_round_trips(mstar_raw_file: Path, tmp_path: Path) -> None:
    """A changed image is re-derived into magnitude/phase and reads back the same."""
    m = read_mstar(mstar_raw_file)
    m.image = m.image.copy()
    m.image[10, 20] = np.complex64(-0.5 + 0.25j)
    write_mstar(tmp_path / "mod.015", m)
    back = read_mstar(tmp_path / "mod.015")
    np.testing.assert_allclose(back.image, m.image, atol=1e-6)
    assert back.raw_header_text == m.raw_header_text
    assert np.all((back.phase >= 0) & (back.phase < 2 * np.pi))


def test_writer_rejects_wrong_shape(mstar_raw_file: Path, tmp_path: Path) -> None:
    m = read_mstar(mstar_raw_file)
    m.image = m.image[:50]
    with pytest.raises(ValueError, match=r"shape \(50, 54\) does not match"):
        write_mstar(tmp_path / "x.015", m)


def test_sensor_config_from_header(mstar_raw_file: Path) -> None:
    cfg = mstar_to_sensor_config(read_mstar(mstar_raw_file).header)
    assert cfg == SensorConfig(centre_freq_hz=9.599e9, range_res_m=0.3047, xrange_res_m=0.3047,
                               range_spacing_m=0.202148, xrange_spacing_m=0.203125,
                               taylor_sll_db=35.0, taylor_nbar=4)


# --------------------------------------------------------------------------- synthetic files
def test_magnitude_only_file(tmp_path: Path) -> None:
    """A clutter-style file with one block reads as a real image and round-trips."""
    rng = np.random.default_rng(0)
    mag = rng.rayleigh(0.1, size=(7, 9)).astype(np.float32)
    data = _synthetic_file(7, 9, mag)
    p = _write(tmp_path, data, "clutter.000")
    m = read_mstar(p)
    assert not m.has_phase and m.phase is None
    assert m.image.shape == (7, 9) and m.image.dtype == np.complex64
    np.testing.assert_array_equal(m.image.real, mag)
    assert np.all(m.image.imag == 0)
    assert m.header.target_type == "clutter" and m.header.azimuth_deg is None
    write_mstar(tmp_path / "copy.000", m)
    assert (tmp_path / "copy.000").read_bytes() == data


def test_native_header_is_skipped_and_kept(tmp_path: Path) -> None:
    mag = np.arange(12, dtype=np.float32).reshape(3, 4)
    phase = np.full((3, 4), 0.5, np.float32)
    native = bytes(range(40))
    data = _synthetic_file(3, 4, mag, phase, native=native)
    m = read_mstar(_write(tmp_path, data))
    assert m.header.native_header_length == 40 and m.native_header == native
    np.testing.assert_array_equal(m.magnitude, mag)
    np.testing.assert_allclose(np.abs(m.image), mag, rtol=1e-6)
    write_mstar(tmp_path / "copy.015", m)
    assert (tmp_path / "copy.015").read_bytes() == data


def test_mstar_file_from_scratch(tmp_path: Path) -> None:
    """An MstarFile built without stored blocks is written from its image."""
    template = read_mstar(_write(tmp_path, _synthetic_file(2, 3, np.ones((2, 3), np.float32),
                                                           np.zeros((2, 3), np.float32))))
    img = (np.arange(6).reshape(2, 3) * np.exp(1j * 0.3)).astype(np.complex64)
    fresh = MstarFile(header=template.header, image=img,
                      raw_header_text=template.raw_header_text)
    write_mstar(tmp_path / "fresh.015", fresh)
    np.testing.assert_allclose(read_mstar(tmp_path / "fresh.015").image, img, atol=1e-6)


# --------------------------------------------------------------------------- error branches
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MstarFormatError, match=r"not found: .*nope\.015"):
        read_mstar(tmp_path / "nope.015")


def test_no_phoenix_header(tmp_path: Path, raw_bytes: bytes) -> None:
    p = _write(tmp_path, b"\x00\x01garbage" + raw_bytes[200:])
    with pytest.raises(MstarFormatError, match=r"bad\.015: no Phoenix header"):
        read_mstar(p)


def test_no_end_marker(tmp_path: Path, raw_bytes: bytes) -> None:
    data = raw_bytes.replace(b"[EndofPhoenixHeader]", b"[EndofXXXXXXXHeader]")
    with pytest.raises(MstarFormatError, match=r"bad\.015: no '\[EndofPhoenixHeader\]'"):
        read_mstar(_write(tmp_path, data))


def test_header_cut_before_end_marker(tmp_path: Path, raw_bytes: bytes) -> None:
    with pytest.raises(MstarFormatError, match="EndofPhoenixHeader"):
        read_mstar(_write(tmp_path, raw_bytes[:1000]))


@pytest.mark.parametrize("value, pattern", [
    (b"01900", r"PhoenixHeaderLength= 1900 is inconsistent: the header ends at byte 1977"),
    (b"01990", r"PhoenixHeaderLength= 1990 is inconsistent: 13 non-blank bytes"),
    (b"99999", r"truncated: PhoenixHeaderLength= 99999"),
    (b"0x7B9", r"PhoenixHeaderLength= '0x7B9' is not an integer"),
])
def test_header_length_inconsistent(tmp_path: Path, raw_bytes: bytes, value: bytes,
                                    pattern: str) -> None:
    data = raw_bytes.replace(b"PhoenixHeaderLength= 01977", b"PhoenixHeaderLength= " + value)
    with pytest.raises(MstarFormatError, match=pattern):
        read_mstar(_write(tmp_path, data))


def test_missing_rows_field(tmp_path: Path, raw_bytes: bytes) -> None:
    data = raw_bytes.replace(b"NumberOfRows= 54", b"NumberOfRowz= 54")
    with pytest.raises(MstarFormatError, match="no NumberOfRows field"):
        read_mstar(_write(tmp_path, data))


@pytest.mark.parametrize("field, value", [(b"NumberOfColumns", b"5x"),
                                          (b"NumberOfRows", b"??")])
def test_non_numeric_size(tmp_path: Path, raw_bytes: bytes, field: bytes, value: bytes) -> None:
    data = raw_bytes.replace(field + b"= 54", field + b"= " + value)
    with pytest.raises(MstarFormatError, match=f"{field.decode()}= '.*' is not an integer"):
        read_mstar(_write(tmp_path, data))


def test_zero_rows(tmp_path: Path, raw_bytes: bytes) -> None:
    data = raw_bytes.replace(b"NumberOfRows= 54", b"NumberOfRows= 00")
    with pytest.raises(MstarFormatError, match="NumberOfRows= 0 must be >= 1"):
        read_mstar(_write(tmp_path, data))


def test_truncated_in_magnitude_block(tmp_path: Path, raw_bytes: bytes) -> None:
    with pytest.raises(MstarFormatError, match=r"bad\.015: truncated: 100 data bytes"):
        read_mstar(_write(tmp_path, raw_bytes[:HEADER_LEN + 100]))


def test_truncated_in_phase_block(tmp_path: Path, raw_bytes: bytes) -> None:
    with pytest.raises(MstarFormatError, match="truncated or mislabelled: .* neither 1 block"):
        read_mstar(_write(tmp_path, raw_bytes[:-4]))


def test_extra_trailing_bytes(tmp_path: Path, raw_bytes: bytes) -> None:
    with pytest.raises(MstarFormatError, match="8 extra trailing bytes"):
        read_mstar(_write(tmp_path, raw_bytes + b"\x00" * 8))


def test_mislabelled_size(tmp_path: Path, raw_bytes: bytes) -> None:
    """Header says 55 columns but the data holds 54x54 magnitude + phase."""
    data = raw_bytes.replace(b"NumberOfColumns= 54", b"NumberOfColumns= 55")
    with pytest.raises(MstarFormatError, match=r"mislabelled.*54x55"):
        read_mstar(_write(tmp_path, data))


def test_native_header_past_end(tmp_path: Path) -> None:
    tiny = _synthetic_file(2, 2, np.ones((2, 2), np.float32))
    tiny = tiny.replace(b"native_header_length= 0", b"native_header_length=99")  # same length
    with pytest.raises(MstarFormatError, match="truncated: native_header_length= 99 runs past"):
        read_mstar(_write(tmp_path, tiny))


@pytest.mark.parametrize("block, bits, name", [
    (0, b"\x7f\xc0\x00\x00", "magnitude"),  # NaN
    (1, b"\x7f\x80\x00\x00", "phase"),  # +inf
])
def test_nan_inf_in_data(tmp_path: Path, raw_bytes: bytes, block: int, bits: bytes,
                         name: str) -> None:
    off = HEADER_LEN + block * BLOCK + 4 * (3 * 54 + 5)
    data = raw_bytes[:off] + bits + raw_bytes[off + 4:]
    with pytest.raises(MstarFormatError,
                       match=f"1 NaN/inf values in the {name} block .*row 3, col 5"):
        read_mstar(_write(tmp_path, data))


def test_negative_magnitude(tmp_path: Path, raw_bytes: bytes) -> None:
    off = HEADER_LEN + 4 * 7
    data = raw_bytes[:off] + np.array([-1.0], ">f4").tobytes() + raw_bytes[off + 4:]
    with pytest.raises(MstarFormatError, match="negative values in the magnitude block"):
        read_mstar(_write(tmp_path, data))


def test_unsupported_weighting(mstar_raw_file: Path) -> None:
    import dataclasses

    h = read_mstar(mstar_raw_file).header
    with pytest.raises(ValueError, match="unsupported range weighting 'Hamming'"):
        mstar_to_sensor_config(dataclasses.replace(h, range_weighting="Hamming"))
    with pytest.raises(ValueError, match="weightings differ"):
        mstar_to_sensor_config(dataclasses.replace(h, range_weighting="-30dB_Taylor"))
    assert math.isclose(mstar_to_sensor_config(
        dataclasses.replace(h, range_weighting=None, xrange_weighting=None)).taylor_sll_db, 35)


# --------------------------------------------------------------------------- CLI
def _run_cli(argv: list[str]) -> int:
    """Run ``sar-atd mstar ...`` through its own register() (independent of other commands)."""
    import argparse

    from sar_atd_training import mstar_cli

    parser = argparse.ArgumentParser(prog="sar-atd")
    mstar_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_info_and_render(mstar_raw_file: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    import cv2

    assert _run_cli(["mstar", "info", str(mstar_raw_file)]) == 0
    out = capsys.readouterr().out
    assert "54 x 54" in out and "slicey" in out and "max 1.912" in out
    png = tmp_path / "r.png"
    assert _run_cli(["mstar", "render", str(mstar_raw_file), "-o", str(png), "--ref", "2"]) == 0
    img = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    assert img.shape == (54, 54) and img.dtype == np.uint8
    mag = np.abs(read_mstar(mstar_raw_file).image)
    r, c = np.unravel_index(mag.argmax(), mag.shape)
    assert img[r, c] == round(255 * math.sqrt(float(mag.max())) / 2)
    with pytest.raises(MstarFormatError, match="not found"):
        _run_cli(["mstar", "info", str(tmp_path / "missing.015")])
