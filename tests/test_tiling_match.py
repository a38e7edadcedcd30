"""Opt-in histogram matching of uint8 scenes in the tiler (``TilerConfig.uint8_match``) and
the grey-level LUT and reference files behind it (``sar_atd.sar.lut``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sar_atd.config import TilerConfig
from sar_atd.errors import ConfigError
from sar_atd.sar.lut import (
    histogram_match_lut,
    read_match_reference,
    write_match_reference,
)
from sar_atd.tiling import Tiler
from sar_atd_training.quality.renderings import (
    match_histogram,
    reference_quantiles,
    render_power,
)

torch.set_num_threads(1)


def _ramp() -> np.ndarray:
    """uint8 (32, 32): every grey level 0..255 four times, shuffled deterministically."""
    v = np.repeat(np.arange(256, dtype=np.uint8), 4)
    return np.random.default_rng(0).permutation(v).reshape(32, 32)


def test_lut_on_a_fixed_two_level_histogram() -> None:
    hist = np.zeros(256)
    hist[10], hist[200] = 50, 50  # mid-ranks 0.25 and 0.75
    q = [0.0, 85.0, 170.0, 255.0]  # at probabilities 0.125, 0.375, 0.625, 0.875
    lut = histogram_match_lut(hist, q)
    assert lut.dtype == np.uint8 and lut.shape == (256,)
    assert (lut[10], lut[200]) == (42, 212)  # round(42.5), round(212.5): half to even
    assert (lut[0], lut[255]) == (0, 255)  # extremes kept
    assert histogram_match_lut(hist, q, keep_extremes=False)[255] == 255
    assert histogram_match_lut(hist, q, keep_extremes=False)[0] == 0  # interp clamps
    for bad in ([5.0], [3.0, 1.0], [0.0, np.nan], [0.0, 300.0]):
        with pytest.raises(ValueError, match="quantiles"):
            histogram_match_lut(hist, bad)
    with pytest.raises(ValueError, match="hist"):
        histogram_match_lut(np.zeros(256), q)


def test_reference_file_round_trip_and_one_line_errors(tmp_path: Path) -> None:
    q = reference_quantiles([_ramp()], n_levels=16)
    path = write_match_reference(tmp_path / "ref.json", q, "ramp")
    np.testing.assert_allclose(read_match_reference(path), q, atol=1e-4)
    assert json.loads(path.read_text())["source"] == "ramp"
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "kind.json").write_text(json.dumps({"quantiles": [0, 1]}))
    (tmp_path / "desc.json").write_text(json.dumps({"kind": "sar_atd.match_reference",
                                                    "quantiles": [9, 1]}))
    for name, what in (("missing.json", "cannot read"), ("bad.json", "cannot read"),
                       ("kind.json", "not a match reference"), ("desc.json", "non-decreasing")):
        with pytest.raises(ValueError, match=what) as err:
            read_match_reference(tmp_path / name)
        assert name in str(err.value) and "\n" not in str(err.value)


def test_tiler_matches_uint8_scenes_only_when_asked(tmp_path: Path) -> None:
    ref_img = _ramp()
    q = reference_quantiles([ref_img])
    path = write_match_reference(tmp_path / "ref.json", q, "ramp")
    dark = render_power(ref_img, 2.0)  # gamma 2.0: clutter crushed towards black
    plain = Tiler(TilerConfig(device="cpu")).prepare(dark).image.numpy()
    np.testing.assert_array_equal(plain, dark)  # default: uint8 passes through
    tiler = Tiler(TilerConfig(device="cpu", uint8_match=str(path)))
    out = tiler.prepare(dark).image.numpy()
    assert out.dtype == np.uint8 and out.shape == dark.shape
    np.testing.assert_array_equal(out, match_histogram(dark, q))  # the benchmark's function
    # the monotonic rendering is undone up to what gamma 2.0 merged into one grey level
    assert np.abs(out.astype(int) - ref_img).max() <= 12  # grey levels 0-11 -> 0 (kept)
    assert np.abs(out.astype(int) - ref_img)[ref_img >= 64].max() <= 2
    # a torch uint8 scene in row blocks gives the same; float scenes keep the power law
    np.testing.assert_array_equal(tiler.prepare(torch.from_numpy(dark)).image.numpy(), out)
    amp = dark.astype(np.float32)
    np.testing.assert_array_equal(tiler.prepare(amp).image.numpy(),
                                  Tiler(TilerConfig(device="cpu")).prepare(amp).image.numpy())


def test_bad_uint8_match_settings_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tiler\.uint8_match: cannot read") as err:
        Tiler(TilerConfig(device="cpu", uint8_match=str(tmp_path / "nope.json")))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="uint8_match must be a file path"):
        TilerConfig(device="cpu", uint8_match=3)  # type: ignore[arg-type]
    cfg = TilerConfig.from_params({"tiler": {"uint8_match": str(tmp_path / "r.json")}})
    assert cfg.uint8_match.endswith("r.json")
