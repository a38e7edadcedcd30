"""PyTorch backend: a SAR-ATD checkpoint or weights file run by torch (CPU or CUDA)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sar_atd.backends.base import check_image, check_tile_batch, filter_scores
from sar_atd.backends.voting import (
    DEFAULT_BOX_VOTING_IOU,
    VOTING_METADATA_KEY,
    held_box_voting,
    parse_box_voting_iou,
    take_over_nms,
    vote_outputs,
)
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
        box_voting_iou: > 0 turns on box voting (:mod:`sar_atd.backends.voting`, the same
            tensor operations the exported graphs run): the model's NMS is taken over (all
            candidates come out) and replaced by the same NMS whose kept boxes are the
            score-weighted mean of the candidates overlapping them with IoU >= this; same
            boxes kept, same scores, no extra inference. 0 (default here): the model's own
            NMS. :meth:`from_file` defaults to what the model file holds.
    """

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
            self._voting = take_over_nms(self.model)

    @classmethod
    def from_file(cls, path: str | Path, device: str | torch.device = "cpu",
                  score_threshold: float = 0.05, box_voting_iou: float | str | None = None,
                  **overrides: Any) -> TorchDetector:
        """Load a trainer checkpoint or exported weights ``.pt`` file (``overrides``: model
        builder arguments).

        ``box_voting_iou``: None or ``"model"`` = the IoU the file records
        (``sar-atd export --out M.pt --box-voting-iou T``), else
        :data:`~sar_atd.backends.voting.DEFAULT_BOX_VOTING_IOU`; 0 = off; a number = that IoU.
        """
        from sar_atd.models.checkpoint import load_model
        from sar_atd.models.metadata import METADATA_KEY, ModelInfo, file_sha256

        iou = parse_box_voting_iou(box_voting_iou)
        model, ckpt = load_model(path, device=device, **overrides)
        if iou is None:
            held = ckpt.get(VOTING_METADATA_KEY)
            iou = DEFAULT_BOX_VOTING_IOU if held is None else held_box_voting(
                {VOTING_METADATA_KEY: held})
        det = cls(model, device, score_threshold, name=f"torch:{ckpt['model_name']}",
                  box_voting_iou=iou)
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
        if self._voting is not None:
            nms_iou, max_dets = self._voting
            outputs = vote_outputs(outputs, nms_iou, self.box_voting_iou, max_dets)
        return [filter_scores(o["boxes"].float().cpu().numpy(),
                              o["scores"].float().cpu().numpy(), self.score_threshold)
                for o in outputs]

    def detect(self, image: np.ndarray) -> Detections:
        """Detect targets in a uint8 (H, W) image; boxes in its native pixel coordinates."""
        return self.detect_batch([image])[0]
