"""The on-the-fly overlay pipeline (paper section II.B, DESIGN.md section 3), in torch.

One implementation for CPU and CUDA, batched over images and over the targets of a batch.
Per image: a random ``image_size`` crop of a random background, 1-3 non-overlapping targets
(a random bank record each: class, azimuth, depression), per target a random range and
cross-range resolution, thermal noise level and position, and dropout of half of the brightest
points of its ideal signature. Then, exactly as in the paper:

1. the shadow masks cut the background out (set to 0 there);
2. complex thermal noise is added to the (cut) background and the sensor function is applied,
   which blurs the surrounding background into the shadows (done per target on a window around
   its chip, with that target's resolution and noise level);
3. the shadow mask takes these noisy shadows back into the original background;
4. the sensor function is applied to the (dropped-out) ideal target signatures, which are added;
5. the quarter-power LUT renders 8 bits (by default; optionally a randomised power-law
   rendering, see below).

Rendering randomisation (domain randomisation of step 5, off by default): real archives hold
*some* monotonic 8-bit rendering of magnitude (the MSTAR JPEG chips: linear magnitude with a
contrast stretch), not the paper's quarter-power LUT. Per image, an amplitude exponent
``gamma`` is drawn from ``render_gamma_range`` (0.5 = quarter power, 1 = linear), and with
``render_ref = "quantile"`` the white point follows the image content like a contrast-enhanced
display: a quantile (drawn from ``render_ref_quantile_range``) of the image amplitude is
rendered at an 8-bit level drawn from ``render_ref_level_range``; a black point (the
``render_black_quantile_range`` quantile rendered as 0) adds the dark clip of a contrast
stretch. All of it goes through :func:`sar_atd.sar.lut.power_law_render`. A degenerate range
(min == max) consumes no random number, so the default configuration reproduces the
paper-faithful images bit for bit.

Noise level convention: ``noise_db`` is the thermal noise power per pixel (dB re unit amplitude
squared) *after* the sensor function, i.e. what one measures in the rendered shadow; the white
noise added before the sensor function is scaled by ``1 / gain`` (the sensor function's white
noise power gain, :func:`sar_atd.sar.sensor.noise_power_gain`).

Boxes are tight on the *visible* target: the tight box of the support mask (the laid-over
target footprint from the bank) united with the pixels near it (within ``box_dilate_px``) where
the rendered target amplitude exceeds ``box_energy_factor`` times the median background
amplitude of its window (the sensor's point-spread of bright scatterers beyond the support).
``box_mode`` selects support only, energy only, or their union (default).

Random choices (counts, records, resolutions, noise levels, positions, dropout subsets, crops)
are drawn on the CPU from the caller's ``torch.Generator``, so they are identical on every
device; only the noise samples come from a device generator seeded from it (CPU and CUDA images
are then statistically, not bitwise, equal).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from sar_atd.boxes import mask_box
from sar_atd.config import check_range
from sar_atd.errors import ConfigError, SarAtdError
from sar_atd.sar.lut import power_law_render
from sar_atd.sar.sensor import SensorConfig, apply_sensor_function, noise_power_gain
from sar_atd_training.simulator.models import DEFAULT_OOD_KINDS

LOG = logging.getLogger(__name__)


class PlacementError(SarAtdError, RuntimeError):
    """The requested objects cannot be placed without overlap in the image."""


class OverlayDataError(SarAtdError, ValueError):
    """The bank or the backgrounds cannot feed the pipeline (empty, too small, mismatched)."""


class OverlayStatisticsError(SarAtdError, RuntimeError):
    """A generated batch is outside its calibrated statistics (non-finite pixels, or an image
    whose clutter level no longer matches its background crop)."""


BATCH_MEDIAN_RATIO = (0.5, 2.0)
"""Accepted ratio of each composed image's median amplitude to its background crop's (the
targets and their shadows cover a small part of an image, so the clutter level stays)."""


def check_batch_statistics(composed: torch.Tensor, background_median: torch.Tensor) -> None:
    """Refuse an overlay batch whose amplitudes are off calibration before it is used.

    Args:
        composed: float32 (B, H, W) amplitude of the composed images (before the LUT).
        background_median: float32 (B,) median amplitude of each image's background crop.

    Raises:
        OverlayStatisticsError: non-finite pixels, or a median ratio outside
            :data:`BATCH_MEDIAN_RATIO` (checked where the background is not all zero).
    """
    finite = torch.isfinite(composed).flatten(1).all(1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten().tolist()
        raise OverlayStatisticsError(f"overlay batch: images {bad} hold non-finite pixels")
    median = composed[:, ::4, ::4].flatten(1).median(1).values
    ref = background_median.to(median.device)
    ratio = median / ref.clamp_min(torch.finfo(torch.float32).tiny)
    lo, hi = BATCH_MEDIAN_RATIO
    bad_mask = (ref > 0) & ((ratio < lo) | (ratio > hi))
    if bool(bad_mask.any()):
        b = int(torch.nonzero(bad_mask).flatten()[0])
        raise OverlayStatisticsError(
            f"overlay batch: image {b} has median amplitude {float(median[b]):.3g}, "
            f"{float(ratio[b]):.3g} x its background's {float(ref[b]):.3g} (accepted "
            f"{lo}-{hi} x); the batch is refused")


class BankLike(Protocol):
    """What the pipeline needs of a signature bank (:class:`SignatureBank` provides it)."""

    records: list[Any]

    def __len__(self) -> int: ...
    def signature(self, i: int) -> np.ndarray: ...
    def shadow(self, i: int) -> np.ndarray: ...
    def support(self, i: int) -> np.ndarray: ...
    def select(self, kind: str | None = None, classes: Any = None,
               depressions: Any = None) -> np.ndarray: ...


def _range(name: str, r: tuple[float, float], lo: float | None = None) -> None:
    check_range(f"OverlayConfig.{name}", r, lo)


@dataclass(frozen=True)
class OverlayConfig:
    """All randomisation ranges of the overlay pipeline (ranges are ``(min, max)``, uniform)."""

    image_size: int = 640
    """Output side (pixels); backgrounds are cropped to this."""
    targets_per_image: tuple[int, int] = (1, 3)
    """Number of targets per image (inclusive)."""
    ood_per_image: tuple[int, int] = (0, 0)
    """Number of OOD objects (bank records of the kinds ``ood_kinds``) per image; they get no
    box."""
    range_res_m: tuple[float, float] = (0.28, 0.45)
    """Range resolution per target (m); MSTAR: 0.3047. Finest allowed ~0.241 (grid Nyquist)."""
    xrange_res_m: tuple[float, float] = (0.28, 0.45)
    """Cross-range resolution per target (m)."""
    noise_db: tuple[float, float] = (-40.0, -30.0)
    """Thermal noise power per pixel after the sensor function (dB re 1), per target."""
    dropout_points: int = 20
    """How many of the brightest points (local maxima of the ideal signature) are candidates."""
    dropout_share: float = 0.5
    """Share of those candidates removed (the paper: half)."""
    dropout_prob: float = 1.0
    """Probability that a target gets the dropout at all."""
    dropout_radius_px: int = 1
    """A dropped point zeroes the (2r+1)^2 neighbourhood of its peak pixel (its main lobe)."""
    min_gap_px: int = 4
    """Minimum gap between the boxes of placed objects (pixels)."""
    max_placement_tries: int = 200
    """Rejection-sampling tries per object before :class:`PlacementError`."""
    box_mode: Literal["support", "energy", "union"] = "union"
    box_energy_factor: float = 4.0
    box_dilate_px: int = 3
    window_margin_px: int = 12
    """Background margin around a chip for the step-2 blur (pixels)."""
    lut_ref: tuple[float, float] = (1.0, 1.0)
    """Quarter-power LUT ``ref`` per image (a range randomises the display gain): amplitude
    ``lut_ref**2`` is rendered as 255 (``render_ref = "fixed"``, any ``gamma``)."""
    render_gamma_range: tuple[float, float] = (0.5, 0.5)
    """Amplitude exponent per image (8-bit value ~ ``|s|**gamma``): 0.5 = the paper's
    quarter-power LUT, 1.0 = linear magnitude (the MSTAR JPEG chips)."""
    render_ref: Literal["fixed", "quantile"] = "fixed"
    """White point: ``"fixed"``: amplitude ``lut_ref**2`` maps to 255 (the paper); ``"quantile"``:
    per image, a quantile drawn from ``render_ref_quantile_range`` of the image amplitude is
    rendered at an 8-bit level drawn from ``render_ref_level_range`` (a contrast-enhanced
    display)."""
    render_ref_quantile_range: tuple[float, float] = (0.5, 0.5)
    """Quantile of the image amplitude that anchors the contrast in ``"quantile"`` mode, per
    image (0.5: the median, i.e. the clutter level of an image that is mostly clutter; ~0.9995:
    the brightest target pixels, a display that saturates the top of the histogram)."""
    render_ref_level_range: tuple[float, float] = (30.0, 30.0)
    """8-bit level (0-255] the anchor quantile is rendered at, per image (``"quantile"``)."""
    render_black_quantile_range: tuple[float, float] = (0.0, 0.0)
    """Quantile of the image amplitude rendered as 0 (black point of a contrast stretch), per
    image; 0 = no black point."""
    classes: tuple[str, ...] = ()
    """Target classes to use (empty: all)."""
    depressions_deg: tuple[float, ...] = ()
    """Depressions to use (empty: all)."""
    ood_kinds: tuple[str, ...] = ()
    """OOD object kinds placed when ``ood_per_image`` > 0 (``simulator.models.OBJECT_NAMES``:
    tree, house, container, wall, lamp_posts). Empty: tree and house, whichever the bank
    holds (what recipes meant before the man-made clutter kinds existed); named kinds must
    each be in the bank."""
    return_masks: bool = True
    """Return per-target visible masks (N, H, W) bool (debugging, segmentation labels)."""

    def __post_init__(self) -> None:
        if self.image_size < 32:
            raise ConfigError(f"OverlayConfig.image_size must be >= 32, got {self.image_size}")
        _range("targets_per_image", self.targets_per_image, 0)
        _range("ood_per_image", self.ood_per_image, 0)
        if self.targets_per_image[1] + self.ood_per_image[1] == 0:
            raise ConfigError("OverlayConfig: targets_per_image and ood_per_image are both 0")
        _range("range_res_m", self.range_res_m, 1e-6)
        _range("xrange_res_m", self.xrange_res_m, 1e-6)
        _range("noise_db", self.noise_db)
        _range("lut_ref", self.lut_ref, 1e-9)
        _range("render_gamma_range", self.render_gamma_range, 1e-3)
        if self.render_gamma_range[1] > 10.0:
            raise ConfigError(f"OverlayConfig.render_gamma_range must be <= 10, got "
                              f"{self.render_gamma_range}")
        if self.render_ref not in ("fixed", "quantile"):
            raise ConfigError(f"OverlayConfig.render_ref must be 'fixed' or 'quantile', got "
                              f"{self.render_ref!r}")
        _range("render_ref_quantile_range", self.render_ref_quantile_range, 1e-6)
        if self.render_ref_quantile_range[1] > 1.0:
            raise ConfigError(f"OverlayConfig.render_ref_quantile_range must be in (0, 1], got "
                              f"{self.render_ref_quantile_range}")
        _range("render_ref_level_range", self.render_ref_level_range, 1.0)
        if self.render_ref_level_range[1] > 255.0:
            raise ConfigError(f"OverlayConfig.render_ref_level_range must be in [1, 255], got "
                              f"{self.render_ref_level_range}")
        _range("render_black_quantile_range", self.render_black_quantile_range, 0.0)
        if self.render_black_quantile_range[1] >= 0.5 or (
                self.render_ref == "quantile"
                and self.render_black_quantile_range[1] >= self.render_ref_quantile_range[0]):
            raise ConfigError("OverlayConfig.render_black_quantile_range must stay below 0.5 "
                              f"and below render_ref_quantile_range, got "
                              f"{self.render_black_quantile_range}")
        if not 0.0 <= self.dropout_share <= 1.0:
            raise ConfigError(f"OverlayConfig.dropout_share must be in [0, 1], got "
                              f"{self.dropout_share}")
        if not 0.0 <= self.dropout_prob <= 1.0:
            raise ConfigError(f"OverlayConfig.dropout_prob must be in [0, 1], got "
                              f"{self.dropout_prob}")
        for name in ("dropout_points", "dropout_radius_px", "min_gap_px", "box_dilate_px",
                     "window_margin_px"):
            if getattr(self, name) < 0:
                raise ConfigError(f"OverlayConfig.{name} must be >= 0, got "
                                  f"{getattr(self, name)}")
        if self.max_placement_tries < 1:
            raise ConfigError("OverlayConfig.max_placement_tries must be >= 1")
        if self.ood_kinds:
            from sar_atd_training.simulator.models import check_object_kinds

            try:
                check_object_kinds(self.ood_kinds, "OverlayConfig.ood_kinds")
            except ValueError as err:
                raise ConfigError(str(err)) from None


@dataclass
class Sample:
    """One generated training image.

    Attributes:
        image: uint8 (H, W) quarter-power rendering.
        boxes: float32 (N, 4) target boxes [x0, y0, x1, y1], pixel edges.
        labels: int64 (N,) all ones (one 'target' class).
        masks: bool (N, H, W) visible pixels of each target, or None.
        ood_boxes: float32 (M, 4) boxes of overlaid OOD objects (not targets: no labels).
        shadow: bool (H, W) union of the placed shadow masks.
        meta: dict: background name/index, crop origin, lut_ref, render (gamma, ref, black:
            the :func:`~sar_atd.sar.lut.power_law_render` arguments used), and per object
            (targets then OOD): record, kind, class, azimuth_deg, depression_deg, range_res_m,
            xrange_res_m, noise_db, row/col (chip top-left in the image, may be negative),
            box, dropped points.
        complex_image: complex64 (H, W) before the LUT (only with ``keep_complex``).
    """

    image: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None
    ood_boxes: torch.Tensor
    shadow: torch.Tensor
    meta: dict[str, Any] = field(default_factory=dict)
    complex_image: torch.Tensor | None = None


# --------------------------------------------------------------------------- building blocks
def brightest_points(signatures: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` brightest local maxima (3x3) of each ideal signature.

    Args:
        signatures: complex (T, S, S).
        k: points per signature.

    Returns:
        ``(flat_index int64 (T, k), valid bool (T, k))``; invalid where a signature has fewer
        than ``k`` non-zero local maxima.
    """
    mag = signatures.abs()
    t, s1, s2 = mag.shape
    k = min(k, s1 * s2)
    pooled = F.max_pool2d(mag[:, None], 3, stride=1, padding=1)[:, 0]
    score = torch.where((mag >= pooled) & (mag > 0), mag, torch.zeros_like(mag))
    vals, idx = torch.topk(score.reshape(t, -1), k, dim=1)
    return idx, vals > 0


def dropout_brightest(signatures: torch.Tensor, n_points: int, share: float, radius_px: int,
                      apply: torch.Tensor, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove a random ``share`` of the ``n_points`` brightest points of each signature.

    Args:
        signatures: complex64 (T, S, S) ideal signatures.
        n_points: candidates (brightest local maxima) per signature.
        share: fraction of the valid candidates dropped (rounded to the nearest integer).
        radius_px: a dropped point zeroes the (2r+1)^2 neighbourhood of its peak.
        apply: bool (T,): which signatures get the dropout.
        generator: CPU generator for the random subsets (device-independent choices).

    Returns:
        ``(signatures with dropout, n_dropped int64 (T,))``.
    """
    t = signatures.shape[0]
    if t == 0 or n_points == 0 or share == 0.0:
        return signatures, torch.zeros(t, dtype=torch.int64)
    idx, valid = brightest_points(signatures, n_points)
    k = idx.shape[1]
    n_valid = valid.sum(1).cpu()
    n_drop = torch.round(n_valid.double() * share).long() * apply.cpu().long()
    order = torch.rand(t, k, generator=generator).argsort(dim=1)  # random rank per candidate
    # valid candidates are the first n_valid (topk is sorted); rank among them only
    rank_key = torch.where(valid.cpu(), order.double(), torch.full((t, k), float(k) * 2))
    ranks = rank_key.argsort(1).argsort(1)
    drop = (ranks < n_drop[:, None]).to(signatures.device)
    flat = torch.zeros(t, signatures.shape[1] * signatures.shape[2], device=signatures.device)
    flat.scatter_(1, idx, drop.float())
    mask = flat.reshape(signatures.shape)
    if radius_px > 0:
        mask = F.max_pool2d(mask[:, None], 2 * radius_px + 1, stride=1, padding=radius_px)[:, 0]
    return signatures * (mask < 0.5), n_drop


def _reflect(idx: np.ndarray, n: int) -> np.ndarray:
    """Reflect integer indices into [0, n) (mirror without repeating the edge)."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= n, period - idx, idx)


# --------------------------------------------------------------------------- pipeline
def ood_records(bank: BankLike, kinds: Sequence[str] = (),
                among: np.ndarray | None = None) -> np.ndarray:
    """int64 indices of the bank's OOD records of ``kinds`` (optionally only those in
    ``among``), kind after kind in the order of ``kinds``, each kind in bank order.

    Empty ``kinds``: tree and house, whichever the bank holds. Named kinds must each be in
    the bank (in ``among`` when given).

    Raises:
        OverlayDataError: a named kind has no record, naming the kind and the fix.
    """
    sel = [np.asarray(bank.select(kind=k), np.int64) for k in (kinds or DEFAULT_OOD_KINDS)]
    if among is not None:
        keep = np.asarray(among, np.int64)
        sel = [s[np.isin(s, keep)] for s in sel]
    for k, s in zip(kinds, sel):
        if s.size == 0:
            where = getattr(bank, "path", None)
            raise OverlayDataError(
                f"the signature bank {where or ''} has no {k!r} records"
                f"{' among those allowed here' if among is not None else ''}: add the OOD "
                f"object with `sar-atd simulate --out {where or 'BANK'} --add-objects {k}`"
                " (or leave the kind out)")
    return np.concatenate(sel) if sel else np.zeros(0, np.int64)


class OverlayPipeline:
    """Generate training images by overlaying bank signatures on background crops.

    Args:
        config: randomisation ranges.
        bank: signature bank (:class:`BankLike`): records, signature/shadow/support(i), select.
        backgrounds: :class:`~sar_atd_training.clutter.BackgroundSet` (or any sequence of
            complex (H, W) arrays), each at least ``image_size`` on both sides.
        device: where the maths runs ('cpu', 'cuda', ...).
        record_indices: bank records usable as targets (e.g. a split's training pairs);
            default: every 'target' record matching ``config.classes``/``depressions_deg``.
        ood_indices: records usable as OOD objects; default every record of
            ``config.ood_kinds`` (see :func:`ood_records`).
        sensor: pixel spacing and window (MSTAR by default).

    Raises:
        OverlayDataError: empty bank / no usable records, no backgrounds, mismatched chips.
    """

    def __init__(self, config: OverlayConfig, bank: BankLike, backgrounds: Any,
                 device: str | torch.device = "cpu", *, record_indices: Any = None,
                 ood_indices: Any = None, sensor: SensorConfig | None = None) -> None:
        self.config = config
        self.bank = bank
        self.backgrounds = backgrounds
        self.device = torch.device(device)
        self.sensor = sensor or SensorConfig()
        if bank is None or len(bank) == 0:
            raise OverlayDataError("signature bank is empty: nothing to overlay")
        if backgrounds is None or len(backgrounds) == 0:
            raise OverlayDataError("no backgrounds given: need at least one background scene")
        classes = list(config.classes) or None
        deps = list(config.depressions_deg) or None
        if record_indices is None:
            record_indices = bank.select(kind="target", classes=classes, depressions=deps)
        self.target_idx = np.asarray(record_indices, np.int64)
        if ood_indices is None:
            ood_indices = ood_records(bank, config.ood_kinds)
        self.ood_idx = np.asarray(ood_indices, np.int64)
        if config.targets_per_image[1] > 0 and self.target_idx.size == 0:
            raise OverlayDataError(
                f"no target records in the bank match classes={classes}, depressions={deps} "
                f"(bank of {len(bank)} records)")
        if config.ood_per_image[1] > 0 and self.ood_idx.size == 0:
            kinds = config.ood_kinds or DEFAULT_OOD_KINDS
            raise OverlayDataError(f"ood_per_image > 0 but the bank has no "
                                   f"{'/'.join(repr(k) for k in kinds)} records")
        first = int(self.target_idx[0] if self.target_idx.size else self.ood_idx[0])
        self.chip = tuple(np.asarray(bank.signature(first)).shape)
        if len(self.chip) != 2:
            raise OverlayDataError(f"bank signatures must be 2-D, got {self.chip}")
        if max(self.chip) > config.image_size:
            raise OverlayDataError(f"bank chips {self.chip} are larger than the image "
                                   f"({config.image_size})")
        self._support_boxes: dict[int, np.ndarray] = {}

    # ------------------------------------------------------------------ host-side draws
    def _support_box(self, i: int) -> np.ndarray:
        """Tight support box in chip pixels [x0, y0, x1, y1] (whole chip centre if empty)."""
        box = self._support_boxes.get(i)
        if box is None:
            sup = np.asarray(self.bank.support(i), bool)
            if sup.shape != self.chip:
                raise OverlayDataError(f"bank record {i}: support {sup.shape} != chip "
                                       f"{self.chip}")
            rows, cols = np.nonzero(sup)
            if rows.size == 0:
                mag = np.abs(np.asarray(self.bank.signature(i)))
                rows, cols = np.nonzero(mag >= 0.1 * mag.max()) if mag.max() > 0 else (
                    np.array([self.chip[0] // 2]), np.array([self.chip[1] // 2]))
            box = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], np.int64)
            self._support_boxes[i] = box
        return box

    def _uniform(self, r: tuple[float, float], g: torch.Generator) -> float:
        return float(r[0] + (r[1] - r[0]) * torch.rand((), generator=g, dtype=torch.float64))

    def _randint(self, lo: int, hi: int, g: torch.Generator) -> int:
        """Uniform integer in [lo, hi] inclusive."""
        return int(torch.randint(lo, hi + 1, (), generator=g))

    def _place(self, records: list[int], g: torch.Generator) -> list[tuple[int, int]]:
        """Chip top-left (row, col) in image pixels for each record, boxes not overlapping."""
        cfg = self.config
        n = cfg.image_size
        d, gap = cfg.box_dilate_px, cfg.min_gap_px
        placed: list[np.ndarray] = []
        out = []
        for i in records:
            b = self._support_box(i)
            # visible box may grow by box_dilate_px around the support; keep it in the image
            bx0, by0, bx1, by1 = b[0] - d, b[1] - d, b[2] + d, b[3] + d
            r_lo, r_hi = -by0, n - by1
            c_lo, c_hi = -bx0, n - bx1
            if r_hi < r_lo or c_hi < c_lo:
                raise PlacementError(f"record {i}: its box ({by1 - by0} x {bx1 - bx0} px) does "
                                     f"not fit in a {n} x {n} image")
            for _ in range(cfg.max_placement_tries):
                r = self._randint(r_lo, r_hi, g)
                c = self._randint(c_lo, c_hi, g)
                cand = np.array([c + bx0, r + by0, c + bx1, r + by1])
                if all(cand[0] >= p[2] + gap or p[0] >= cand[2] + gap or cand[1] >= p[3] + gap
                       or p[1] >= cand[3] + gap for p in placed):
                    placed.append(cand)
                    out.append((r, c))
                    break
            else:
                raise PlacementError(
                    f"cannot place {len(records)} objects without overlap in a {n} x {n} image "
                    f"after {cfg.max_placement_tries} tries (placed {len(placed)}); lower "
                    "targets_per_image/ood_per_image or min_gap_px, or use larger images")
        return out

    def _draw_image(self, g: torch.Generator) -> dict[str, Any]:
        cfg = self.config
        n_t = self._randint(*cfg.targets_per_image, g) if self.target_idx.size else 0
        n_o = self._randint(*cfg.ood_per_image, g) if self.ood_idx.size else 0
        recs = [int(self.target_idx[self._randint(0, self.target_idx.size - 1, g)])
                for _ in range(n_t)]
        recs += [int(self.ood_idx[self._randint(0, self.ood_idx.size - 1, g)])
                 for _ in range(n_o)]
        pos = self._place(recs, g)
        objs = []
        for j, (i, (r, c)) in enumerate(zip(recs, pos)):
            rec = self.bank.records[i]
            objs.append({
                "record": i, "is_target": j < n_t, "kind": rec.kind,
                "class_name": rec.class_name, "azimuth_deg": float(rec.azimuth_deg),
                "depression_deg": float(rec.depression_deg),
                "range_res_m": self._uniform(cfg.range_res_m, g),
                "xrange_res_m": self._uniform(cfg.xrange_res_m, g),
                "noise_db": self._uniform(cfg.noise_db, g),
                "dropout": bool(torch.rand((), generator=g) < cfg.dropout_prob),
                "row": r, "col": c,
            })
        bg_i = self._randint(0, len(self.backgrounds) - 1, g)
        bg = self.backgrounds[bg_i]
        hb, wb = bg.shape[-2:]
        if hb < cfg.image_size or wb < cfg.image_size:
            name = getattr(self.backgrounds, "names", [str(bg_i)] * (bg_i + 1))[bg_i]
            raise OverlayDataError(f"background {name!r} is {hb} x {wb}, smaller than the "
                                   f"{cfg.image_size} x {cfg.image_size} crop")
        r0 = self._randint(0, hb - cfg.image_size, g)
        c0 = self._randint(0, wb - cfg.image_size, g)
        out = {"objects": objs, "background": bg_i, "crop": (r0, c0),
               "lut_ref": self._uniform(cfg.lut_ref, g)}
        # rendering randomisation: a degenerate range draws nothing (default stream unchanged)
        out["render_gamma"] = self._draw_range(cfg.render_gamma_range, g)
        out["render_quantile"] = self._draw_range(cfg.render_ref_quantile_range, g)
        out["render_level"] = self._draw_range(cfg.render_ref_level_range, g)
        out["render_black_q"] = self._draw_range(cfg.render_black_quantile_range, g)
        return out

    def _draw_range(self, r: tuple[float, float], g: torch.Generator) -> float:
        """Uniform in ``r``; ``r[0]`` without a draw when the range is degenerate."""
        return float(r[0]) if r[1] <= r[0] else self._uniform(r, g)

    def _render(self, mag: torch.Tensor, draws: list[dict[str, Any]]) -> torch.Tensor:
        """Step 5: 8-bit rendering of amplitude images (B, n, n) with per-image parameters.

        Fills ``draw["render"] = {"gamma", "ref", "black"}`` (rendered-domain
        :func:`~sar_atd.sar.lut.power_law_render` arguments) for each image.
        """
        cfg = self.config
        dev = mag.device
        gammas = [dr["render_gamma"] for dr in draws]
        refs: list[float] = []
        blacks: list[float] = []
        flat = mag.reshape(mag.shape[0], -1)
        npx = flat.shape[1]

        def quantile(b: int, q: float) -> float:
            k = min(npx, max(1, int(round(q * npx))))
            return float(torch.kthvalue(flat[b], k).values)

        for b, dr in enumerate(draws):
            gam = dr["render_gamma"]
            black = quantile(b, dr["render_black_q"]) ** gam if dr["render_black_q"] > 0 else 0.0
            if cfg.render_ref == "fixed":
                # amplitude lut_ref**2 -> 255 (for gamma 0.5 exactly the LUT's ref)
                ref = dr["lut_ref"] if gam == 0.5 else (dr["lut_ref"] ** 2) ** gam
            else:
                anchor = quantile(b, dr["render_quantile"]) ** gam
                ref = black + (anchor - black) * 255.0 / dr["render_level"]
            if not ref > black:  # blank image (anchor == black point): any valid white point
                ref = black + max(abs(black), 1e-12)
            refs.append(ref)
            blacks.append(black)
            dr["render"] = {"gamma": gam, "ref": ref, "black": black}
        ref_t = torch.tensor(refs, dtype=torch.float32, device=dev)
        if all(x == 0.5 for x in gammas) and not any(blacks):
            return power_law_render(mag, 0.5, ref_t)  # the paper's quarter-power LUT
        black_t = torch.tensor(blacks, dtype=torch.float32, device=dev)
        # float32 rounding may make ref == black for a tiny contrast: keep ref > black
        ref_t = torch.maximum(ref_t, torch.nextafter(black_t, torch.full_like(black_t, 1e30)))
        return power_law_render(mag, torch.tensor(gammas, dtype=torch.float32, device=dev),
                                ref_t, black_t if any(blacks) else None)

    # ------------------------------------------------------------------ generation
    def generate(self, batch_size: int, generator: torch.Generator | None = None, *,
                 keep_complex: bool = False) -> list[Sample]:
        """Generate ``batch_size`` images (batched on ``self.device``).

        Args:
            batch_size: images.
            generator: CPU ``torch.Generator`` driving every random choice (seeded by caller).
            keep_complex: also return each complex image before the LUT.

        Raises:
            PlacementError: objects cannot be placed without overlap.
            OverlayDataError: a background is smaller than the crop.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        cfg = self.config
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        draws = [self._draw_image(g) for _ in range(batch_size)]
        dev_seed = int(torch.randint(0, 2**62, (), generator=g))
        dev_g = torch.Generator(device=self.device).manual_seed(dev_seed)
        dev = self.device
        n = cfg.image_size
        s1, s2 = self.chip
        m = cfg.window_margin_px
        pad = max(s1, s2) + m  # canvas padding: chips may hang over the image border

        # backgrounds: crop with real context around it (reflected at the scene border)
        canvases = []
        for dr in draws:
            bg = self.backgrounds[dr["background"]]
            r0, c0 = dr["crop"]
            hb, wb = bg.shape[-2:]
            if r0 >= pad and c0 >= pad and r0 + n + pad <= hb and c0 + n + pad <= wb:
                canvases.append(bg[r0 - pad:r0 + n + pad, c0 - pad:c0 + n + pad])
            else:  # near the scene border: reflect
                ri = _reflect(np.arange(r0 - pad, r0 + n + pad), hb)
                ci = _reflect(np.arange(c0 - pad, c0 + n + pad), wb)
                canvases.append(np.asarray(bg)[np.ix_(ri, ci)])
        # a fresh array: modified in place below as the output canvas
        bg_t = torch.from_numpy(np.stack(canvases).astype(np.complex64, copy=False)).to(dev)

        bg_median = bg_t[:, pad:pad + n:4, pad:pad + n:4].abs().flatten(1).median(1).values
        objs = [(b, o) for b, dr in enumerate(draws) for o in dr["objects"]]
        t = len(objs)
        out = bg_t  # steps 3-4 write in place; the windows below are copies
        shadow_union = torch.zeros(bg_t.shape, dtype=torch.bool, device=dev)
        if t:
            recs = [o["record"] for _, o in objs]
            sig = torch.from_numpy(np.stack([np.asarray(self.bank.signature(i), np.complex64)
                                             for i in recs])).to(dev)
            sh = torch.from_numpy(np.stack([np.asarray(self.bank.shadow(i), bool)
                                            for i in recs])).to(dev)
            sup = torch.from_numpy(np.stack([np.asarray(self.bank.support(i), bool)
                                             for i in recs])).to(dev)
            if sig.shape[1:] != (s1, s2) or sh.shape != sig.shape or sup.shape != sig.shape:
                raise OverlayDataError(f"bank chips must all be {self.chip}; got signatures "
                                       f"{tuple(sig.shape)}, shadows {tuple(sh.shape)}, "
                                       f"supports {tuple(sup.shape)}")
            rr = torch.tensor([o["range_res_m"] for _, o in objs], dtype=torch.float64,
                              device=dev)
            xr = torch.tensor([o["xrange_res_m"] for _, o in objs], dtype=torch.float64,
                              device=dev)
            ndb = torch.tensor([o["noise_db"] for _, o in objs], dtype=torch.float32,
                               device=dev)
            apply = torch.tensor([o["dropout"] for _, o in objs])
            sig, n_drop = dropout_brightest(sig, cfg.dropout_points, cfg.dropout_share,
                                            cfg.dropout_radius_px, apply, g)
            rows = [pad + o["row"] for _, o in objs]
            cols = [pad + o["col"] for _, o in objs]
            bidx = [b for b, _ in objs]

            # (1) cut the background with the shadow masks
            for k in range(t):
                b, r, c = bidx[k], rows[k], cols[k]
                shadow_union[b, r:r + s1, c:c + s2] |= sh[k]
            # (2) add thermal noise and blur with the sensor function (per target window)
            sl = [(bidx[k], slice(rows[k] - m, rows[k] + s1 + m),
                   slice(cols[k] - m, cols[k] + s2 + m)) for k in range(t)]
            win = torch.stack([bg_t[s] for s in sl]) * ~torch.stack([shadow_union[s]
                                                                     for s in sl])
            bgwin_orig = torch.stack([bg_t[b, r:r + s1, c:c + s2]
                                      for b, r, c in zip(bidx, rows, cols)])
            gain = noise_power_gain((s1 + 2 * m, s2 + 2 * m), self.sensor, rr, xr)
            sigma = torch.sqrt(10.0 ** (ndb / 10.0) / (2.0 * gain))[:, None, None]
            noise = torch.complex(torch.randn(win.shape, generator=dev_g, device=dev) * sigma,
                                  torch.randn(win.shape, generator=dev_g, device=dev) * sigma)
            noisy = apply_sensor_function(win + noise, self.sensor, rr, xr)
            noisy = noisy[:, m:m + s1, m:m + s2]
            # (3) take the noisy shadows back into the original background
            for k in range(t):
                b, r, c = bidx[k], rows[k], cols[k]
                region = out[b, r:r + s1, c:c + s2]
                out[b, r:r + s1, c:c + s2] = torch.where(sh[k], noisy[k], region)
            # (4) sensor function on the targets, added
            rendered = apply_sensor_function(sig, self.sensor, rr, xr)
            for k in range(t):
                b, r, c = bidx[k], rows[k], cols[k]
                out[b, r:r + s1, c:c + s2] += rendered[k]
            # visible masks: support + rendered energy above the local clutter, near the support
            clutter = bgwin_orig.abs().reshape(t, -1).median(dim=1).values[:, None, None]
            energy = rendered.abs() > cfg.box_energy_factor * clutter
            d = cfg.box_dilate_px
            near = sup if d == 0 else (F.max_pool2d(sup[:, None].float(), 2 * d + 1, 1, d)[:, 0]
                                       > 0.5)
            if cfg.box_mode == "support":
                visible = sup
            elif cfg.box_mode == "energy":
                visible = energy & near
            else:
                visible = sup | (energy & near)
        # (5) quarter-power LUT (per-image ref) or the randomised power-law rendering
        img_c = out[:, pad:pad + n, pad:pad + n]
        mag = torch.view_as_real(img_c).square().sum(-1).sqrt_()  # |s|, faster than abs()
        check_batch_statistics(mag, bg_median)
        images = self._render(mag, draws)
        shadows = shadow_union[:, pad:pad + n, pad:pad + n]

        samples = []
        per_image: list[list[int]] = [[] for _ in draws]
        for k, (b, _) in enumerate(objs):
            per_image[b].append(k)
        vis_cpu = visible.cpu() if t else None
        for b, dr in enumerate(draws):
            boxes, oboxes, masks = [], [], []
            for k in per_image[b]:
                o = objs[k][1]
                full = torch.zeros((n + 2 * pad, n + 2 * pad), dtype=torch.bool)
                full[rows[k]:rows[k] + s1, cols[k]:cols[k] + s2] = vis_cpu[k]
                full = full[pad:pad + n, pad:pad + n]
                box_arr = mask_box(full.numpy(), True)
                if box_arr is None:  # cannot happen for a support inside the image; be explicit
                    raise PlacementError(f"object {o['record']} has no visible pixel")
                box = [float(v) for v in box_arr]
                o["box"] = box
                o["dropped_points"] = int(n_drop[k])
                if o["is_target"]:
                    boxes.append(box)
                    if cfg.return_masks:
                        masks.append(full)
                else:
                    oboxes.append(box)
            name = getattr(self.backgrounds, "names", None)
            meta = {"background": dr["background"],
                    "background_name": name[dr["background"]] if name else str(dr["background"]),
                    "crop": dr["crop"], "lut_ref": dr["lut_ref"], "render": dr["render"],
                    "objects": dr["objects"]}
            samples.append(Sample(
                image=images[b],
                boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                labels=torch.ones(len(boxes), dtype=torch.int64),
                masks=(torch.stack(masks) if masks else torch.zeros((0, n, n), dtype=torch.bool))
                if cfg.return_masks else None,
                ood_boxes=torch.tensor(oboxes, dtype=torch.float32).reshape(-1, 4),
                shadow=shadows[b], meta=meta,
                complex_image=img_c[b] if keep_complex else None))
        return samples
