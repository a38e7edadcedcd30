"""Detector-spec resolution: ``cfar`` | ``cfar-os`` | ``.pt`` | ``.onnx`` | ``.engine`` -> Detector.

The one place that turns what a user or a parameter file names into a running detector,
used by ``sar-atd eval``, ``sar-atd detect``, the benchmarks and the ROS 2 detector node.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sar_atd.detectors.base import Detector
from sar_atd.errors import BackendError

__all__ = ["resolve_detector", "MODEL_SUFFIXES", "CFAR_SPECS", "AUTO_ORDER", "is_neural_spec",
           "resolve_device_name", "auto_backends"]

log = logging.getLogger(__name__)

MODEL_SUFFIXES: dict[str, str] = {".pt": "torch", ".pth": "torch", ".onnx": "onnxruntime",
                                  ".engine": "tensorrt", ".plan": "tensorrt"}
"""Model file suffix -> default backend."""

CFAR_SPECS: dict[str, str] = {"cfar": "ca", "cfar-ca": "ca", "ca-cfar": "ca",
                              "cfar-os": "os", "os-cfar": "os"}
"""CFAR detector names -> CFAR method."""

AUTO_ORDER: tuple[str, ...] = ("tensorrt", "onnxruntime", "torch")
"""Preference of ``backend="auto"``: the fastest backend that can run the file here."""

_CAN_RUN: dict[str, tuple[str, ...]] = {
    ".engine": ("tensorrt",), ".plan": ("tensorrt",),
    ".onnx": ("tensorrt", "onnxruntime"),
    ".pt": ("torch",), ".pth": ("torch",)}
"""Model file suffix -> backends that read that file directly (a ``.pt`` needs
``sar-atd export`` before ONNX Runtime or TensorRT can run it)."""


def auto_backends(path: str | Path, device: str) -> list[str]:
    """Backends ``auto`` tries for ``path`` on ``device``, in :data:`AUTO_ORDER`.

    TensorRT is tried only on a CUDA device; the others are tried wherever they read the file.
    """
    can = _CAN_RUN.get(Path(path).suffix.lower(), ())
    on_gpu = str(device).startswith("cuda")
    return [b for b in AUTO_ORDER if b in can and (b != "tensorrt" or on_gpu)]


def is_neural_spec(spec: str) -> bool:
    """True for a model file spec (scores are probabilities in [0, 1]); False for CFAR."""
    return spec.lower() not in CFAR_SPECS


def resolve_device_name(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; others unchanged.

    Raises:
        BackendError: a CUDA device asked for where torch sees none.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise BackendError(f"--device {device}: torch sees no CUDA device on this machine")
    return device


def resolve_detector(spec: str | Path, device: str = "cpu", score_threshold: float = 0.01,
                     backend: str | None = None, box_voting_iou: float | str | None = None,
                     tta: str = "", verifier: str | Path = "",
                     **backend_kw: Any) -> tuple[Detector, dict[str, Any]]:
    """Turn a detector spec into a detector behind the common interface.

    Args:
        spec: ``"cfar"`` (cell-averaging CFAR), ``"cfar-os"`` (order-statistic CFAR), or a
            model file: ``.pt`` (torch), ``.onnx`` (ONNX Runtime), ``.engine`` (TensorRT).
        device: ``"cpu"``, ``"cuda[:N]"`` or ``"auto"``.
        score_threshold: lowest score the model backends return, in [0, 1] (keep low so
            PR curves are complete). Ignored by CFAR (its scores are unbounded).
        backend: force ``torch`` | ``onnxruntime`` | ``tensorrt`` (e.g. TensorRT on a
            ``.onnx`` file); ``auto``: the first of TensorRT, ONNX Runtime, torch that can
            run the file on ``device`` and loads (each refusal is logged, the choice too);
            None or ``""``: by suffix.
        box_voting_iou: box voting (:mod:`sar_atd.backends.voting`): None or ``"model"``
            = as the model holds (an exported graph: what it was exported with, none for
            older graphs; a ``.pt`` file: its recorded IoU, else 0.5); an IoU in (0, 1] =
            voting at that IoU; 0 or ``"none"`` = off. An ONNX/TensorRT graph holds its
            voting: a different setting is refused (ConfigError). Ignored by CFAR.
        tta: test-time views fused by weighted box fusion (:func:`sar_atd.tta.parse_views`,
            e.g. ``"identity,mirror"``: one inference per view); ``""``: off.
        verifier: second-stage verifier file (:mod:`sar_atd.verifier`, ``sar-atd train
            verifier``) applied to the detections (after TTA); ``""``: off.
        **backend_kw: backend options (``threads``, ``precision``, ``cache_dir``...).

    Returns:
        (detector, description dict for reports: spec, backend, device, threshold and the
        model's metadata).

    Raises:
        ValueError: unknown name/suffix, a threshold or voting IoU outside [0, 1], or an
            unknown TTA view.
        ConfigError: a box-voting setting an exported graph does not hold.
        FileNotFoundError: a model path that does not exist.
        BackendError: backend unavailable (names the missing package) or model unloadable.
        CheckpointError: corrupt or mismatched ``.pt``.
        VerifierError: a verifier file that is missing, corrupt or not a verifier.
    """
    det, desc = _resolve(spec, device, score_threshold, backend, box_voting_iou, backend_kw)
    if tta:
        from sar_atd.tta import TtaDetector, parse_views

        views = parse_views(tta)
        if views:
            det = TtaDetector(det, views)
            desc["tta"] = [v.name for v in views]
    if verifier:
        from sar_atd.verifier import VerifiedDetector, load_verifier

        ver = load_verifier(verifier)
        det = VerifiedDetector(det, ver)
        desc["verifier"] = {"path": ver.path, "threshold": ver.threshold,
                            "crop_size": ver.crop_size, "rescore": ver.rescore}
    return det, desc


def _resolve(spec: str | Path, device: str, score_threshold: float, backend: str | None,
             box_voting_iou: float | str | None, backend_kw: dict[str, Any]
             ) -> tuple[Detector, dict[str, Any]]:
    """:func:`resolve_detector` without the TTA wrapper."""
    from sar_atd.backends.voting import parse_box_voting_iou
    from sar_atd.detectors.cfar import CfarConfig, CfarDetector

    text = str(spec)
    low = text.lower()
    voting = parse_box_voting_iou(box_voting_iou)
    if low in CFAR_SPECS:
        cfg = CfarConfig(method=CFAR_SPECS[low])
        cfar = CfarDetector(cfg, name=f"CFAR-{CFAR_SPECS[low].upper()}")
        return cfar, {"spec": text, "backend": "cfar", **asdict(cfg)}
    path = Path(text)
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise ValueError(f"unknown detector {text!r}: expected 'cfar', 'cfar-os' or a model "
                         f"file ({', '.join(sorted(MODEL_SUFFIXES))})")
    if not 0.0 <= float(score_threshold) <= 1.0:
        raise ValueError(f"score threshold {score_threshold} is outside [0, 1] (model scores "
                         f"are probabilities)")
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    device = resolve_device_name(device)
    from sar_atd.backends import load_detector

    backend_kw = dict(backend_kw, box_voting_iou=voting)

    if backend == "auto":
        candidates = auto_backends(path, device)
        if not candidates:
            raise BackendError(f"backend auto: no backend runs {path.name} on {device} "
                               "(a .engine file needs TensorRT on a CUDA device)")
        reasons: list[str] = []
        for chosen in candidates:
            try:
                det = load_detector(path, device=device, score_threshold=score_threshold,
                                    backend=chosen, **backend_kw)
            except BackendError as err:
                log.warning("backend auto: %s unavailable for %s: %s", chosen, path.name, err)
                reasons.append(f"{chosen}: {err}")
                continue
            log.info("backend auto: chose %s for %s on %s", chosen, path.name, device)
            break
        else:
            raise BackendError(f"backend auto: no backend could load {path}: "
                               + "; ".join(reasons))
    else:
        chosen = backend or MODEL_SUFFIXES[suffix]
        det = load_detector(path, device=device, score_threshold=score_threshold,
                            backend=chosen, **backend_kw)
    if not getattr(det, "name", None):
        det.name = path.stem
    info = getattr(det, "model_info", None)
    desc: dict[str, Any] = {"spec": text, "model": str(path), "backend": chosen,
                            "device": device, "score_threshold": float(score_threshold)}
    held = getattr(det, "box_voting_iou", None)
    if held is not None:  # the voting the detector runs (0.0: none)
        desc["box_voting_iou"] = float(held)
    if info is not None:
        desc["model_info"] = info.to_dict()
    return det, desc
