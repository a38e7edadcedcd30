"""The paper's quarter-power magnitude LUT: complex/amplitude image <-> 8-bit image.

``out = 255 * clip((|s|^2)^(1/4) / ref, 0, 1)``, i.e. the square root of the amplitude,
scaled so that amplitude ``ref**2`` maps to 255. The same code renders training images,
test sets and the tiler's output.
"""

from __future__ import annotations

from typing import Any

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


def quarter_power_lut(image: Any, ref: Any = DEFAULT_LUT_REF) -> Any:
    """Render a complex or amplitude image to uint8 with the quarter-power LUT.

    Args:
        image: complex or real (..., H, W), numpy or torch. NaNs render as 0.
        ref: scale (sqrt of the amplitude that maps to 255); float or tensor broadcastable
            to the leading dims.

    Returns:
        uint8 array/tensor of the same shape.
    """
    x, was_np = to_torch(image)
    mag = x.abs() if torch.is_complex(x) else x.abs()
    mag = mag.to(torch.float32)
    r = _check_ref(ref, mag.device)
    while r.ndim and r.ndim < mag.ndim:
        r = r[..., None]
    v = torch.sqrt(mag) / r
    v = torch.nan_to_num(v, nan=0.0, posinf=1.0)
    out = torch.round(255.0 * v.clamp(0.0, 1.0)).to(torch.uint8)
    return back(out, was_np)


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
