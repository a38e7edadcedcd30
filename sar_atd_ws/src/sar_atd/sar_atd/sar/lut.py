"""The paper's quarter-power magnitude LUT: complex/amplitude image <-> 8-bit image.

``out = 255 * clip((|s|^2)^(1/4) / ref, 0, 1)``, i.e. the square root of the amplitude,
scaled so that amplitude ``ref**2`` maps to 255. The same code renders training images,
test sets and the tiler's output.

:func:`power_law_render` is the general form (any amplitude exponent ``gamma``, a black
point): ``out = 255 * clip((|s|^gamma - black) / (ref - black), 0, 1)``. ``gamma = 0.5`` with
``black = 0`` is the quarter-power LUT (bit for bit: :func:`quarter_power_lut` calls it);
``gamma = 1`` is a linear magnitude display such as the MSTAR JPEG chips'. The overlay
pipeline draws ``gamma``, ``ref`` and ``black`` per image to randomise the rendering
(domain randomisation against unknown 8-bit renderings of real archives).

:func:`histogram_match_lut` maps an 8-bit image onto a reference grey-level distribution
(test-time rendering normalisation; reference files: :func:`write_match_reference`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sar_atd.sar._xp import back, to_torch

DEFAULT_LUT_REF = 1.0
"""Default ``ref``: calibrated amplitude 1.0 (0 dBsm per pixel) maps to 255."""


def _check_ref(ref: Any, device: torch.device) -> torch.Tensor:
    """``ref`` as a float32 tensor; raises ValueError unless finite and > 0 everywhere."""
    r = torch.as_tensor(ref, dtype=torch.float32, device=device)
    if r.numel() == 0 or torch.any(~torch.isfinite(r) | (r <= 0)):
        raise ValueError(f"ref must be finite and > 0, got {ref}")
    return r


def _lead(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims so a per-image parameter broadcasts over (..., H, W)."""
    while t.ndim and t.ndim < ndim:
        t = t[..., None]
    return t


def power_law_render(image: Any, gamma: Any = 0.5, ref: Any = DEFAULT_LUT_REF,
                     black: Any = None) -> Any:
    """Render a complex or amplitude image to uint8 with a power law of the amplitude.

    ``out = round(255 * clip((|s|^gamma - black) / (ref - black), 0, 1))``.

    ``ref`` and ``black`` live in the *rendered* domain ``|s|^gamma``: the amplitude shown as
    255 is ``ref ** (1 / gamma)`` and the one shown as 0 is ``black ** (1 / gamma)``. With
    ``gamma = 0.5`` and no black point this is exactly :func:`quarter_power_lut` (same ``ref``
    convention: the square root of the amplitude mapped to 255), with ``gamma = 1`` a linear
    magnitude display.

    Args:
        image: complex or real (..., H, W), numpy or torch; real values are taken as
            amplitudes (their absolute value). NaNs render as 0, +inf as 255.
        gamma: amplitude exponent (> 0, finite); float or per-image tensor/array broadcastable
            to the leading dims (e.g. (B,) for a (B, H, W) batch).
        ref: rendered-domain white point (> 0, finite, > ``black``); float or per-image.
        black: rendered-domain black point (>= 0, finite) or None (no black point, i.e. 0);
            float or per-image.

    Returns:
        uint8 array/tensor of the image's shape (numpy in -> numpy out).

    Raises:
        ValueError: non-finite or non-positive ``gamma``/``ref``, negative or non-finite
            ``black``, or ``black >= ref``.
    """
    x, was_np = to_torch(image)
    mag = x.abs().to(torch.float32)
    g_t = torch.as_tensor(gamma, dtype=torch.float32, device=mag.device)
    if g_t.numel() == 0 or torch.any(~torch.isfinite(g_t) | (g_t <= 0)):
        raise ValueError(f"gamma must be finite and > 0, got {gamma}")
    r = _lead(_check_ref(ref, mag.device), mag.ndim)
    if g_t.ndim == 0 and float(g_t) == 0.5:  # the quarter-power LUT (bit for bit)
        p = torch.sqrt(mag)
    elif g_t.ndim == 0 and float(g_t) == 1.0:
        p = mag
    else:
        g_t = _lead(g_t, mag.ndim)
        p = torch.where(g_t == 0.5, torch.sqrt(mag),
                        torch.where(g_t == 1.0, mag, mag.pow(g_t)))
    if black is None:
        v = p / r
    else:
        b = torch.as_tensor(black, dtype=torch.float32, device=mag.device)
        if b.numel() == 0 or torch.any(~torch.isfinite(b) | (b < 0)):
            raise ValueError(f"black must be finite and >= 0, got {black}")
        b = _lead(b, mag.ndim)
        if torch.any(b >= r):
            raise ValueError(f"black ({black}) must be < ref ({ref})")
        v = (p - b) / (r - b)
    v = torch.nan_to_num(v, nan=0.0, posinf=1.0)
    out = torch.round(255.0 * v.clamp(0.0, 1.0)).to(torch.uint8)
    return back(out, was_np)


def quarter_power_lut(image: Any, ref: Any = DEFAULT_LUT_REF) -> Any:
    """Render a complex or amplitude image to uint8 with the quarter-power LUT.

    :func:`power_law_render` with ``gamma = 0.5`` and no black point.

    Args:
        image: complex or real (..., H, W), numpy or torch. NaNs render as 0.
        ref: scale (sqrt of the amplitude that maps to 255); float or tensor broadcastable
            to the leading dims.

    Returns:
        uint8 array/tensor of the same shape.
    """
    return power_law_render(image, 0.5, ref)


def inverse_quarter_power_lut(image_u8: Any, ref: Any = DEFAULT_LUT_REF) -> Any:
    """Amplitude (float32) from an 8-bit quarter-power image: ``(v/255 * ref)^2``."""
    x, was_np = to_torch(image_u8)
    if x.dtype != torch.uint8:
        raise ValueError(f"expected a uint8 image, got dtype {x.dtype}")
    r = _check_ref(ref, x.device)
    while r.ndim and r.ndim < x.ndim:
        r = r[..., None]
    out = (x.to(torch.float32) / 255.0 * r) ** 2
    return back(out, was_np)


MATCH_REFERENCE_KIND = "sar_atd.match_reference"
"""``kind`` of a reference-quantiles JSON file (:func:`write_match_reference`)."""


def check_match_quantiles(ref_q: Any) -> np.ndarray:
    """``ref_q`` as float64 (K,); raises ValueError unless K >= 2, finite, non-decreasing
    and inside [0, 255]."""
    q = np.asarray(ref_q, np.float64).ravel()
    if (q.size < 2 or not np.all(np.isfinite(q)) or np.any(np.diff(q) < 0)
            or q[0] < 0 or q[-1] > 255):
        raise ValueError("reference quantiles must be >= 2 finite, non-decreasing grey "
                         "levels in [0, 255]")
    return q


def histogram_match_lut(hist: Any, ref_q: Any, keep_extremes: bool = True) -> np.ndarray:
    """Grey-level LUT mapping an 8-bit image with histogram ``hist`` onto a reference look.

    Every global monotonic rendering of the same amplitudes has the same pixel ranks, so
    mapping each grey level's mid-rank (ties such as saturated pixels take the middle of
    their rank range) to the reference quantile at that rank undoes the rendering, up to
    quantisation and what clipping destroyed. With ``keep_extremes`` grey levels 0 and 255
    stay where they are (clipped pixels carry no rank information inside their tie; a
    saturated target stays the brightest thing).

    Args:
        hist: (256,) pixel counts per grey level (not all zero).
        ref_q: reference grey-level quantiles at probabilities ``(k + 0.5) / K``, (K,).
        keep_extremes: keep grey levels 0 and 255.

    Returns:
        uint8 (256,) LUT: ``out = lut[image]``.

    Raises:
        ValueError: a bad histogram or bad quantiles.
    """
    q = check_match_quantiles(ref_q)
    h = np.asarray(hist, np.float64).ravel()
    if h.size != 256 or np.any(h < 0) or h.sum() <= 0:
        raise ValueError("hist must be 256 non-negative counts, not all zero")
    upto = np.cumsum(h)
    mid = (upto - h / 2) / upto[-1]  # mid-rank probability of each grey level
    probs = (np.arange(q.size) + 0.5) / q.size
    lut = np.clip(np.round(np.interp(mid, probs, q)), 0, 255).astype(np.uint8)
    if keep_extremes:
        lut[0], lut[255] = 0, 255
    return lut


def write_match_reference(path: str | Path, quantiles: Any, source: str) -> Path:
    """Write reference quantiles (:func:`histogram_match_lut`) as JSON, atomically."""
    from sar_atd.atomic import atomic_write_json

    q = check_match_quantiles(quantiles)
    return atomic_write_json(path, {"kind": MATCH_REFERENCE_KIND, "source": str(source),
                                    "quantiles": [round(float(v), 4) for v in q]})


def read_match_reference(path: str | Path) -> np.ndarray:
    """Reference quantiles, float64 (K,), from a :func:`write_match_reference` file.

    Raises:
        ValueError: unreadable file, not such a JSON file, or bad quantiles (one line
            naming the file).
    """
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read match reference {path}: {err}") from None
    if not isinstance(d, dict) or d.get("kind") != MATCH_REFERENCE_KIND:
        raise ValueError(f"{path} is not a match reference file (need JSON with kind "
                         f"{MATCH_REFERENCE_KIND!r} and quantiles)")
    try:
        return check_match_quantiles(d.get("quantiles"))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None
