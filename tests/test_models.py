"""Detector builders: registry, native pixel scale, single-channel input, local weights."""

from __future__ import annotations

import pytest
import torch
import torchvision

from sar_atd.errors import CheckpointError
from sar_atd.models import MODELS, NativeScaleTransform, build_detector

torch.set_num_threads(1)


def test_registry_unknown_name_lists_choices() -> None:
    with pytest.raises(ValueError, match="retinanet_r18_fpn"):
        build_detector("yolo_v99")
    assert set(MODELS) >= {"fasterrcnn_vgg16", "retinanet_r50_fpn", "retinanet_r18_fpn"}


def test_bad_builder_argument_is_value_error() -> None:
    with pytest.raises(ValueError, match="retinanet_r18_fpn"):
        build_detector("retinanet_r18_fpn", no_such_option=3)
    with pytest.raises(ValueError, match="norm"):
        build_detector("retinanet_r18_fpn", norm="weird")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_transform_keeps_native_scale(name: str) -> None:
    """Every model's transform neither resizes 480 nor 640 px images (only pads)."""
    model = build_detector(name)
    assert isinstance(model.transform, NativeScaleTransform)
    model.eval()
    images = [torch.rand(1, 480, 480) * 255, torch.rand(1, 640, 640) * 255]
    batch, _ = model.transform(images)
    assert batch.image_sizes == [(480, 480), (640, 640)]
    assert tuple(batch.tensors.shape) == (2, 3, 640, 640)
    # grey replicated to 3 channels, /255 then ImageNet mean/std
    x = images[0][0, :5, :5] / 255
    expected = (x - 0.485) / 0.229
    torch.testing.assert_close(batch.tensors[0, 0, :5, :5], expected)


@pytest.mark.parametrize("size", [(480, 480), (640, 640), (96, 200)])
def test_boxes_in_native_pixel_coordinates(size: tuple[int, int]) -> None:
    """Boxes span the input image's own pixel frame, whatever its size (no rescale)."""
    torch.manual_seed(0)
    model = build_detector("retinanet_r18_fpn", score_thresh=0.0, detections_per_img=300)
    torch.nn.init.normal_(model.head.classification_head.cls_logits.weight, std=0.5)
    model.eval()
    h, w = size
    with torch.no_grad():
        out = model([torch.rand(1, h, w) * 255])[0]
    b = out["boxes"]
    assert len(b) > 50
    assert float(b[:, 0].min()) >= 0 and float(b[:, 1].min()) >= 0
    assert float(b[:, 2].max()) <= w and float(b[:, 3].max()) <= h
    # boxes reach the far edges: the frame is the native one, not a resized one
    assert float(b[:, 2].max()) > 0.8 * w and float(b[:, 3].max()) > 0.8 * h


def test_anchors_suit_small_vehicles() -> None:
    model = build_detector("retinanet_r18_fpn")
    sizes = [s for level in model.anchor_generator.sizes for s in level]
    assert min(sizes) <= 16 and max(sizes) <= 256
    frcnn = build_detector("fasterrcnn_vgg16")
    sizes = [s for level in frcnn.rpn.anchor_generator.sizes for s in level]
    assert min(sizes) <= 16 and max(sizes) <= 256


def test_train_mode_losses_with_single_channel_input() -> None:
    model = build_detector("retinanet_r18_fpn").train()
    images = [torch.rand(1, 128, 128) * 255 for _ in range(2)]
    targets = [{"boxes": torch.tensor([[20.0, 30.0, 50.0, 52.0]]),
                "labels": torch.tensor([1])} for _ in images]
    losses = model(images, targets)
    assert set(losses) == {"classification", "bbox_regression"}
    assert all(torch.isfinite(v) for v in losses.values())


def test_local_backbone_weights_load(tmp_path) -> None:
    """A torchvision ResNet18 state dict saved locally initialises the backbone."""
    torch.manual_seed(1)
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    model = build_detector("retinanet_r18_fpn", backbone_weights=path)
    body = model.backbone.body
    torch.testing.assert_close(body.conv1.weight, ref.conv1.weight, rtol=0, atol=0)
    torch.testing.assert_close(body.layer4[1].bn2.running_var, ref.layer4[1].bn2.running_var,
                               rtol=0, atol=0)
    fresh = build_detector("retinanet_r18_fpn")
    assert not torch.equal(fresh.backbone.body.conv1.weight, ref.conv1.weight)


def test_backbone_weights_errors(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        build_detector("retinanet_r18_fpn", backbone_weights=tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="bad.pth"):
        build_detector("retinanet_r18_fpn", backbone_weights=bad)
    wrong = tmp_path / "resnet18_for_vgg.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), wrong)
    with pytest.raises(CheckpointError, match="resnet18_for_vgg.pth.*lack"):
        build_detector("fasterrcnn_vgg16", backbone_weights=wrong)
