"""Synthetic segmentation vignettes: simulator signatures + shadows in generated clutter.

Each vignette is one target placed by the overlay pipeline (paper section II.B, the same
physics and the same rendering randomisation as the detector's training images) in an
``image_size`` crop of a clutter scene. Labels follow the SARBake convention (0 clutter,
1 target, 2 shadow): target = the placed target's laid-over footprint (the bank's support
mask; the pipeline's ``box_mode: support`` returns it as the target mask), shadow = the
placed shadow mask minus the target (SARBake labels overlapping pixels target).

Extra augmentations that the detector data does not need but real chip archives do:
cross-range mirroring (a horizontal flip: the radar stays at the bottom, shadows still
point up) and JPEG compression at a random quality (the MSTAR chips are JPEG files).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from sar_atd.errors import ConfigError
from sar_atd_training.overlay.pipeline import OverlayConfig

log = logging.getLogger(__name__)


def _default_overlay() -> OverlayConfig:
    return OverlayConfig(image_size=128, targets_per_image=(1, 1), box_mode="support")


@dataclass(frozen=True)
class VignetteConfig:
    """Where synthetic vignettes come from and how they are augmented.

    Attributes:
        bank: signature bank folder (``sar-atd simulate``); None simulates a small bank of
            4 classes x 3 azimuths on the fly (tests, smoke runs).
        generated_backgrounds: clutter scenes generated when ``backgrounds`` is None.
        background_seed: seed of the generated scenes.
        background_size: (height, width) of each generated scene in pixels (vignettes are
            small crops: scenes smaller than the detector's are enough and much faster).
        backgrounds: folder of background files (MSTAR clutter, images, .npy) or None.
        vignettes: size of the pre-generated training pool (drawn once, reused with
            augmentation).
        generation_batch: vignettes per overlay-pipeline call.
        hflip_prob: probability of a cross-range mirror.
        jpeg_prob: probability of a JPEG round trip.
        jpeg_quality: (min, max) JPEG quality.
        overlay: overlay-pipeline randomisation; ``box_mode`` must be ``support`` (the label
            of the target class) and ``targets_per_image`` is normally (1, 1).
    """

    bank: str | None = None
    generated_backgrounds: int = 8
    background_seed: int = 0
    background_size: tuple[int, int] = (512, 512)
    backgrounds: str | None = None
    vignettes: int = 2048
    generation_batch: int = 32
    hflip_prob: float = 0.5
    jpeg_prob: float = 0.5
    jpeg_quality: tuple[int, int] = (60, 95)
    overlay: OverlayConfig = field(default_factory=_default_overlay)

    def __post_init__(self) -> None:
        if self.overlay.box_mode != "support":
            raise ConfigError("data.overlay.box_mode must be 'support' for segmentation "
                              f"labels (the target footprint), got {self.overlay.box_mode!r}")
        if self.vignettes < 1 or self.generation_batch < 1:
            raise ConfigError("data.vignettes and data.generation_batch must be >= 1")
        if not (0 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100):
            raise ConfigError(f"data.jpeg_quality must be 0 <= min <= max <= 100, got "
                              f"{self.jpeg_quality}")


def labels_from_sample(target_masks: torch.Tensor, shadow: torch.Tensor) -> np.ndarray:
    """SARBake-style label map uint8 (H, W) from target masks (N, H, W) and a shadow (H, W)."""
    tgt = target_masks.any(0).cpu().numpy() if target_masks.numel() else np.zeros(
        tuple(shadow.shape), bool)
    lab = np.zeros(tgt.shape, np.uint8)
    lab[shadow.cpu().numpy()] = 2
    lab[tgt] = 1
    return lab


def build_pipeline(cfg: VignetteConfig, device: str = "cpu"):  # noqa: ANN201 - lazy import
    """The overlay pipeline that makes the vignettes (bank + backgrounds from ``cfg``)."""
    from sar_atd_training.overlay import OverlayPipeline

    if cfg.bank:
        from sar_atd_training.simulator.bank import SignatureBank

        bank = SignatureBank.open(cfg.bank, verify="size")
    else:
        from sar_atd_training.overlay import toybank

        bank = toybank.simulated_bank()
    backgrounds = background_set(cfg.backgrounds, cfg.generated_backgrounds,
                                 cfg.background_size, cfg.background_seed).materialise()
    return OverlayPipeline(cfg.overlay, bank, backgrounds, device=device)


def background_set(folder: str | None, n: int, size: tuple[int, int], seed: int):  # noqa: ANN201
    """Backgrounds from ``folder``, or ``n`` generated clutter scenes of ``size`` (H, W)
    from seeds ``seed, seed + 1, ...`` (generated on use)."""
    from sar_atd_training.clutter import BackgroundSet, ClutterConfig

    if folder:
        return BackgroundSet.from_folder(folder)
    return BackgroundSet.generated(n, ClutterConfig(height=size[0], width=size[1]), seed=seed)


def generate_vignettes(cfg: VignetteConfig, n: int, seed: int, pipeline=None,  # noqa: ANN001
                       progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``n`` vignettes: images uint8 (n, S, S) and labels uint8 (n, S, S), deterministic."""
    from tqdm import tqdm

    pipe = pipeline if pipeline is not None else build_pipeline(cfg)
    g = torch.Generator().manual_seed(int(seed))
    ims, labs = [], []
    with tqdm(total=n, desc="vignettes", disable=not progress, leave=False) as bar:
        while len(ims) < n:
            for s in pipe.generate(min(cfg.generation_batch, n - len(ims)), g):
                ims.append(s.image.cpu().numpy())
                labs.append(labels_from_sample(s.masks, s.shadow))
            bar.update(len(ims) - bar.n)
    return np.stack(ims), np.stack(labs)


def augment(images: np.ndarray, labels: np.ndarray, cfg: VignetteConfig,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cross-range mirror and JPEG round trip of a batch (B, S, S) uint8 (copies)."""
    images, labels = images.copy(), labels.copy()
    for b in range(images.shape[0]):
        if rng.random() < cfg.hflip_prob:
            images[b] = images[b, :, ::-1]
            labels[b] = labels[b, :, ::-1]
        if rng.random() < cfg.jpeg_prob:
            q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(images[b]),
                                   [cv2.IMWRITE_JPEG_QUALITY, q])
            if ok:
                images[b] = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return images, labels
