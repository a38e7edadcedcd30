"""Scene tiler: any SAR scene -> overlapping, batched 8-bit tiles on the compute device.

One implementation for the offline tools (``sar-atd detect``, ``sar-atd eval --tile``) and
the ROS 2 nodes. Steps:

1. :meth:`Tiler.prepare`: check the scene, render it once to 8 bits (rule in
   :class:`~sar_atd.config.TilerConfig`: uint8 passes through, or is histogram-matched to
   a reference with ``uint8_match``; complex/float/uint16 go through the power-law LUT),
   NaN/inf pixels set to 0 and counted. The rendering runs in
   row blocks on the device, so its temporaries stay a small fraction of the scene; the
   result is a uint8 (H, W) tensor (a quarter of a float32 scene, an eighth of complex64).
2. :meth:`Tiler.batches`: tiles on the grid of :func:`tile_grid`, strided views of the
   rendered scene stacked per batch into a float32 (B, 1, T, T) tensor in 8-bit units.

Grid rule: along each axis, tiles start every ``tile - overlap`` pixels and the last tile
is shifted inward to end exactly at the scene edge (no zero padding); an axis shorter
than a tile gets one tile of the axis' length. So tiles are ``min(T, H) x min(T, W)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sar_atd.config import TilerConfig
from sar_atd.errors import ConfigError, SarAtdError
from sar_atd.sar.lut import histogram_match_lut, power_law_render, read_match_reference

__all__ = ["TilerConfig", "Tiler", "TileBatch", "PreparedScene", "tile_grid", "axis_starts",
           "resolve_device", "SceneInputError", "RENDER_RECORD_KEYS",
           "config_with_render_record"]

_ROW_BLOCK_PIXELS = 1 << 18  # rendering block: ~0.26 Mpixel of temporaries at a time
_QUANTILE_SAMPLE = 1 << 20  # pixels sampled (strided) for the content-anchored white point


class SceneInputError(SarAtdError, ValueError):
    """A scene array cannot be tiled (wrong type, dtype, shape, empty, non-finite)."""


RENDER_RECORD_KEYS = ("gamma", "amplitude_ref", "ref_quantile", "ref_level")
"""Fields of a model's recorded rendering (``ModelInfo.render``) that replace the tiler's."""


def config_with_render_record(cfg: TilerConfig, render: Mapping[str, Any] | None
                              ) -> TilerConfig:
    """``cfg`` with a model's recorded rendering in place of its LUT fields.

    Applied when ``cfg.render == "model"`` and ``render`` (``ModelInfo.render``) is non-empty;
    otherwise ``cfg`` is returned unchanged (``render: config``, or a detector such as CFAR
    that records none). Keys other than :data:`RENDER_RECORD_KEYS` are ignored.

    Raises:
        ValueError: a recorded value the tiler refuses (named by ``TilerConfig``).
    """
    if cfg.render != "model" or not render:
        return cfg
    fields: dict[str, Any] = {k: float(v) for k, v in render.items()
                              if k in RENDER_RECORD_KEYS}
    return dataclasses.replace(cfg, **fields)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available else CPU; anything else as torch parses it.

    Raises:
        ValueError: a CUDA device was asked for but torch sees none.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch sees no CUDA device")
    return dev


def axis_starts(n: int, tile: int, overlap: int) -> np.ndarray:
    """Start offsets of tiles along one axis of length ``n`` (see module doc), int64."""
    if n <= tile:
        return np.zeros(1, np.int64)
    stride = tile - overlap
    starts = list(range(0, n - tile, stride))
    starts.append(n - tile)
    return np.unique(np.asarray(starts, np.int64))


def tile_grid(h: int, w: int, tile: int = 640, overlap: int = 128) -> np.ndarray:
    """Tile rectangles covering an (h, w) scene.

    Returns:
        int64 (N, 4) ``[x0, y0, x1, y1]`` pixel-edge rectangles, row-major order; every
        pixel lies in at least one; all have size ``min(tile, w) x min(tile, h)``.

    Raises:
        ValueError: non-positive sizes or ``overlap`` outside [0, tile).
    """
    if h < 1 or w < 1:
        raise ValueError(f"scene size must be positive, got {h}x{w}")
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(f"need tile >= 1 and 0 <= overlap < tile, got {tile}, {overlap}")
    ys, xs = axis_starts(h, tile, overlap), axis_starts(w, tile, overlap)
    th, tw = min(tile, h), min(tile, w)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    x0, y0 = xx.reshape(-1), yy.reshape(-1)
    return np.stack([x0, y0, x0 + tw, y0 + th], axis=1).astype(np.int64)


@dataclass
class PreparedScene:
    """A scene rendered to 8 bits on the device.

    Attributes:
        image: uint8 (H, W) tensor on the tiler's device (8-bit units).
        n_nonfinite: NaN/inf pixels set to 0 before rendering.
        source_dtype: dtype name of the scene as given.
    """

    image: torch.Tensor
    n_nonfinite: int = 0
    source_dtype: str = "uint8"

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])


@dataclass
class TileBatch:
    """A batch of tiles of one scene.

    Attributes:
        tiles: float32 (B, 1, T_h, T_w) in 8-bit units, on the tiler's device.
        offsets: int64 (B, 2) ``[x0, y0]`` of each tile in the scene (pixels).
        scene_hw: (H, W) of the scene.
        tile_index: int64 (B,) index of each tile in :func:`tile_grid` order.
        n_tiles: number of tiles of the whole scene.
        n_nonfinite: NaN/inf pixels of the scene (same value in every batch of a scene).
    """

    tiles: torch.Tensor
    offsets: np.ndarray
    scene_hw: tuple[int, int]
    tile_index: np.ndarray | None = None
    n_tiles: int = 0
    n_nonfinite: int = 0

    def __post_init__(self) -> None:
        self.offsets = np.asarray(self.offsets, np.int64).reshape(-1, 2)
        if self.tiles.dim() != 4 or self.tiles.shape[1] != 1:
            raise ValueError(f"TileBatch.tiles must be (B, 1, H, W), got "
                             f"{tuple(self.tiles.shape)}")
        if len(self.offsets) != self.tiles.shape[0]:
            raise ValueError(f"TileBatch: {self.tiles.shape[0]} tiles but "
                             f"{len(self.offsets)} offsets")
        if self.tile_index is None:
            self.tile_index = np.arange(len(self.offsets), dtype=np.int64)
        self.tile_index = np.asarray(self.tile_index, np.int64).reshape(-1)
        if not self.n_tiles:
            self.n_tiles = int(self.tile_index.max()) + 1 if len(self.tile_index) else 0


def check_scene(scene: Any) -> np.ndarray | torch.Tensor:
    """Validate a scene array: numpy or torch, 2-D, non-empty, supported dtype.

    Raises:
        SceneInputError: naming what is wrong.
    """
    if isinstance(scene, np.ndarray):
        dt = scene.dtype
        ok = (dt == np.uint8 or dt == np.uint16 or np.issubdtype(dt, np.floating)
              or np.issubdtype(dt, np.complexfloating))
    elif isinstance(scene, torch.Tensor):
        dt = scene.dtype
        ok = dt in (torch.uint8, torch.uint16, torch.float16, torch.float32, torch.float64,
                    torch.complex64, torch.complex128, torch.bfloat16)
    else:
        raise SceneInputError(f"scene must be a numpy array or torch tensor (H, W), got "
                              f"{type(scene).__name__}")
    if scene.ndim != 2:
        raise SceneInputError(f"scene must be a 2-D (H, W) single-channel array, got shape "
                              f"{tuple(scene.shape)}")
    if scene.shape[0] == 0 or scene.shape[1] == 0:
        raise SceneInputError(f"scene is empty: shape {tuple(scene.shape)}")
    if not ok:
        raise SceneInputError(f"scene dtype must be uint8, uint16, float or complex, got {dt}")
    return scene


class Tiler:
    """Scene -> 8-bit rendering -> overlapping tile batches (see module doc).

    Args:
        cfg: tiling and rendering settings.
    """

    def __init__(self, cfg: TilerConfig | None = None) -> None:
        self.cfg = cfg or TilerConfig()
        self.device = resolve_device(self.cfg.device)
        self.match_quantiles: np.ndarray | None = None
        if self.cfg.uint8_match:
            try:
                self.match_quantiles = read_match_reference(self.cfg.uint8_match)
            except ValueError as err:
                raise ConfigError(f"tiler.uint8_match: {err}") from None

    # ---- rendering ------------------------------------------------------------------
    def _amplitude(self, block: torch.Tensor) -> torch.Tensor:
        """Amplitude float32 of a block of the scene (uint16 scaled, complex magnitude)."""
        if block.dtype == torch.uint16:
            return block.to(torch.float32) * (self.cfg.mono16_full_scale / 65535.0)
        if block.is_complex():
            return block.abs().to(torch.float32)
        return block.to(torch.float32).abs()

    def _white_point(self, scene: torch.Tensor) -> float:
        """Rendered-domain white point: fixed, or the content anchor (see TilerConfig)."""
        cfg = self.cfg
        if cfg.amplitude_ref > 0:
            return float(cfg.amplitude_ref)
        n = scene.numel()
        step = max(1, n // _QUANTILE_SAMPLE)
        sample = self._amplitude(scene.reshape(-1)[::step].to(self.device))
        sample = sample[torch.isfinite(sample)]
        if sample.numel() == 0:
            return 1.0
        anchor = float(torch.quantile(sample.pow(cfg.gamma), cfg.ref_quantile))
        if not anchor > 0:
            nz = sample[sample > 0]
            anchor = float(nz.pow(cfg.gamma).min()) if nz.numel() else 1.0
        return anchor * 255.0 / cfg.ref_level

    def prepare(self, scene: np.ndarray | torch.Tensor) -> PreparedScene:
        """Render ``scene`` to a uint8 (H, W) tensor on the device (see module doc).

        Args:
            scene: (H, W) uint8 (already 8-bit), uint16 (mono16 amplitude counts), float
                (amplitude) or complex (complex image), numpy or torch (any device).

        Raises:
            SceneInputError: wrong type, shape or dtype, empty scene, or NaN/inf pixels
                with ``nonfinite = "error"``.
        """
        check_scene(scene)
        dtype_name = str(scene.dtype).replace("torch.", "")
        t = torch.from_numpy(scene) if isinstance(scene, np.ndarray) else scene
        h, w = int(t.shape[0]), int(t.shape[1])
        if t.dtype == torch.uint8:
            img = t.to(self.device).contiguous()
            if self.match_quantiles is not None:
                img = self._match(img)
            return PreparedScene(img, 0, dtype_name)
        ref: list[float] = []  # the scene's white point, computed once when needed
        out = torch.empty((h, w), dtype=torch.uint8, device=self.device)
        rows = max(1, _ROW_BLOCK_PIXELS // max(1, w))
        n_bad = 0
        for r0 in range(0, h, rows):
            block = t[r0:r0 + rows].to(self.device)
            amp = self._amplitude(block)
            # one reduction in the common case: the sum of amplitudes (>= 0) is finite
            # exactly when every pixel is (barring overflow, which takes the slow path)
            if block.dtype == torch.uint16 or bool(torch.isfinite(amp.sum())):
                out[r0:r0 + rows] = self._render(amp, t, ref)
                continue
            finite = torch.isfinite(amp)
            if not bool(finite.all()):
                bad = int((~finite).sum())
                if self.cfg.nonfinite == "error":
                    raise SceneInputError(f"scene has NaN/inf pixels (first in rows "
                                          f"{r0}-{r0 + rows - 1}); the tiler is set to refuse "
                                          "them (nonfinite: error)")
                n_bad += bad
                amp = torch.where(finite, amp, torch.zeros((), dtype=amp.dtype,
                                                           device=amp.device))
            out[r0:r0 + rows] = self._render(amp, t, ref)
        return PreparedScene(out, n_bad, dtype_name)

    def _match(self, img: torch.Tensor) -> torch.Tensor:
        """Histogram-match a uint8 (H, W) scene to the reference (``uint8_match``)."""
        hist = torch.bincount(img.reshape(-1), minlength=256).cpu().numpy()
        lut = torch.from_numpy(histogram_match_lut(hist, self.match_quantiles)).to(img.device)
        out = torch.empty_like(img)
        rows = max(1, _ROW_BLOCK_PIXELS // max(1, img.shape[1]))
        for r0 in range(0, img.shape[0], rows):  # int64 indices one block at a time
            out[r0:r0 + rows] = lut[img[r0:r0 + rows].long()]
        return out

    def _render(self, amp: torch.Tensor, scene: torch.Tensor, ref: list[float]
                ) -> torch.Tensor:
        """8-bit rendering of an amplitude block with the scene's white point (``ref``
        holds it once computed)."""
        if not ref:
            ref.append(self._white_point(scene))
        return power_law_render(amp, self.cfg.gamma, ref[0])

    # ---- tiling ---------------------------------------------------------------------
    def grid(self, h: int, w: int) -> np.ndarray:
        """Tile rectangles of an (h, w) scene, int64 (N, 4) xyxy."""
        return tile_grid(h, w, self.cfg.tile_size, self.cfg.overlap)

    def batches(self, prepared: PreparedScene) -> Iterator[TileBatch]:
        """Yield :class:`TileBatch` es of at most ``batch_size`` tiles of ``prepared``.

        Each batch stacks strided views of the scene image (one copy of the tile pixels)
        and casts them to float32 on the device; the scene image itself is never copied.
        """
        img = prepared.image
        h, w = prepared.hw
        rects = self.grid(h, w)
        bs = self.cfg.batch_size
        for i0 in range(0, len(rects), bs):
            r = rects[i0:i0 + bs]
            views = [img[y0:y1, x0:x1] for x0, y0, x1, y1 in r.tolist()]
            tiles = torch.stack(views).unsqueeze(1).to(torch.float32)
            yield TileBatch(tiles=tiles, offsets=r[:, :2].copy(), scene_hw=(h, w),
                            tile_index=np.arange(i0, i0 + len(r), dtype=np.int64),
                            n_tiles=len(rects), n_nonfinite=prepared.n_nonfinite)

    def tiles(self, scene: np.ndarray | torch.Tensor) -> Iterator[TileBatch]:
        """:meth:`prepare` then :meth:`batches`."""
        return self.batches(self.prepare(scene))
