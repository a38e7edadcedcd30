"""Checkpoint files of SAR-ATD detectors: safe loading, model rebuild, atomic writes.

Two kinds of ``.pt`` file, both plain dicts loadable with ``torch.load(weights_only=True)``
(tensors, numbers, strings, lists, dicts only; no pickled code):

* trainer checkpoint (``format: sar_atd.checkpoint/1``): ``model_name``, ``model_kwargs``,
  ``model`` (state dict), ``optimizer``, ``scheduler``, ``scaler``, ``config``, ``step``,
  ``rng``, ``data_state``;
* exported weights (``format: sar_atd.weights/1``): ``model_name``, ``model_kwargs``,
  ``model`` (state dict, float32 or float16), optional ``config``/``record``.

Either rebuilds its detector with :func:`load_model`, the builder being picked by the stored
``model_name``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from sar_atd.atomic import atomic_write_with
from sar_atd.errors import CheckpointError

CHECKPOINT_FORMAT = "sar_atd.checkpoint/1"
WEIGHTS_FORMAT = "sar_atd.weights/1"
_FORMATS = (CHECKPOINT_FORMAT, WEIGHTS_FORMAT)


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a hidden temporary sibling, then rename over ``path``.

    A kill during the write leaves the previous file intact and no visible temporary
    (:func:`sar_atd.atomic.atomic_write_with`).
    """
    return atomic_write_with(path, lambda fh: torch.save(obj, fh))


def _first_line(err: BaseException) -> str:
    """First line of an exception's message, or its type name when the message is empty."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate a SAR-ATD ``.pt`` file with ``weights_only=True`` on the CPU.

    Raises:
        CheckpointError: missing, unreadable or corrupt file, or not a SAR-ATD checkpoint
            (the message names the path).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is an empty file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - zip/unpickling errors all mean "corrupt"
        raise CheckpointError(f"cannot read checkpoint {path} (corrupt or not a torch "
                              f"file?): {_first_line(err)}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") not in _FORMATS:
        got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not a SAR-ATD checkpoint (format {got!r}; "
                              f"expected one of {list(_FORMATS)})")
    for key in ("model_name", "model_kwargs", "model"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint lacks '{key}'")
    return ckpt


def load_state(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """``load_state_dict(strict=True)`` turning mismatches into a clear CheckpointError."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = " ".join(str(err).split())[:400]
        raise CheckpointError(f"{where}: weights do not match the model: {first}") from None


def load_model(source: str | Path | dict[str, Any], device: str | torch.device = "cpu",
               **overrides: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the detector stored in a checkpoint/weights file, in eval mode.

    Args:
        source: path of a ``.pt`` file, or an already-read checkpoint dict.
        device: torch device for the model.
        **overrides: builder keyword arguments replacing the stored ones at inference
            (e.g. ``score_thresh``).

    Returns:
        ``(model, checkpoint dict)``.

    Raises:
        CheckpointError: unreadable file, unknown model name or mismatched weights.
    """
    from sar_atd.models.registry import build_detector

    ckpt = read_checkpoint(source) if not isinstance(source, dict) else source
    where = str(source) if not isinstance(source, dict) else "checkpoint"
    kwargs = dict(ckpt["model_kwargs"])
    kwargs.pop("backbone_weights", None)  # trained weights supersede the initialisation
    kwargs.update(overrides)
    try:
        model = build_detector(ckpt["model_name"], **kwargs)
    except ValueError as err:
        raise CheckpointError(f"{where}: {err}") from None
    load_state(model, ckpt["model"], where)
    return model.to(device).eval(), ckpt


def save_weights(path: str | Path, model: nn.Module, model_name: str,
                 model_kwargs: dict[str, Any], *, fp16: bool = False,
                 extra: dict[str, Any] | None = None) -> Path:
    """Write an inference-only weights file (optionally float16 to halve its size)."""
    state = {k: (v.detach().half() if fp16 and v.is_floating_point() else v.detach()).cpu()
             for k, v in model.state_dict().items()}
    kwargs = {k: v for k, v in model_kwargs.items() if k != "backbone_weights"}
    obj = {"format": WEIGHTS_FORMAT, "model_name": model_name, "model_kwargs": kwargs,
           "model": state, **(extra or {})}
    return atomic_save(obj, path)
