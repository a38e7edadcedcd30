"""Box voting as tensor operations: one implementation for the torch backend and the graphs
that ``sar-atd export`` writes (ONNX Runtime, TensorRT).

Box voting (:func:`sar_atd.tta.box_voting` is the numpy reference): non-maximum suppression
keeps the best-scored box of each target as usual; each kept box's coordinates become the
score-weighted mean of its voters. Same kept boxes, same scores; only coordinates move.

* **Candidates**: the model's own post-processing with its NMS taken over
  (:func:`take_over_nms`): box decoding, score threshold, per-level top-k, clipping to the
  image; at most :data:`VOTING_CANDIDATES` per image.
* **Kept set**: per-class greedy NMS (``torchvision.ops.nms`` on class-offset boxes; a box is
  dropped when its IoU with a better kept box of its class is > the model's ``nms_thresh``),
  best scores first, the first ``detections_per_img``.
* **Voters** of a kept box: the candidates of its class with score >= :data:`VOTE_SCORE_FLOOR`
  and IoU >= ``vote_iou`` with it, and the kept box itself. The floor makes the voters the
  same for every runtime score threshold and for a graph exported with ``--score-threshold``
  <= the floor (default 0.01), so torch and exported graphs agree.

In an exported graph the step is plain tensor operations after the graph's
``NonMaxSuppression``: Gather, Slice, Add/Mul/Sub/Div/Max/Min/Clip (IoU), GreaterOrEqual,
Equal, And/Or, Range, Unsqueeze, Where, MatMul, ReduceSum, Cast; no loops.

Runtime setting (``DetectorRuntimeConfig.box_voting_iou``, ``--box-voting-iou``), read by
:func:`parse_box_voting_iou`: ``"model"`` (default) = as the model file holds (an exported
graph: the IoU in its metadata, none for graphs exported without it; a ``.pt`` file: its
recorded IoU, else :data:`DEFAULT_BOX_VOTING_IOU`); a number in (0, 1] = voting at that IoU;
``0``/``"none"`` = off. A graph holds its voting: a setting that disagrees with it is
refused (:func:`settle_box_voting`), never silently ignored.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from sar_atd.errors import ConfigError

__all__ = ["DEFAULT_BOX_VOTING_IOU", "VOTE_SCORE_FLOOR", "VOTING_CANDIDATES",
           "VOTING_METADATA_KEY", "parse_box_voting_iou", "voting_metadata_value",
           "held_box_voting", "settle_box_voting", "describe_voting", "take_over_nms",
           "vote_tensors", "vote_outputs", "voting_graph"]

DEFAULT_BOX_VOTING_IOU = 0.5
"""Voting IoU of ``sar-atd export`` and of ``.pt`` files that record none (chosen on the tune
split of the real dev chips; held-back AP70 +0.05, ``bench_box_tta``)."""

VOTE_SCORE_FLOOR = 0.01
"""Lowest candidate score that votes (the default ``--score-threshold`` of the export)."""

VOTING_CANDIDATES = 5000
"""Most candidates per image handed to voting (RetinaNet: 1,000 per level x 5 levels)."""

VOTING_METADATA_KEY = "box_voting_iou"
"""Exported-graph metadata key: the voting IoU (``"0.5"``) or ``"none"``; absent = none."""

_OFF = ("none", "off", "0", "0.0")


def parse_box_voting_iou(value: Any) -> float | None:
    """A box-voting setting -> None (as the model holds), 0.0 (off) or an IoU in (0, 1].

    Accepts None or ``"model"`` (as the model holds), ``"none"``/``"off"``/0 (off), or a
    number (or numeric string) in [0, 1].

    Raises:
        ValueError: anything else (one line naming the value).
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "model":
            return None
        if text in _OFF:
            return 0.0
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"box_voting_iou {value!r}: expected 'model', 'none' or an IoU "
                             "in [0, 1]") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"box_voting_iou {value!r}: expected 'model', 'none' or an IoU in "
                         "[0, 1]")
    iou = float(value)
    if not (math.isfinite(iou) and 0.0 <= iou <= 1.0):
        raise ValueError(f"box_voting_iou {value} is outside [0, 1] (0 = off)")
    return iou


def describe_voting(iou: float | None) -> str:
    """``"box voting at IoU 0.5"`` | ``"no box voting"`` | ``"box voting as the model holds"``."""
    if iou is None:
        return "box voting as the model holds"
    return f"box voting at IoU {iou:g}" if iou > 0 else "no box voting"


def voting_metadata_value(iou: float) -> str:
    """The metadata value recording ``iou`` (``"0.5"``, or ``"none"`` for 0)."""
    return f"{float(iou):g}" if iou > 0 else "none"


def held_box_voting(metadata: Mapping[str, Any] | None) -> float:
    """The voting IoU an exported graph holds (0.0: none, also for files written before the
    key existed).

    Raises:
        ConfigError: an unreadable metadata value.
    """
    raw = (metadata or {}).get(VOTING_METADATA_KEY)
    if raw is None:
        return 0.0
    try:
        iou = parse_box_voting_iou(str(raw))
    except ValueError as err:
        raise ConfigError(f"model metadata {VOTING_METADATA_KEY}: {err}") from None
    return 0.0 if iou is None else iou


def settle_box_voting(requested: float | None, held: float, what: str) -> float:
    """The voting IoU to run: ``held`` when ``requested`` is None or equal to it.

    Args:
        requested: the runtime setting (None = as the model holds; 0 = off).
        held: what the exported graph holds (0 = none).
        what: the model's name for the message.

    Raises:
        ConfigError: the setting disagrees with the graph (one line naming both values).
    """
    if requested is None or abs(float(requested) - float(held)) < 1e-9:
        return float(held)
    fix = (f"re-export it with --box-voting-iou {requested:g}" if requested > 0 else
           "re-export it with --box-voting-iou none")
    raise ConfigError(f"{what} holds {describe_voting(held)} in its graph but box_voting_iou "
                      f"{requested:g} was asked: set box_voting_iou to 'model' (or "
                      f"{voting_metadata_value(held) if held else 'none'}), or {fix}")


def _nms_head(model: Any) -> Any:
    head = model if hasattr(model, "nms_thresh") else getattr(model, "roi_heads", None)
    if head is None or not hasattr(head, "nms_thresh"):
        raise ValueError(f"box voting: {type(model).__name__} has no NMS setting to take over")
    return head


def take_over_nms(model: Any, score_floor: float = VOTE_SCORE_FLOOR) -> tuple[float, int]:
    """Switch a torchvision detector's NMS off so that all its candidates come out.

    Sets the NMS IoU to 1 (IoU never exceeds 1: nothing is suppressed), the detection cap to
    :data:`VOTING_CANDIDATES` and the score threshold to at most ``score_floor``.

    Returns:
        the model's (NMS IoU, detections per image) before, for :func:`vote_tensors`.

    Raises:
        ValueError: a model without such settings.
    """
    head = _nms_head(model)
    before = (float(head.nms_thresh), int(head.detections_per_img))
    head.nms_thresh = 1.0
    head.detections_per_img = max(VOTING_CANDIDATES, before[1])
    if hasattr(head, "score_thresh"):
        head.score_thresh = min(float(head.score_thresh), score_floor)
    return before


def vote_tensors(boxes: Any, scores: Any, labels: Any, nms_iou: float, vote_iou: float,
                 max_detections: int, score_floor: float = VOTE_SCORE_FLOOR
                 ) -> tuple[Any, Any, Any]:
    """Box voting of one image's candidates (torch tensors; traceable, no data-dependent
    Python control flow).

    Args:
        boxes: float (N, 4) xyxy candidate boxes (pixel-edge coordinates).
        scores: float (N,) candidate scores in [0, 1].
        labels: int64 (N,) candidate classes.
        nms_iou: NMS IoU (a box is suppressed above it).
        vote_iou: voters have IoU >= this with the kept box, in (0, 1].
        max_detections: keep at most this many boxes (best scores first).
        score_floor: lowest voter score.

    Returns:
        (boxes (K, 4) voted, scores (K,), labels (K,)) of the kept boxes by decreasing score.
    """
    import torch
    from torchvision.ops import box_iou, nms

    # per-class NMS as torchvision's batched_nms does it (classes moved apart by an offset);
    # the appended 0 keeps the maximum defined for an image without candidates
    top = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
    offsets = labels.to(boxes.dtype) * (top + 1.0)
    keep = nms(boxes + offsets[:, None], scores, nms_iou)[:max_detections]
    kept_boxes, kept_scores, kept_labels = boxes[keep], scores[keep], labels[keep]
    iou = box_iou(kept_boxes, boxes)  # (K, N); NaN for two empty boxes: not a voter
    voter = (iou >= vote_iou) & (kept_labels[:, None] == labels[None, :]) & (
        scores[None, :] >= score_floor)
    voter = voter | (torch.arange(boxes.shape[0], device=boxes.device)[None, :]
                     == keep[:, None])
    weight = torch.where(voter, scores[None, :], torch.zeros_like(iou))
    total = weight.sum(dim=1, keepdim=True)
    voted = torch.where(total > 0, (weight @ boxes) / torch.where(total > 0, total,
                                                                  torch.ones_like(total)),
                        kept_boxes)
    return voted, kept_scores, kept_labels


def vote_outputs(outputs: list[dict[str, Any]], nms_iou: float, vote_iou: float,
                 max_detections: int) -> list[dict[str, Any]]:
    """:func:`vote_tensors` on each image's ``{"boxes", "scores", "labels"}`` candidates."""
    out = []
    for o in outputs:
        b, s, lab = vote_tensors(o["boxes"], o["scores"], o["labels"], nms_iou, vote_iou,
                                 max_detections)
        out.append({"boxes": b, "scores": s, "labels": lab})
    return out


def voting_graph(model: Any, vote_iou: float) -> Any:
    """``nn.Module``: a copy of ``model`` (eval mode) whose NMS is taken over and whose
    outputs are box-voted; same call and outputs as the model (a list of image tensors ->
    a list of ``{"boxes", "scores", "labels"}``), for tracing into an exported graph.

    The copy keeps the model's ``detections_per_img`` and ``score_thresh`` readable as its
    own attributes (the values before the take-over).
    """
    from torch import nn

    if not 0.0 < vote_iou <= 1.0:
        raise ValueError(f"vote_iou must be in (0, 1], got {vote_iou}")
    inner = copy.deepcopy(model).eval()
    head = _nms_head(inner)
    score = float(head.score_thresh) if hasattr(head, "score_thresh") else None
    nms_iou, max_dets = take_over_nms(inner)
    if score is not None:  # candidates as the model's own threshold cuts them
        head.score_thresh = score

    class _Voting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = inner
            self.detections_per_img = max_dets
            self.score_thresh = score

        def forward(self, images: list[Any]) -> list[dict[str, Any]]:
            return vote_outputs(self.model(images), nms_iou, vote_iou, max_dets)

    return _Voting().eval()
