"""Input transform of every SAR-ATD detector: native pixel scale, single-channel SAR input.

torchvision's :class:`~torchvision.models.detection.transform.GeneralizedRCNNTransform`
resizes every image so its short side is ``min_size`` (800 by default). SAR pixels have a
physical size (about 0.2 m here), and a vehicle's size in pixels is information the detector
should use, so :class:`NativeScaleTransform` never resizes: images are only normalised and
zero-padded (bottom/right) to a multiple of ``size_divisible`` for batching; boxes come back
in the input image's own pixel coordinates whatever its size.

Input convention (documented once, used by the trainer, the backends and the ONNX export):
each image is a float32 tensor (1, H, W) in **8-bit units** (the uint8 quarter-power-LUT image
cast to float, values in [0, 255]). The transform divides by 255, replicates the single
channel to 3 channels (so torchvision/ImageNet backbone weights load unchanged) and applies
fixed per-channel ``image_mean``/``image_std`` (ImageNet values by default). Keeping the input
in 8-bit units lets the FGSM attack use an epsilon in 8-bit grey levels directly.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

# ImageNet statistics (grey image replicated to RGB): any fixed values work from scratch,
# these also suit ImageNet-initialised backbones.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class NativeScaleTransform(GeneralizedRCNNTransform):
    """``GeneralizedRCNNTransform`` that keeps the native pixel scale (no resize).

    Args:
        image_mean: 3 per-channel means applied after /255 and grey-to-RGB replication.
        image_std: 3 per-channel standard deviations.
        size_divisible: padding multiple of the batched tensor (32 for FPN backbones).
    """

    def __init__(self, image_mean: tuple[float, ...] = IMAGENET_MEAN,
                 image_std: tuple[float, ...] = IMAGENET_STD, size_divisible: int = 32) -> None:
        # min_size/max_size are unused (resize is the identity) but required by the parent.
        super().__init__(min_size=640, max_size=100000, image_mean=list(image_mean),
                         image_std=list(image_std), size_divisible=size_divisible)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """(1, H, W) or (3, H, W) float in [0, 255] -> (3, H, W) normalised float."""
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"expected an image tensor (1, H, W) in 8-bit units, "
                             f"got shape {tuple(image.shape)}")
        if not image.is_floating_point():
            raise TypeError(f"expected a float image in 8-bit units, got {image.dtype}")
        x = image / 255.0
        if x.shape[0] == 1:
            x = x.expand(3, -1, -1)
        mean = torch.as_tensor(self.image_mean, dtype=x.dtype, device=x.device)
        std = torch.as_tensor(self.image_std, dtype=x.dtype, device=x.device)
        return (x - mean[:, None, None]) / std[:, None, None]

    def resize(self, image: torch.Tensor,
               target: dict[str, Any] | None = None) -> tuple[torch.Tensor, Any]:
        """Identity: SAR images keep their native pixel scale."""
        return image, target

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(native scale, /255, grey->RGB, "
                f"mean={self.image_mean}, std={self.image_std}, "
                f"size_divisible={self.size_divisible})")
