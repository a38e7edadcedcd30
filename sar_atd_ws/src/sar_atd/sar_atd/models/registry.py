"""Detector builders: an explicit registry of torchvision detection models for SAR vehicles.

All models share the SAR input convention of :mod:`sar_atd.models.transform` (float
(1, H, W) image in 8-bit units, native pixel scale, grey replicated to RGB) and one
foreground class: ``num_classes=2`` (index 0 background / unused, 1 "target"), the labels the
overlay dataset emits.

Anchors are sized for vehicles at about 0.2 m pixels: a 7 m x 3.5 m vehicle is about
35 x 17 px, SARBake boxes of MSTAR targets span roughly 15-60 px, so anchors run from 16 px
(finest level) to about 200 px (coarsest), far below torchvision's COCO defaults
(32-512 px at images resized to 800 px).

Weights start from scratch by default. ``backbone_weights=PATH`` loads a *local* torchvision
ImageNet classification state dict (e.g. ``vgg16-397923af.pth``, ``resnet50-0676ba61.pth``)
into the backbone; nothing is ever downloaded (no weights enums are passed to torchvision).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet18, resnet50, vgg16, vgg16_bn
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from sar_atd.errors import CheckpointError
from sar_atd.models.transform import IMAGENET_MEAN, IMAGENET_STD, NativeScaleTransform

log = logging.getLogger(__name__)

NUM_CLASSES = 2  # background + "target"

# Anchor sizes in pixels (native scale, 0.2 m pixels). FPN levels P3 (stride 8), P4 (16),
# P5 (32), P6 (64, max-pooled P5): base sizes 16/32/64/128 px x 3 octave scales.
_OCTAVES = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
FPN_ANCHOR_SIZES: tuple[tuple[int, ...], ...] = tuple(
    tuple(int(round(base * s)) for s in _OCTAVES) for base in (16, 32, 64, 128))
ASPECT_RATIOS = (0.5, 1.0, 2.0)
# Single stride-16 map of VGG16 (conv5_3): 16-128 px anchors.
VGG_ANCHOR_SIZES: tuple[tuple[int, ...], ...] = ((16, 24, 32, 48, 64, 96, 128),)

NORMS = ("bn", "frozen_bn", "gn")
# RetinaNet box-regression losses (torchvision): L1 / smooth L1 on the encoded offsets, or an
# overlap loss on the decoded boxes (GIoU, DIoU, CIoU) that rewards IoU directly.
BOX_LOSSES = ("l1", "smooth_l1", "giou", "diou", "ciou")


def _norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """Backbone normalisation: trainable BatchNorm (default from scratch), frozen BatchNorm
    (ImageNet-initialised backbones, as torchvision does) or GroupNorm(32) (from scratch with
    very small per-device batches)."""
    if norm == "bn":
        return nn.BatchNorm2d
    if norm == "frozen_bn":
        return FrozenBatchNorm2d
    if norm == "gn":
        return lambda c: nn.GroupNorm(32, c)
    raise ValueError(f"unknown norm {norm!r}; choices: {list(NORMS)}")


def load_backbone_weights(module: nn.Module, path: str | Path, *, prefix_filter: str = "",
                          allow_missing: tuple[str, ...] = ()) -> None:
    """Load a local torchvision classification state dict into ``module`` (no download).

    Args:
        module: the classification network (e.g. ``torchvision.models.resnet50()``).
        path: ``.pth``/``.pt`` file holding a state dict (or ``{"model": state_dict}``).
        prefix_filter: only keys starting with it are required (e.g. ``"features."``).
        allow_missing: key prefixes that may be absent (e.g. the classifier).

    Raises:
        CheckpointError: missing/corrupt file, or keys/shapes that do not match, naming
            the path.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"backbone weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a corrupt file
        raise CheckpointError(f"cannot read backbone weights {path}: {err}") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    own = module.state_dict()
    wanted = {k for k in own if k.startswith(prefix_filter)
              and not any(k.startswith(p) for p in allow_missing)
              and not k.endswith("num_batches_tracked")}
    missing = sorted(wanted - set(state))
    if missing:
        raise CheckpointError(f"{path}: backbone weights lack {len(missing)} key(s), e.g. "
                              f"{missing[:3]} (wrong architecture or norm layer?)")
    bad = [k for k in wanted if tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        raise CheckpointError(f"{path}: shape mismatch for {bad[:3]}")
    load = {k: v for k, v in state.items() if k in own}
    module.load_state_dict(load, strict=False)
    log.info("loaded %d backbone tensors from %s", len(load), path)


def _check_kwargs(cls: type, kw: dict[str, Any]) -> None:
    """torchvision's detectors swallow unknown keyword arguments: reject them here."""
    import inspect

    known = set(inspect.signature(cls).parameters) - {"self", "kwargs"}
    unknown = sorted(set(kw) - known)
    if unknown:
        raise TypeError(f"unknown argument(s) {unknown}")


def _common(kw: dict[str, Any]) -> dict[str, Any]:
    return dict(image_mean=list(kw.pop("image_mean", IMAGENET_MEAN)),
                image_std=list(kw.pop("image_std", IMAGENET_STD)))


def _install_transform(model: nn.Module, image_mean: list[float], image_std: list[float],
                       size_divisible: int) -> nn.Module:
    model.transform = NativeScaleTransform(tuple(image_mean), tuple(image_std), size_divisible)
    return model


def build_fasterrcnn_vgg16(*, num_classes: int = NUM_CLASSES,
                           backbone_weights: str | Path | None = None,
                           batch_norm: bool = False, score_thresh: float = 0.05,
                           nms_thresh: float = 0.5, detections_per_img: int = 100,
                           anchor_sizes: tuple[tuple[int, ...], ...] = VGG_ANCHOR_SIZES,
                           representation_size: int = 1024, **kw: Any) -> FasterRCNN:
    """Faster R-CNN on the VGG16 conv features (the paper's first model).

    Backbone: ``vgg16().features`` without its last max-pool (conv5_3, stride 16,
    512 channels). RPN with ``anchor_sizes`` x aspect ratios 0.5/1/2 on that single map,
    RoIAlign 7x7, a two-layer MLP box head of ``representation_size`` units (1024, lighter
    than VGG's 4096-unit classifier which is not reused). ``batch_norm=True`` uses
    ``vgg16_bn`` (easier to train from scratch). ``backbone_weights``: local
    ``vgg16``/``vgg16_bn`` ImageNet state dict. Extra keyword arguments go to
    :class:`torchvision.models.detection.FasterRCNN` (e.g. ``rpn_batch_size_per_image``).
    """
    common = _common(kw)
    _check_kwargs(FasterRCNN, kw)
    net = (vgg16_bn if batch_norm else vgg16)(weights=None)
    if backbone_weights is not None:
        load_backbone_weights(net, backbone_weights, prefix_filter="features.")
    features = net.features[:-1]
    features.out_channels = 512
    anchors = AnchorGenerator(sizes=tuple(tuple(s) for s in anchor_sizes),
                              aspect_ratios=(tuple(ASPECT_RATIOS),) * len(anchor_sizes))
    roi_pool = MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2)
    model = _fasterrcnn_with_head(features, num_classes, anchors, roi_pool, score_thresh,
                                  nms_thresh, detections_per_img, representation_size, kw)
    return _install_transform(model, common["image_mean"], common["image_std"], 32)


def _fasterrcnn_with_head(features: nn.Module, num_classes: int, anchors: AnchorGenerator,
                          roi_pool: MultiScaleRoIAlign, score_thresh: float, nms_thresh: float,
                          detections_per_img: int, representation_size: int,
                          kw: dict[str, Any]) -> FasterRCNN:
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead

    head = TwoMLPHead(512 * 7 * 7, representation_size)
    predictor = FastRCNNPredictor(representation_size, num_classes)
    return FasterRCNN(features, num_classes=None, rpn_anchor_generator=anchors,
                      box_roi_pool=roi_pool, box_head=head, box_predictor=predictor,
                      box_score_thresh=score_thresh, box_nms_thresh=nms_thresh,
                      box_detections_per_img=detections_per_img, **kw)


def _retinanet_resnet(arch: Callable[..., nn.Module], *, num_classes: int,
                      backbone_weights: str | Path | None, norm: str, fpn_channels: int,
                      head_norm: str, score_thresh: float, nms_thresh: float,
                      detections_per_img: int,
                      anchor_sizes: tuple[tuple[int, ...], ...], box_loss: str = "l1",
                      **kw: Any) -> RetinaNet:
    if box_loss not in BOX_LOSSES:
        raise ValueError(f"unknown box_loss {box_loss!r}; choices: {list(BOX_LOSSES)}")
    common = _common(kw)
    _check_kwargs(RetinaNet, kw)
    net = arch(weights=None, norm_layer=_norm_layer(norm))
    if backbone_weights is not None:
        load_backbone_weights(net, backbone_weights, allow_missing=("fc.",))
    expansion = 4 if arch is resnet50 else 1
    in_channels = [64 * expansion * 2 ** i for i in (1, 2, 3)]  # layer2..layer4
    backbone = BackboneWithFPN(net, return_layers={"layer2": "0", "layer3": "1", "layer4": "2"},
                               in_channels_list=in_channels, out_channels=fpn_channels,
                               extra_blocks=LastLevelMaxPool())
    if len(anchor_sizes) != 4:
        raise ValueError(f"RetinaNet here has 4 FPN levels (P3-P6); got {len(anchor_sizes)} "
                         f"anchor size tuples")
    anchors = AnchorGenerator(sizes=tuple(tuple(s) for s in anchor_sizes),
                              aspect_ratios=(tuple(ASPECT_RATIOS),) * len(anchor_sizes))
    if head_norm == "gn":
        groups = 32 if fpn_channels % 32 == 0 else 16
        head_norm_layer: Callable[[int], nn.Module] | None = partial(nn.GroupNorm, groups)
    elif head_norm == "none":
        head_norm_layer = None
    else:
        raise ValueError(f"unknown head_norm {head_norm!r}; choices: ['gn', 'none']")
    head = RetinaNetHead(fpn_channels, anchors.num_anchors_per_location()[0], num_classes,
                         norm_layer=head_norm_layer)
    head.regression_head._loss_type = box_loss  # torchvision's box-regression loss switch
    model = RetinaNet(backbone, num_classes=num_classes, anchor_generator=anchors, head=head,
                      score_thresh=score_thresh, nms_thresh=nms_thresh,
                      detections_per_img=detections_per_img, **kw)
    return _install_transform(model, common["image_mean"], common["image_std"], 32)


def build_retinanet_r50_fpn(*, num_classes: int = NUM_CLASSES,
                            backbone_weights: str | Path | None = None, norm: str = "bn",
                            fpn_channels: int = 256, head_norm: str = "gn",
                            score_thresh: float = 0.05, nms_thresh: float = 0.5,
                            detections_per_img: int = 100,
                            anchor_sizes: tuple[tuple[int, ...], ...] = FPN_ANCHOR_SIZES,
                            box_loss: str = "l1", **kw: Any) -> RetinaNet:
    """RetinaNet, ResNet50-FPN (the paper's second model).

    FPN on layer2-4 (P3-P5) plus a max-pooled P6, 256 channels; GroupNorm in the heads
    (torchvision's RetinaNet v2 choice, stable with small batches from scratch). ``norm``
    picks the backbone normalisation (``bn`` trainable BatchNorm, ``frozen_bn`` with
    ImageNet weights, ``gn`` GroupNorm). ``backbone_weights``: local ``resnet50`` ImageNet
    state dict (the ``fc`` layer is ignored).
    """
    return _retinanet_resnet(resnet50, num_classes=num_classes,
                             backbone_weights=backbone_weights, norm=norm,
                             fpn_channels=fpn_channels, head_norm=head_norm,
                             score_thresh=score_thresh, nms_thresh=nms_thresh,
                             detections_per_img=detections_per_img, anchor_sizes=anchor_sizes,
                             box_loss=box_loss, **kw)


def build_retinanet_r18_fpn(*, num_classes: int = NUM_CLASSES,
                            backbone_weights: str | Path | None = None, norm: str = "bn",
                            fpn_channels: int = 128, head_norm: str = "gn",
                            score_thresh: float = 0.05, nms_thresh: float = 0.5,
                            detections_per_img: int = 100,
                            anchor_sizes: tuple[tuple[int, ...], ...] = FPN_ANCHOR_SIZES,
                            box_loss: str = "l1", **kw: Any) -> RetinaNet:
    """Light RetinaNet for CPU/embedded use: ResNet18-FPN with 128 FPN/head channels.

    Same levels and anchors as :func:`build_retinanet_r50_fpn`; the 128-channel heads cost
    about a quarter of the 256-channel ones, which dominate RetinaNet's compute at native
    SAR scale. Trainable BatchNorm in the backbone (per-device batch >= 2 of 320 px crops
    gives >= 2*40*40 samples per channel at P3) and GroupNorm in the heads. ``box_loss``
    (both RetinaNets) picks the box-regression loss from :data:`BOX_LOSSES`.
    """
    return _retinanet_resnet(resnet18, num_classes=num_classes,
                             backbone_weights=backbone_weights, norm=norm,
                             fpn_channels=fpn_channels, head_norm=head_norm,
                             score_thresh=score_thresh, nms_thresh=nms_thresh,
                             detections_per_img=detections_per_img, anchor_sizes=anchor_sizes,
                             box_loss=box_loss, **kw)


# name -> builder. Explicit on purpose: an unknown name is a ValueError listing the choices.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "fasterrcnn_vgg16": build_fasterrcnn_vgg16,
    "retinanet_r50_fpn": build_retinanet_r50_fpn,
    "retinanet_r18_fpn": build_retinanet_r18_fpn,
}


def build_detector(name: str, **kwargs: Any) -> nn.Module:
    """Build detector ``name`` (see :data:`MODELS`) with builder keyword arguments.

    Returns a torchvision detection model (train mode: ``model(images, targets)`` returns a
    loss dict; eval mode: a list of ``{"boxes", "scores", "labels"}``) whose images are float
    (1, H, W) tensors in 8-bit units at native pixel scale.

    Raises:
        ValueError: unknown ``name`` (the message lists the choices) or bad arguments.
    """
    if name not in MODELS:
        raise ValueError(f"unknown detector {name!r}; choices: {sorted(MODELS)}")
    try:
        return MODELS[name](**kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments for detector {name!r}: {err}") from None
