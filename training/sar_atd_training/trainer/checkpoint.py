"""Full training checkpoints: atomic save, safe load (``weights_only=True``), RNG states.

A checkpoint is a plain dict (format ``sar_atd.checkpoint/1``, see
:mod:`sar_atd.models.checkpoint`): ``model_name``, ``model_kwargs``, ``model``,
``optimizer``, ``scheduler``, ``scaler``, ``config``, ``step``, ``rng`` (python, numpy,
torch, CUDA states as tensors and lists), ``data_state`` (:meth:`DataStream.state`),
``world_size``, ``wall_time_s``. Only tensors and plain containers are stored, so
``torch.load(weights_only=True)`` reads it.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sar_atd.errors import CheckpointError
from sar_atd.models.checkpoint import CHECKPOINT_FORMAT, atomic_save, load_state, read_checkpoint


def capture_rng() -> dict[str, Any]:
    """RNG states of python, numpy (legacy global) and torch (CPU, CUDA)."""
    py_version, py_state, py_gauss = random.getstate()
    np_state = np.random.get_state()
    out: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    v, s, g = state["python"]
    random.setstate((v, tuple(s), g))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_checkpoint(path: str | Path, *, model: torch.nn.Module, model_name: str,
                             model_kwargs: dict[str, Any], optimizer: torch.optim.Optimizer,
                             scheduler: Any, scaler: Any, config: dict[str, Any], step: int,
                             data_state: dict[str, Any], world_size: int,
                             wall_time_s: float, resumes: list[dict[str, Any]] | None = None
                             ) -> Path:
    """Write the full checkpoint atomically (hidden temporary file + rename).

    ``resumes`` lists the earlier resumes of the run (step and recipe keys changed)."""
    obj = {
        "format": CHECKPOINT_FORMAT, "model_name": model_name,
        "model_kwargs": {k: v for k, v in model_kwargs.items() if k != "backbone_weights"},
        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "config": config,
        "step": int(step), "rng": capture_rng(), "data_state": data_state,
        "world_size": int(world_size), "wall_time_s": float(wall_time_s),
        "resumes": list(resumes or []),
    }
    return atomic_save(obj, path)


def load_training_checkpoint(path: str | Path, *, model: torch.nn.Module, model_name: str,
                             model_kwargs: dict[str, Any], optimizer: torch.optim.Optimizer,
                             scheduler: Any, scaler: Any) -> dict[str, Any]:
    """Restore model, optimizer, scheduler, scaler and RNG states from ``path``.

    Returns:
        the checkpoint dict (``step``, ``data_state``, ``config``...).

    Raises:
        CheckpointError: missing/corrupt file, another model or other builder arguments,
            weights or optimizer state that do not fit (the message names the path).
    """
    ckpt = read_checkpoint(path)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} holds inference weights only ({ckpt.get('format')}), "
                              f"it cannot resume training")
    kwargs = {k: v for k, v in model_kwargs.items() if k != "backbone_weights"}
    if ckpt["model_name"] != model_name or ckpt["model_kwargs"] != kwargs:
        raise CheckpointError(
            f"{path} was trained with model {ckpt['model_name']!r} {ckpt['model_kwargs']}, "
            f"but the config asks for {model_name!r} {kwargs}")
    for key in ("optimizer", "scheduler", "scaler", "step", "rng", "data_state"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: training checkpoint lacks '{key}'")
    load_state(model, ckpt["model"], str(path))
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
    except (ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(f"{path}: optimizer/scheduler state does not fit: {err}") from None
    restore_rng(ckpt["rng"])
    return ckpt
