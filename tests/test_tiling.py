"""Tiler: grid coverage, odd sizes, input dtypes, NaN/inf rule, batching, malformed input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sar_atd.config import TilerConfig
from sar_atd.sar.lut import power_law_render
from sar_atd.tiling import SceneInputError, Tiler, tile_grid


@pytest.mark.parametrize("h,w", [(1, 1), (50, 700), (640, 640), (641, 640), (1153, 1500),
                                 (2049, 1025), (639, 1281)])
def test_grid_covers_every_pixel_with_full_tiles(h: int, w: int) -> None:
    """Every pixel is in a tile; tiles are min(T, side) large and inside the scene."""
    g = tile_grid(h, w, 640, 128)
    cover = np.zeros((h, w), np.int32)
    for x0, y0, x1, y1 in g:
        assert x1 - x0 == min(640, w) and y1 - y0 == min(640, h)
        assert x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1
    # neighbours overlap by at least the configured overlap (last tile shifted inward)
    xs = np.unique(g[:, 0])
    if len(xs) > 1:
        assert np.all(np.diff(xs) <= 640 - 128)


def test_grid_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="positive"):
        tile_grid(0, 10)
    with pytest.raises(ValueError, match="overlap"):
        tile_grid(10, 10, 64, 64)


def _scene_u8(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


@pytest.mark.parametrize("h,w", [(37, 53), (64, 65), (129, 64), (200, 97)])
def test_tiles_are_exact_copies_of_the_scene(h: int, w: int) -> None:
    """Each tile equals the scene under its rectangle; offsets are the rectangle corners,
    including 1-px remainders and scenes smaller than a tile."""
    scene = _scene_u8(h, w)
    tiler = Tiler(TilerConfig(tile_size=64, overlap=16, batch_size=3, device="cpu"))
    seen = 0
    for batch in tiler.tiles(scene):
        assert batch.tiles.dtype == torch.float32 and batch.tiles.shape[1] == 1
        for tile, (x0, y0), ti in zip(batch.tiles, batch.offsets, batch.tile_index,
                                      strict=True):
            th, tw = tile.shape[1:]
            np.testing.assert_array_equal(tile[0].numpy(), scene[y0:y0 + th, x0:x0 + tw])
            assert ti == seen
            seen += 1
        assert batch.n_tiles == len(tile_grid(h, w, 64, 16))
    assert seen == len(tile_grid(h, w, 64, 16))


def test_rendering_rules_per_dtype() -> None:
    """uint8 passes untouched; float/complex/uint16 go through the power-law LUT."""
    rng = np.random.default_rng(1)
    amp = rng.rayleigh(0.05, (70, 90)).astype(np.float32)
    tiler = Tiler(TilerConfig(tile_size=64, overlap=8, device="cpu", amplitude_ref=0.5))
    u8 = _scene_u8(70, 90)
    np.testing.assert_array_equal(tiler.prepare(u8).image.numpy(), u8)
    want = power_law_render(amp, 0.5, 0.5)
    np.testing.assert_array_equal(tiler.prepare(amp).image.numpy(), want)
    np.testing.assert_array_equal(tiler.prepare(amp.astype(np.float64)).image.numpy(), want)
    cplx = (amp * np.exp(1j * rng.uniform(0, 6.28, amp.shape))).astype(np.complex64)
    got = tiler.prepare(cplx).image.numpy().astype(int)
    assert np.abs(got - want.astype(int)).max() <= 1  # |a e^{ip}| rounds within 1 ulp
    counts = np.round(amp / amp.max() * 65535).astype(np.uint16)
    t16 = Tiler(TilerConfig(tile_size=64, overlap=8, device="cpu", amplitude_ref=0.5,
                            mono16_full_scale=float(amp.max())))
    got16 = t16.prepare(counts).image.numpy().astype(int)
    assert np.abs(got16 - want.astype(int)).max() <= 1


def test_content_anchor_puts_the_median_at_ref_level() -> None:
    amp = np.random.default_rng(2).rayleigh(3.0, (300, 300)).astype(np.float32)
    tiler = Tiler(TilerConfig(device="cpu", amplitude_ref=0.0, ref_level=40.0, gamma=0.75))
    img = tiler.prepare(amp).image.numpy()
    assert abs(float(np.median(img)) - 40.0) <= 1.0
    # the same scene at another gain renders the same (content anchor)
    img2 = tiler.prepare(amp * 1000).image.numpy()
    assert np.abs(img.astype(int) - img2.astype(int)).max() <= 1


def test_nonfinite_pixels_are_zeroed_and_counted_or_refused() -> None:
    amp = np.full((40, 50), 0.25, np.float32)
    amp[3, 4] = np.nan
    amp[10, 11] = np.inf
    amp[20, 21] = -np.inf
    tiler = Tiler(TilerConfig(tile_size=32, overlap=4, device="cpu", amplitude_ref=1.0))
    prep = tiler.prepare(amp)
    assert prep.n_nonfinite == 3
    img = prep.image.numpy()
    assert img[3, 4] == img[10, 11] == img[20, 21] == 0
    assert img[0, 0] == 128  # sqrt(0.25) * 255 = 127.5 -> 128 (round half to even: 128)
    assert all(b.n_nonfinite == 3 for b in tiler.batches(prep))
    strict = Tiler(TilerConfig(tile_size=32, overlap=4, device="cpu", nonfinite="error"))
    with pytest.raises(SceneInputError, match="NaN/inf"):
        strict.prepare(amp)


@pytest.mark.parametrize("bad,match", [
    ([[1, 2], [3, 4]], "numpy array or torch tensor"),
    (np.zeros((4, 4, 3), np.uint8), "2-D"),
    (np.zeros((0, 5), np.float32), "empty"),
    (np.zeros((4, 4), np.int32), "dtype"),
    (np.zeros((4, 4), bool), "dtype"),
])
def test_malformed_scenes_are_clear_errors(bad: object, match: str) -> None:
    with pytest.raises(SceneInputError, match=match):
        Tiler(TilerConfig(device="cpu")).prepare(bad)  # type: ignore[arg-type]


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="overlap"):
        TilerConfig(tile_size=64, overlap=64)
    with pytest.raises(ValueError, match="device"):
        TilerConfig(device="gpu")
    with pytest.raises(ValueError, match="batch_size"):
        TilerConfig(batch_size=0)


def test_torch_input_and_cuda_request_without_gpu() -> None:
    scene = torch.from_numpy(_scene_u8(30, 40))
    prep = Tiler(TilerConfig(device="cpu")).prepare(scene)
    assert prep.image.shape == (30, 40)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            Tiler(TilerConfig(device="cuda"))
