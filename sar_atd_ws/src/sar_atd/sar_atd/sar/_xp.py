"""Run the same maths on numpy arrays and torch tensors: numpy in -> numpy out."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def to_torch(x: Any, device: torch.device | str | None = None) -> tuple[torch.Tensor, bool]:
    """Return ``(tensor, was_numpy)``; numpy inputs share memory where possible."""
    if isinstance(x, torch.Tensor):
        return (x if device is None else x.to(device)), False
    return torch.as_tensor(np.asarray(x), device=device), True


def back(x: torch.Tensor, was_numpy: bool) -> Any:
    """Undo :func:`to_torch`: numpy out for numpy in."""
    return x.detach().cpu().numpy() if was_numpy else x
