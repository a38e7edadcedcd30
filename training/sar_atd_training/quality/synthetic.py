"""Box definitions of the synthetic training targets, measured like the real SARBake boxes.

The overlay pipeline can box a synthetic target three ways (``OverlayConfig.box_mode``):
``support`` (the laid-over geometric footprint from the bank: the synthetic counterpart of a
SARBake target mask, which is also a geometric footprint), ``energy`` (rendered amplitude
above ``box_energy_factor`` times the local clutter, near the support) and ``union`` (both:
the footprint plus the sensor's blur around bright scatterers). Because box mode draws no
random number, the same generator seed gives the same images under every mode, so the three
definitions can be compared target by target, together with the returns box measured on
the rendered 8-bit image exactly as on the real chips
(:func:`~sar_atd_training.quality.boxes.returns_box` with the support as target mask).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sar_atd.sar.chips import MASK_SHADOW, MASK_TARGET
from sar_atd_training.quality.boxes import edge_errors, returns_box

__all__ = ["SyntheticBoxes", "sarbake_like_mask", "measure_synthetic_boxes"]

BOX_MODES = ("support", "energy", "union")


@dataclass
class SyntheticBoxes:
    """Boxes of the same synthetic targets under each definition: float64 (T, 4) xyxy each.

    ``returns`` rows are NaN where nothing rose above the threshold.
    """

    support: np.ndarray
    energy: np.ndarray
    union: np.ndarray
    returns: np.ndarray

    def side_offsets(self, mode: str, ref: str = "support") -> np.ndarray:
        """(T, 4) signed outward side offsets (far, near, left, right) of ``mode`` vs ``ref``."""
        a, b = getattr(self, mode), getattr(self, ref)
        ok = np.isfinite(a).all(1) & np.isfinite(b).all(1)
        return edge_errors(a[ok], b[ok])


def sarbake_like_mask(target: np.ndarray, shadow: np.ndarray) -> np.ndarray:
    """uint8 (H, W) mask in SARBake values: 2 where ``shadow``, 1 where ``target``, else 0."""
    m = np.zeros(np.shape(target), np.uint8)
    m[np.asarray(shadow, bool)] = MASK_SHADOW
    m[np.asarray(target, bool)] = MASK_TARGET
    return m


def measure_synthetic_boxes(config: Any, bank: Any, backgrounds: Any, n_images: int,
                            seed: int = 0, batch_size: int = 4, returns_factor: float = 3.0
                            ) -> SyntheticBoxes:
    """Generate ``n_images`` overlay images once per box mode and collect every target's boxes.

    Args:
        config: :class:`~sar_atd_training.overlay.OverlayConfig` (box mode is overridden;
            masks are returned).
        bank: signature bank.
        backgrounds: background set.
        n_images: images per mode.
        seed: generator seed (the same for every mode, so the images are identical).
        batch_size: images per pipeline call.
        returns_factor: threshold of the returns box (multiple of the clutter median).
    """
    from sar_atd_training.overlay import OverlayPipeline

    boxes: dict[str, list[np.ndarray]] = {m: [] for m in BOX_MODES}
    rets: list[np.ndarray] = []
    for mode in BOX_MODES:
        cfg = dataclasses.replace(config, box_mode=mode, return_masks=True)
        pipe = OverlayPipeline(cfg, bank, backgrounds)
        g = torch.Generator().manual_seed(seed)
        done = 0
        while done < n_images:
            for s in pipe.generate(min(batch_size, n_images - done), g):
                done += 1
                boxes[mode].extend(s.boxes.numpy().astype(np.float64))
                if mode != "support":
                    continue
                image, shadow = s.image.numpy(), s.shadow.numpy()
                for k in range(len(s.boxes)):
                    m = sarbake_like_mask(s.masks[k].numpy(), shadow)
                    others = s.masks.numpy().any(0) & ~s.masks[k].numpy()
                    m[others] = MASK_SHADOW  # other targets are neither clutter nor this one
                    r = returns_box(image, m, returns_factor)
                    rets.append(np.full(4, np.nan) if r is None else r.astype(np.float64))
    n = {m: len(v) for m, v in boxes.items()}
    if len(set(n.values())) != 1:
        raise RuntimeError(f"box modes produced different target counts {n}: the images "
                           "are not identical across modes")
    return SyntheticBoxes(*(np.asarray(boxes[m]).reshape(-1, 4) for m in BOX_MODES),
                          returns=np.asarray(rets).reshape(-1, 4))
