"""PyTorch backend: a SAR-ATD checkpoint or weights file run by torch (CPU or CUDA)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sar_atd.backends.base import check_image, check_tile_batch, filter_scores
from sar_atd.detectors.base import Detections
from sar_atd.models.metadata import ModelInfo


class TorchDetector:
    """A torchvision detection model behind the :class:`~sar_atd.detectors.base.Detector`
    interface. Images keep their native pixel scale (see :mod:`sar_atd.models.transform`).

    Args:
        model: a model from :func:`sar_atd.models.build_detector` (put in eval mode here).
        device: torch device.
        score_threshold: minimum score kept (the model's own threshold is lowered to it).
        name: detector name for logs and reports.
        box_voting_iou: > 0 turns on box voting (:func:`sar_atd.tta.box_voting`): the
            model's NMS is switched off (all candidates, up to ``VOTING_CANDIDATES``, come
            out) and replaced by the same NMS whose kept boxes are the score-weighted mean
            of the candidates overlapping them with IoU >= this; same boxes kept, same
            scores, no extra inference. 0 (default): the model's own NMS.
    """

    VOTING_CANDIDATES = 5000
    """Most candidates per image handed to box voting (the model's NMS input cap)."""

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu",
                 score_threshold: float = 0.05, name: str = "torch",
                 box_voting_iou: float = 0.0) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.score_threshold = float(score_threshold)
        self.name = name
        self.model_info: ModelInfo = ModelInfo(model_name=name)
        # the model must not drop boxes the caller asked for
        for attr in ("score_thresh",):  # RetinaNet
            if hasattr(self.model, attr):
                setattr(self.model, attr, min(getattr(self.model, attr), self.score_threshold))
        roi = getattr(self.model, "roi_heads", None)  # Faster R-CNN
        if roi is not None:
            roi.score_thresh = min(roi.score_thresh, self.score_threshold)
        if not 0.0 <= float(box_voting_iou) <= 1.0:
            raise ValueError(f"box_voting_iou must be in [0, 1] (0 = off), got "
                             f"{box_voting_iou}")
        self.box_voting_iou = float(box_voting_iou)
        self._voting: tuple[float, int] | None = None  # the model's (nms_iou, max_dets)
        if self.box_voting_iou > 0:
            head: Any = self.model if hasattr(self.model, "nms_thresh") else roi
            if head is None or not hasattr(head, "nms_thresh"):
                raise ValueError(f"box voting: {type(self.model).__name__} has no NMS "
                                 "setting to take over")
            self._voting = (float(head.nms_thresh), int(head.detections_per_img))
            head.nms_thresh = 1.0  # IoU never exceeds 1: every candidate passes
            head.detections_per_img = max(self.VOTING_CANDIDATES, self._voting[1])

    @classmethod
    def from_file(cls, path: str | Path, device: str | torch.device = "cpu",
                  score_threshold: float = 0.05, box_voting_iou: float = 0.0,
                  **overrides: Any) -> TorchDetector:
        """Load a trainer checkpoint or exported weights ``.pt`` file (``overrides``: model
        builder arguments)."""
        from sar_atd.models.checkpoint import load_model
        from sar_atd.models.metadata import METADATA_KEY, ModelInfo, file_sha256

        model, ckpt = load_model(path, device=device, **overrides)
        det = cls(model, device, score_threshold, name=f"torch:{ckpt['model_name']}",
                  box_voting_iou=box_voting_iou)
        det.model_info = ModelInfo.from_dict(ckpt.get(METADATA_KEY), model_hash=file_sha256(path),
                                             model_name=str(ckpt["model_name"]))
        return det

    @torch.inference_mode()
    def detect_batch(self, images: torch.Tensor | list[np.ndarray]) -> list[Detections]:
        """Detect in a batch in one forward pass.

        Args:
            images: float32 (B, 1, H, W) tensor in 8-bit units (any device: moved to the
                model's, so a GPU tile batch never visits the host), or a list of uint8
                (H, W) arrays (sizes may differ).
        """
        if isinstance(images, torch.Tensor):
            tensors = list(check_tile_batch(images).to(self.device, torch.float32))
        else:
            tensors = [torch.from_numpy(check_image(im))[None].to(self.device)
                       for im in images]
        if not tensors:
            return []
        outputs = self.model(tensors)
        found = [(o["boxes"].float().cpu().numpy(), o["scores"].float().cpu().numpy())
                 for o in outputs]
        if self._voting is not None:
            from sar_atd.tta import box_voting

            nms_iou, max_dets = self._voting
            voted = [box_voting(b, s, nms_iou, self.box_voting_iou, max_dets) for b, s in found]
            found = [(d.boxes, d.scores) for d in voted]
        return [filter_scores(b, s, self.score_threshold) for b, s in found]

    def detect(self, image: np.ndarray) -> Detections:
        """Detect targets in a uint8 (H, W) image; boxes in its native pixel coordinates."""
        return self.detect_batch([image])[0]
