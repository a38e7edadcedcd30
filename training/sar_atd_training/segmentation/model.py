"""A small U-Net in the spirit of nnU-Net: background / target / shadow on SAR chips.

Encoder-decoder with two 3x3 convolutions per stage, instance normalisation and leaky ReLU
(nnU-Net's defaults), strided-convolution downsampling, transposed-convolution upsampling and
skip connections; optional deep-supervision heads on the coarser decoder stages (used by the
loss during training, ignored at inference). Fully convolutional: chips of any size are padded
to a multiple of ``2 ** (len(channels) - 1)`` by reflection and the prediction cropped back.

Input normalisation (inside the model, so a saved model is self-contained): the uint8 image is
taken as grey levels and z-scored per image, as nnU-Net does for non-CT modalities; this makes
the model indifferent to the unknown gain of an archive's 8-bit rendering.

Sliding-window inference: instance normalisation takes its statistics over the whole feature
map, so the share of the image a target covers changes the features. A model trained on
128 px vignettes over-segments targets on larger chips (on 1,000 real MSTAR chips, target IoU
0.47 on the 193 px ZIL131 chips against 0.57 on their 128 px centre crops). Images larger than
the training size are therefore predicted in windows of that size (half-window stride, the
probabilities averaged), as nnU-Net does; the window is stored in the checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sar_atd.errors import SarAtdError

CLASS_NAMES = ("background", "target", "shadow")
"""Label values 0, 1, 2 (the SARBake convention: 0 clutter, 1 target, 2 shadow)."""
CHECKPOINT_FORMAT = "sar-atd-segmenter"


class SegmenterLoadError(SarAtdError, ValueError):
    """A segmenter file is missing, unreadable or not a segmenter checkpoint."""


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of the U-Net.

    Attributes:
        channels: feature channels per resolution stage (the depth is its length).
        deep_supervision: extra 1x1 heads on the two coarsest decoder outputs.
        negative_slope: leaky-ReLU slope.
    """

    channels: tuple[int, ...] = (16, 32, 64, 128)
    deep_supervision: bool = True
    negative_slope: float = 0.01

    def __post_init__(self) -> None:
        if len(self.channels) < 2 or any(c < 1 for c in self.channels):
            raise ValueError(f"channels must hold >= 2 positive widths, got {self.channels}")


def _block(cin: int, cout: int, stride: int, slope: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1),
        nn.InstanceNorm2d(cout, affine=True), nn.LeakyReLU(slope, inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.InstanceNorm2d(cout, affine=True), nn.LeakyReLU(slope, inplace=True))


class UNet(nn.Module):
    """U-Net over uint8-valued grey images.

    ``forward(x)`` takes float (B, 1, H, W) grey levels (0-255) with H, W multiples of
    :attr:`stride` and returns logits (B, 3, H, W); in training mode with deep supervision a
    list ``[full, half, quarter]`` of logits at decreasing resolution.
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or UNetConfig()
        ch, s = self.config.channels, self.config.negative_slope
        self.stride = 2 ** (len(ch) - 1)
        self.enc = nn.ModuleList([_block(1, ch[0], 1, s)] +
                                 [_block(ch[i - 1], ch[i], 2, s) for i in range(1, len(ch))])
        self.up = nn.ModuleList([nn.ConvTranspose2d(ch[i], ch[i - 1], 2, stride=2)
                                 for i in range(len(ch) - 1, 0, -1)])
        self.dec = nn.ModuleList([_block(2 * ch[i - 1], ch[i - 1], 1, s)
                                  for i in range(len(ch) - 1, 0, -1)])
        self.heads = nn.ModuleList([nn.Conv2d(ch[i - 1], len(CLASS_NAMES), 1)
                                    for i in range(len(ch) - 1, 0, -1)])

    @staticmethod
    def normalise(x: torch.Tensor) -> torch.Tensor:
        """Per-image z-score of grey levels (B, 1, H, W)."""
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True).clamp_min(1.0)
        return (x - mean) / std

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        h = self.normalise(x)
        skips = []
        for enc in self.enc:
            h = enc(h)
            skips.append(h)
        outs = []
        for j, (up, dec, head) in enumerate(zip(self.up, self.dec, self.heads)):
            h = dec(torch.cat([up(h), skips[-2 - j]], 1))
            outs.append(head(h))
        if self.training and self.config.deep_supervision:
            return outs[::-1][:3]  # full resolution first
        return outs[-1]


def pad_to_multiple(x: torch.Tensor, m: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad (B, C, H, W) at the bottom/right to multiples of ``m``; returns (x, (H, W))."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


class Segmenter:
    """A trained U-Net ready for inference on uint8 chips.

    Args:
        model: the network (set to eval mode).
        meta: checkpoint metadata (config, training record).
        device: where inference runs.
        window: side (pixels) of the sliding window for images larger than it, normally
            the training vignette size; None or 0 predicts every image whole.
    """

    def __init__(self, model: UNet, meta: dict[str, Any] | None = None,
                 device: str | torch.device = "cpu", window: int | None = None) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.meta = meta or {}
        if window is not None and window < 0:
            raise ValueError(f"window must be >= 0, got {window}")
        self.window = int(window) if window else None

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu",
             window: int | None = -1) -> Segmenter:
        """Load a segmenter written by :func:`save_segmenter`.

        ``window`` -1 uses the checkpoint's window (its training vignette size), 0 or None
        predicts images whole, N > 0 uses windows of N pixels.

        Raises:
            SegmenterLoadError: missing file, not a segmenter checkpoint, bad weights.
        """
        path = Path(path)
        if not path.is_file():
            raise SegmenterLoadError(f"segmenter model not found: {path}")
        try:
            ck = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many types for corrupt files
            raise SegmenterLoadError(f"cannot read segmenter {path}: {err}") from None
        if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
            raise SegmenterLoadError(f"{path} is not a SAR-ATD segmenter checkpoint")
        try:
            cfg = UNetConfig(**{k: tuple(v) if isinstance(v, list) else v
                                for k, v in ck["unet"].items()})
            model = UNet(cfg)
            model.load_state_dict({k: v.float() for k, v in ck["state_dict"].items()})
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise SegmenterLoadError(f"{path}: bad segmenter weights ({err})") from None
        meta = ck.get("meta", {})
        if window == -1:
            window = ck.get("window") or _training_size(meta)
        return cls(model, meta, device, window)

    @torch.inference_mode()
    def predict_proba(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Class probabilities float32 (3, H, W) for each uint8 (H, W) image."""
        out = []
        for im in images:
            im = np.asarray(im)
            if im.ndim != 2:
                raise ValueError(f"expected a 2-D grey image, got shape {im.shape}")
            x = torch.from_numpy(im.astype(np.float32))[None, None].to(self.device)
            win = self.window
            if win and (x.shape[-2] > win or x.shape[-1] > win):
                out.append(self._windowed(x, win).cpu().numpy())
            else:
                out.append(self._whole(x)[0].cpu().numpy())
        return out

    def _whole(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities (B, 3, H, W) of grey images (B, 1, H, W) predicted whole."""
        x, (h, w) = pad_to_multiple(x, self.model.stride)
        return torch.softmax(self.model(x), 1)[:, :, :h, :w]

    def _windowed(self, x: torch.Tensor, win: int) -> torch.Tensor:
        """Probabilities (3, H, W) of one image (1, 1, H, W): windows of ``win`` pixels
        (fewer along a side shorter than ``win``) at a stride of ``win // 2``, the last one
        flush with the border, averaged where they overlap."""
        h, w = x.shape[-2:]
        acc = torch.zeros((len(CLASS_NAMES), h, w), device=x.device)
        cnt = torch.zeros((h, w), device=x.device)
        for y0 in _starts(h, win):
            for x0 in _starts(w, win):
                acc[:, y0:y0 + win, x0:x0 + win] += self._whole(
                    x[:, :, y0:y0 + win, x0:x0 + win])[0]
                cnt[y0:y0 + win, x0:x0 + win] += 1
        return acc / cnt

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Label maps uint8 (H, W) in {0 background, 1 target, 2 shadow}."""
        return [p.argmax(0).astype(np.uint8) for p in self.predict_proba(images)]


def _starts(n: int, win: int) -> list[int]:
    """Window origins along a side of ``n`` pixels: stride ``win // 2``, last at ``n - win``."""
    if n <= win:
        return [0]
    starts = list(range(0, n - win + 1, max(1, win // 2)))
    if starts[-1] != n - win:
        starts.append(n - win)
    return starts


def _training_size(meta: dict[str, Any]) -> int | None:
    """Vignette size of the recipe recorded in checkpoint metadata, if any."""
    for rec in (meta.get("recipe"), (meta.get("record") or {}).get("recipe")):
        try:
            return int(rec["data"]["overlay"]["image_size"])
        except (KeyError, TypeError, ValueError):
            continue
    return None


def save_segmenter(path: str | Path, model: UNet, meta: dict[str, Any],
                   window: int | None = None) -> Path:
    """Write a segmenter checkpoint atomically (weights, architecture, metadata, and the
    sliding-window size for inference: normally the training vignette size)."""
    import json

    from sar_atd.atomic import atomic_path

    # plain JSON types only, so the file loads with torch.load(weights_only=True)
    meta = json.loads(json.dumps(meta, default=str))
    ck = {"format": CHECKPOINT_FORMAT,
          "unet": {"channels": list(model.config.channels),
                   "deep_supervision": model.config.deep_supervision,
                   "negative_slope": model.config.negative_slope},
          "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
          "meta": meta, "window": int(window) if window else None}
    with atomic_path(path) as tmp:
        torch.save(ck, tmp)
    return Path(path)
