"""Background scenes for the overlay pipeline: MSTAR clutter files, images, arrays, generated.

Every background is served as a complex64 (H, W) numpy array of calibrated amplitudes at
MSTAR pixel spacing. Supported sources:

* **MSTAR clutter files** (raw Phoenix-header files, e.g. ``HB06158.000``): read with
  :func:`sar_atd.sar.mstar.read_mstar` (complex magnitude * exp(j phase)).
* **complex .npy**: used as is (cast to complex64).
* **float .npy**: linear magnitude (amplitude); a uniform random phase is attached.
* **8-bit PNG / JPEG / TIFF**: by default assumed quarter-power rendered (the project's LUT):
  amplitude = :func:`sar_atd.sar.lut.inverse_quarter_power_lut` ``((v / 255 * ref)^2)``;
  with ``image_mapping="linear"`` amplitude = ``v / 255 * linear_scale`` (for archives rendered
  linearly, like the MSTAR chips). A uniform random phase is attached.

The random phase of magnitude-only sources is seeded from the file name, so a background is
the same every time it is loaded. Phase matters only where the pipeline blurs the background
into a shadow (step 2): a uniform phase makes that blur behave like speckle, as for real data.
"""

from __future__ import annotations

import logging
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from sar_atd.errors import SarAtdError

LOG = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
NPY_SUFFIXES = (".npy",)

ImageMapping = Literal["quarter_power", "linear"]


class BackgroundError(SarAtdError, ValueError):
    """A background source is missing, unreadable or unusable."""


def _random_phase(name: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return np.exp(1j * rng.uniform(0.0, 2.0 * np.pi, shape)).astype(np.complex64)


def _is_mstar(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(32).lstrip().startswith(b"[PhoenixHeader")
    except OSError:
        return False


def load_background(path: str | Path, *, image_mapping: ImageMapping = "quarter_power",
                    lut_ref: float = 1.0, linear_scale: float = 1.0) -> np.ndarray:
    """Load one background file as complex64 (H, W) calibrated amplitudes.

    Args:
        path: MSTAR raw file, ``.npy`` (complex or float magnitude) or an 8-bit image.
        image_mapping: how 8-bit images map to amplitude (see module docstring).
        lut_ref: ``ref`` of the quarter-power LUT that rendered the image.
        linear_scale: amplitude of value 255 for ``image_mapping="linear"``.

    Returns:
        complex64 (H, W).

    Raises:
        BackgroundError: missing/unreadable file, wrong dimensionality or non-finite values.
    """
    path = Path(path)
    if not path.is_file():
        raise BackgroundError(f"background not found: {path}")
    suffix = path.suffix.lower()
    if suffix in NPY_SUFFIXES:
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as err:
            raise BackgroundError(f"cannot read background {path}: {err}") from None
        if arr.ndim != 2:
            raise BackgroundError(f"{path}: background must be 2-D (H, W), got {arr.shape}")
        if np.iscomplexobj(arr):
            out = np.asarray(arr, dtype=np.complex64)
        else:
            out = np.abs(np.asarray(arr, np.float32)) * _random_phase(path.name, arr.shape)
    elif suffix in IMAGE_SUFFIXES:
        import cv2

        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise BackgroundError(f"cannot decode background image {path}")
        if img.ndim == 3:
            img = img[:, :, 0]
        if img.dtype != np.uint8:
            raise BackgroundError(f"{path}: expected an 8-bit image, got {img.dtype}")
        if image_mapping == "quarter_power":
            from sar_atd.sar.lut import inverse_quarter_power_lut

            amp = inverse_quarter_power_lut(img, lut_ref)
        elif image_mapping == "linear":
            amp = img.astype(np.float32) / 255.0 * linear_scale
        else:
            raise BackgroundError(f"unknown image_mapping {image_mapping!r}; "
                                  "use 'quarter_power' or 'linear'")
        out = amp.astype(np.float32) * _random_phase(path.name, img.shape)
    elif _is_mstar(path):
        from sar_atd.sar.mstar import read_mstar  # lazy: owned by the MSTAR reader

        try:
            out = np.asarray(read_mstar(path).image, np.complex64)
        except SarAtdError as err:
            raise BackgroundError(f"cannot read MSTAR background {path}: {err}") from None
    else:
        raise BackgroundError(f"{path}: unknown background format (expected an MSTAR file, "
                              f".npy or one of {IMAGE_SUFFIXES})")
    if not np.all(np.isfinite(out)):
        raise BackgroundError(f"{path}: background contains NaN or infinite values")
    return np.ascontiguousarray(out)


class BackgroundSet:
    """An indexable set of complex64 (H, W) backgrounds, loaded lazily with a small cache.

    Sources are file paths, in-memory arrays, or generated scenes (seeded, generated on first
    use). Use :meth:`from_folder`, :meth:`from_arrays` or :meth:`generated`.
    """

    def __init__(self, sources: Sequence[str | Path | np.ndarray], names: Sequence[str] | None
                 = None, *, cache_size: int = 4, image_mapping: ImageMapping = "quarter_power",
                 lut_ref: float = 1.0, linear_scale: float = 1.0) -> None:
        self._sources = list(sources)
        if names is None:
            names = [Path(s).name if not isinstance(s, np.ndarray) else f"array{i}"
                     for i, s in enumerate(self._sources)]
        if len(names) != len(self._sources):
            raise BackgroundError(f"{len(names)} names for {len(self._sources)} backgrounds")
        self.names = list(names)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._kw = {"image_mapping": image_mapping, "lut_ref": lut_ref,
                    "linear_scale": linear_scale}
        self._generator: tuple[object, list[int]] | None = None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray], names: Sequence[str] | None = None
                    ) -> BackgroundSet:
        """In-memory backgrounds (complex, or real magnitude with a random phase attached)."""
        out = []
        for i, a in enumerate(arrays):
            a = np.asarray(a)
            if a.ndim != 2:
                raise BackgroundError(f"background {i} must be 2-D (H, W), got {a.shape}")
            if not np.iscomplexobj(a):
                a = np.abs(a).astype(np.float32) * _random_phase(f"array{i}", a.shape)
            out.append(a.astype(np.complex64))
        return cls(out, names)

    @classmethod
    def from_paths(cls, paths: Sequence[str | Path], **kw: object) -> BackgroundSet:
        paths = [Path(p) for p in paths]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise BackgroundError(f"background file(s) not found: {missing[:5]}")
        return cls(paths, [p.name for p in paths], **kw)  # type: ignore[arg-type]

    @classmethod
    def from_folder(cls, folder: str | Path, **kw: object) -> BackgroundSet:
        """Every background file in ``folder`` (sorted by name): .npy, images, MSTAR files."""
        folder = Path(folder)
        if not folder.is_dir():
            raise BackgroundError(f"background folder not found: {folder}")
        files = [p for p in sorted(folder.iterdir()) if p.is_file() and (
            p.suffix.lower() in NPY_SUFFIXES + IMAGE_SUFFIXES or _is_mstar(p))]
        if not files:
            raise BackgroundError(f"no backgrounds (.npy, images, MSTAR files) in {folder}")
        return cls.from_paths(files, **kw)

    @classmethod
    def generated(cls, n: int, config: object | None = None, seed: int = 0, *,
                  cache_size: int | None = None) -> BackgroundSet:
        """``n`` generated clutter scenes, scene ``i`` from seed ``seed + i`` (made on use).

        Generated scenes are cheap to hold (~21 MB each at 1784 x 1478) but cost seconds to
        make, so by default all ``n`` stay cached once made (``cache_size=None``); call
        :meth:`materialise` before forking DataLoader workers so they share them.
        """
        from sar_atd_training.clutter.generator import ClutterConfig

        if n < 1:
            raise BackgroundError(f"need at least one generated background, got n={n}")
        cfg = config or ClutterConfig()
        out = cls([None] * n,  # type: ignore[list-item]
                  [f"generated_seed{seed + i}" for i in range(n)],
                  cache_size=n if cache_size is None else cache_size)
        out._generator = (cfg, [seed + i for i in range(n)])
        return out

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self._sources)

    def __getitem__(self, i: int) -> np.ndarray:
        """complex64 (H, W) background ``i``."""
        if not 0 <= i < len(self):
            raise IndexError(f"background index {i} out of range (0..{len(self) - 1})")
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        src = self._sources[i]
        if self._generator is not None:
            from sar_atd_training.clutter.generator import generate_scene

            cfg, seeds = self._generator
            arr = generate_scene(cfg, seeds[i])  # type: ignore[arg-type]
        elif isinstance(src, np.ndarray):
            return src
        else:
            arr = load_background(src, **self._kw)  # type: ignore[arg-type]
        self._cache[i] = arr
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return arr

    def materialise(self, progress: bool = False) -> BackgroundSet:
        """Load/generate every background now (up to the cache size); returns ``self``."""
        from tqdm import tqdm

        for i in tqdm(range(min(len(self), self._cache_size)), desc="backgrounds",
                      disable=not progress):
            self[i]
        return self

    def subset(self, indices: Sequence[int]) -> BackgroundSet:
        """A new set holding backgrounds ``indices`` (e.g. a train/test split)."""
        out = BackgroundSet([self._sources[i] for i in indices],
                            [self.names[i] for i in indices], cache_size=self._cache_size,
                            **self._kw)  # type: ignore[arg-type]
        if self._generator is not None:
            cfg, seeds = self._generator
            out._generator = (cfg, [seeds[i] for i in indices])
        return out

    def __repr__(self) -> str:
        return f"BackgroundSet({len(self)} backgrounds: {self.names[:3]}...)"
