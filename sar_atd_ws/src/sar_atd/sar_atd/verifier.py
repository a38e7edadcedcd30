"""Second-stage target verifier: a tiny CNN that re-checks each detection box.

The detector fires on bright man-made clutter (simulated trees, houses) as well as on
vehicles. The verifier looks at a fixed-size window around each detection and returns
p(vehicle); detections it rejects are dropped, the others keep the detector's score (so the
detector's operating threshold stays valid), or, with ``rescore``, get ``score * p``.

Input contract (:func:`extract_crops`):

* ``image``: uint8 (H, W), the same 8-bit rendering the detector saw, pixel spacing of the
  model record (MSTAR ~0.2 m; the runtime resamples scenes to it before detection);
* ``boxes``: float32 (N, 4) ``[x0, y0, x1, y1]`` pixel edges in that image;
* crop: uint8 (N, S, S), a window of S x S image pixels (no resampling: the object keeps its
  size in metres) centred on the box centre; pixels outside the image are filled with the
  image median (neutral clutter, not a dark frame the CNN could key on; the median of a
  1-in-16 pixel subsample);
* mask: uint8 (N, S, S), 1 where the crop lies inside the detection box (the box size and
  place, clipped to the window: the verifier is box-size aware).

The network standardises each crop by its own mean and standard deviation (the rendering's
gain and offset vary between scenes), stacks the box mask as a second channel, and returns a
logit. Files (``.pt``): a dict with ``format`` ``"sar-atd-verifier"``, ``version``,
``crop_size``, ``channels``, ``threshold`` (reject below it), ``rescore`` and the network's
``state_dict`` plus a ``record`` of how it was trained; :func:`load_verifier` refuses
anything else with one :class:`VerifierError` line. :func:`export_onnx` writes the network
as ONNX (input ``crops`` float32 (N, 2, S, S), output ``logits`` (N,), the rule in the
metadata); :func:`load_verifier` runs such a file with ONNX Runtime (CPU).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sar_atd.detectors.base import Detections
from sar_atd.errors import SarAtdError

__all__ = ["VerifierError", "VerifierNet", "Verifier", "VerifiedDetector", "extract_crops",
           "crops_to_tensor", "load_verifier", "save_verifier", "export_onnx", "FORMAT",
           "VERSION", "DEFAULT_CROP_SIZE"]

log = logging.getLogger(__name__)

FORMAT = "sar-atd-verifier"
VERSION = 1
DEFAULT_CROP_SIZE = 64
"""Window side in pixels: the largest vehicle box (~51 px at MSTAR spacing) plus context."""


class VerifierError(SarAtdError, ValueError):
    """A verifier file is missing, corrupt or does not fit the input (crop size, shapes)."""


# --------------------------------------------------------------------------- crops
def extract_crops(image: np.ndarray, boxes: np.ndarray, size: int = DEFAULT_CROP_SIZE
                  ) -> tuple[np.ndarray, np.ndarray]:
    """S x S windows centred on each box, and the box mask in each window.

    Args:
        image: uint8 (H, W) 8-bit rendering.
        boxes: float (N, 4) ``[x0, y0, x1, y1]`` pixel edges (may extend past the image).
        size: window side S in pixels (>= 8).

    Returns:
        ``(crops, masks)``: uint8 (N, S, S) image pixels (outside the image: the image
        median of a 1-in-16 subsample), uint8 (N, S, S) 1 inside the box.

    Raises:
        VerifierError: not a 2-D uint8 image, boxes not (N, 4) finite, size < 8.
    """
    img = np.asarray(image)
    if img.ndim != 2 or img.dtype != np.uint8:
        raise VerifierError(f"verifier input must be a uint8 (H, W) image, got "
                            f"{img.dtype} {img.shape}")
    b = np.asarray(boxes, np.float64)
    if b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4 or not np.isfinite(b).all():
        raise VerifierError(f"verifier boxes must be finite (N, 4), got shape {b.shape}")
    if int(size) < 8:
        raise VerifierError(f"verifier crop size must be >= 8 px, got {size}")
    s = int(size)
    n = len(b)
    crops = np.empty((n, s, s), np.uint8)
    masks = np.zeros((n, s, s), np.uint8)
    if n == 0:
        return crops, masks
    h, w = img.shape
    # fill level: the median of a 1-in-16 pixel subsample (cheap; clutter dominates)
    fill = np.uint8(np.median(img[::4, ::4])) if img.size else np.uint8(0)
    cx = (b[:, 0] + b[:, 2]) / 2
    cy = (b[:, 1] + b[:, 3]) / 2
    ox = np.floor(cx - s / 2).astype(np.int64)  # window origin in image pixels
    oy = np.floor(cy - s / 2).astype(np.int64)
    for i in range(n):
        crop = crops[i]
        crop.fill(fill)
        x0, y0 = int(ox[i]), int(oy[i])
        ix0, iy0 = max(x0, 0), max(y0, 0)
        ix1, iy1 = min(x0 + s, w), min(y0 + s, h)
        if ix1 > ix0 and iy1 > iy0:
            crop[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = img[iy0:iy1, ix0:ix1]
        # box mask: pixels whose centre lies inside the box (at least one pixel)
        bx0 = int(np.clip(np.floor(b[i, 0] - x0 + 0.5), 0, s - 1))
        by0 = int(np.clip(np.floor(b[i, 1] - y0 + 0.5), 0, s - 1))
        bx1 = int(np.clip(np.ceil(b[i, 2] - x0 - 0.5), bx0 + 1, s))
        by1 = int(np.clip(np.ceil(b[i, 3] - y0 - 0.5), by0 + 1, s))
        masks[i, by0:by1, bx0:bx1] = 1
    return crops, masks


def crops_to_tensor(crops: np.ndarray, masks: np.ndarray) -> torch.Tensor:
    """uint8 (N, S, S) crops and masks -> float32 (N, 2, S, S) network input (8-bit units,
    mask 0/1); the network standardises the crops itself."""
    c = torch.from_numpy(np.ascontiguousarray(crops)).float()
    m = torch.from_numpy(np.ascontiguousarray(masks)).float()
    return torch.stack([c, m], 1)


# --------------------------------------------------------------------------- network
class VerifierNet(nn.Module):
    """Tiny CNN: (N, 2, S, S) float32 (crop in 8-bit units, box mask 0/1) -> (N,) logit.

    Four 3x3 conv blocks (BN, ReLU, 2x2 max-pool) of ``channels`` widths, then global
    average and max pooling and a linear layer. The crop channel is standardised per crop
    (mean 0, std 1), so a change of display gain or offset does not move the score.
    """

    def __init__(self, channels: Sequence[int] = (8, 16, 32, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 2
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * c_in, 1)
        self.channels = tuple(int(c) for c in channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        crop, mask = x[:, :1], x[:, 1:2]
        mean = crop.mean(dim=(2, 3), keepdim=True)
        std = crop.std(dim=(2, 3), keepdim=True).clamp_min(1.0)
        f = self.features(torch.cat([(crop - mean) / std, mask], 1))
        f = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], 1)
        return self.head(f).squeeze(1)


# --------------------------------------------------------------------------- files
def save_verifier(path: str | Path, net: VerifierNet, crop_size: int, threshold: float,
                  rescore: bool = False, record: dict[str, Any] | None = None) -> None:
    """Write a verifier file atomically (see the module docstring for its content)."""
    from sar_atd.atomic import atomic_path

    doc = {"format": FORMAT, "version": VERSION, "crop_size": int(crop_size),
           "channels": list(net.channels), "threshold": float(threshold),
           "rescore": bool(rescore), "state_dict": net.state_dict(),
           "record": dict(record or {})}
    with atomic_path(path) as tmp:
        torch.save(doc, tmp)


def export_onnx(verifier: Verifier, path: str | Path, opset: int = 17) -> Path:
    """Write ``verifier``'s network as ONNX (dynamic batch; crop size, threshold and rescore
    in the metadata), atomically."""
    import onnx

    from sar_atd.atomic import atomic_path

    s = verifier.crop_size
    net = verifier.net
    if not isinstance(net, nn.Module):
        raise VerifierError("export_onnx needs a torch verifier (.pt)")
    with atomic_path(path) as tmp:
        torch.onnx.export(net.eval(), (torch.zeros(1, 2, s, s),), str(tmp),
                          opset_version=opset, dynamo=False, input_names=["crops"],
                          output_names=["logits"],
                          dynamic_axes={"crops": {0: "n"}, "logits": {0: "n"}})
        proto = onnx.load(str(tmp))
        meta = {"sar_atd.format": FORMAT, "version": str(VERSION), "crop_size": str(s),
                "threshold": repr(verifier.threshold), "rescore": str(int(verifier.rescore))}
        for k, v in meta.items():
            proto.metadata_props.add(key=k, value=v)
        onnx.save(proto, str(tmp))
    return Path(path)


class _OrtNet:
    """An ONNX Runtime session behind the network's call: (N, 2, S, S) tensor -> (N,) logits."""

    def __init__(self, ort: Any) -> None:
        self.ort = ort

    def eval(self) -> _OrtNet:
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ort.run(["logits"], {"crops": x.numpy().astype(np.float32)})[0]
        return torch.from_numpy(np.asarray(out, np.float32).reshape(-1))


def _load_onnx(p: Path, threshold: float | None, rescore: bool | None) -> Verifier:
    try:
        import onnxruntime as ort
    except ImportError:
        raise VerifierError(f"{p}: an ONNX verifier needs onnxruntime (pip install "
                            "onnxruntime)") from None
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(p), sess_options=opts,
                                    providers=["CPUExecutionProvider"])
        meta = sess.get_modelmeta().custom_metadata_map
    except Exception as err:  # onnxruntime raises its own types for a damaged file
        raise VerifierError(f"verifier file {p} is unreadable (corrupt or not ONNX): "
                            f"{type(err).__name__}") from None
    if meta.get("sar_atd.format") != FORMAT:
        raise VerifierError(f"{p} is not a verifier file (format "
                            f"{meta.get('sar_atd.format')!r})")
    try:
        crop = int(meta["crop_size"])
        thr = float(meta["threshold"] if threshold is None else threshold)
        rs = bool(int(meta.get("rescore", "0"))) if rescore is None else rescore
    except (KeyError, ValueError) as err:
        raise VerifierError(f"{p}: malformed verifier metadata ({err})") from None
    if not 0.0 <= thr <= 1.0:
        raise VerifierError(f"{p}: verifier threshold {thr} is outside [0, 1]")
    return Verifier(_OrtNet(sess), crop, thr, rs, path=str(p))  # type: ignore[arg-type]


def load_verifier(path: str | Path, threshold: float | None = None,
                  rescore: bool | None = None) -> Verifier:
    """Read a verifier file (``.pt``, or ``.onnx`` from :func:`export_onnx`, run by ONNX
    Runtime); ``threshold``/``rescore`` override the stored rule.

    Raises:
        VerifierError: missing, unreadable, not a verifier file, or inconsistent content.
    """
    p = Path(path)
    if not p.is_file():
        raise VerifierError(f"verifier file not found: {p}")
    if p.suffix.lower() == ".onnx":
        return _load_onnx(p, threshold, rescore)
    try:
        doc = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise VerifierError(f"verifier file {p} is unreadable (corrupt or not a torch "
                            f"file): {type(err).__name__}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise VerifierError(f"{p} is not a verifier file (format "
                            f"{doc.get('format') if isinstance(doc, dict) else None!r})")
    if doc.get("version") != VERSION:
        raise VerifierError(f"{p}: unsupported verifier version {doc.get('version')!r}")
    try:
        net = VerifierNet(tuple(int(c) for c in doc["channels"]))
        net.load_state_dict(doc["state_dict"])
        crop = int(doc["crop_size"])
        thr = float(doc["threshold"] if threshold is None else threshold)
        rs = bool(doc.get("rescore", False) if rescore is None else rescore)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise VerifierError(f"{p}: malformed verifier file "
                            f"({str(err).splitlines()[0][:200]})") from None
    if not 0.0 <= thr <= 1.0:
        raise VerifierError(f"{p}: verifier threshold {thr} is outside [0, 1]")
    return Verifier(net, crop, thr, rs, record=dict(doc.get("record") or {}), path=str(p))


# --------------------------------------------------------------------------- verifier
class Verifier:
    """p(vehicle) for detection boxes and the rule that applies it.

    Args:
        net: the network (put in eval mode here).
        crop_size: window side S the network was trained on.
        threshold: detections with p(vehicle) below it are rejected (0: none rejected).
        rescore: also multiply kept scores by p(vehicle) (default: kept scores unchanged,
            so the detector's operating threshold keeps its meaning).
        record: training record (reports).
        path: the file it came from (reports).
    """

    def __init__(self, net: VerifierNet, crop_size: int = DEFAULT_CROP_SIZE,
                 threshold: float = 0.5, rescore: bool = False,
                 record: dict[str, Any] | None = None, path: str = "") -> None:
        if crop_size < 8 or crop_size % 16:
            raise VerifierError(f"verifier crop size must be a multiple of 16 >= 16, got "
                                f"{crop_size}")
        self.net = net.eval()
        self.crop_size = int(crop_size)
        self.threshold = float(threshold)
        self.rescore = bool(rescore)
        self.record = record or {}
        self.path = path
        self.last_ms_per_crop = float("nan")

    def probabilities(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """float32 (N,) p(vehicle) of each box of a uint8 (H, W) image."""
        crops, masks = extract_crops(image, boxes, self.crop_size)
        return self.probabilities_of_crops(crops, masks)

    def probabilities_of_crops(self, crops: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """float32 (N,) p(vehicle) of uint8 (N, S, S) crops and masks (S = crop_size).

        Raises:
            VerifierError: crops of another size than the verifier's.
        """
        c = np.asarray(crops)
        if c.ndim != 3 or c.shape[1:] != (self.crop_size, self.crop_size) or \
                np.asarray(masks).shape != c.shape:
            raise VerifierError(f"verifier crops must be (N, {self.crop_size}, "
                                f"{self.crop_size}) with masks alike, got {c.shape} and "
                                f"{np.asarray(masks).shape}")
        if len(c) == 0:
            return np.zeros(0, np.float32)
        t0 = time.perf_counter()
        with torch.inference_mode():
            p = torch.sigmoid(self.net(crops_to_tensor(c, masks))).numpy().astype(np.float32)
        self.last_ms_per_crop = (time.perf_counter() - t0) * 1e3 / len(c)
        return p

    def apply(self, image: np.ndarray, det: Detections) -> Detections:
        """The rule: drop detections with p(vehicle) < threshold; with ``rescore`` the kept
        scores become ``score * p``."""
        if len(det) == 0:
            return det
        p = self.probabilities(image, det.boxes)
        return self.apply_probabilities(det, p)

    def apply_probabilities(self, det: Detections, p: np.ndarray) -> Detections:
        """:meth:`apply` with p(vehicle) already computed (float (N,))."""
        p = np.asarray(p, np.float32).reshape(-1)
        if len(p) != len(det):
            raise VerifierError(f"{len(p)} probabilities for {len(det)} detections")
        keep = p >= self.threshold
        scores = det.scores[keep] * (p[keep] if self.rescore else 1.0)
        return Detections(det.boxes[keep], scores)


class VerifiedDetector:
    """A detector followed by a :class:`Verifier` (the same interface as the detector).

    ``detect`` verifies on the image it was given; ``detect_batch`` (tiles, as the scene
    detector feeds them) verifies each tile's detections on that tile rendered to uint8.
    ``model_info`` is the detector's (its operating threshold applies to kept scores).
    """

    def __init__(self, detector: Any, verifier: Verifier) -> None:
        self.detector = detector
        self.verifier = verifier
        self.name = f"{detector.name} + verifier"
        self.model_info = getattr(detector, "model_info", None)
        for attr in ("box_voting_iou", "device"):
            if hasattr(detector, attr):
                setattr(self, attr, getattr(detector, attr))

    def detect(self, image: np.ndarray) -> Detections:
        """Detections of a uint8 (H, W) image, verified."""
        return self.verifier.apply(image, self.detector.detect(image))

    def detect_batch(self, tiles: torch.Tensor) -> list[Detections]:
        """(B, 1, T, T) float32 tiles in 8-bit units -> verified detections per tile."""
        from sar_atd.detectors.base import detect_tiles, tiles_to_uint8

        dets = detect_tiles(self.detector, tiles)
        if not any(len(d) for d in dets):
            return dets
        return [self.verifier.apply(img, d) for img, d in zip(tiles_to_uint8(tiles), dets)]
