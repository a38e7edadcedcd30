"""FGSM adversarial examples for detector training (Goodfellow et al. 2014; paper II.E).

The detector input is the 8-bit image as float (1, H, W) in grey levels, so the attack is

    x_adv = clip(x + epsilon * sign(d loss / d x), 0, 255)

with ``epsilon`` in 8-bit units: every pixel moves by exactly ``epsilon`` grey levels unless
the clip to [0, 255] stops it, or its gradient is exactly 0. With an integer ``epsilon`` and
an integer-valued input (a uint8 image), ``x_adv`` is again on the 8-bit grid (a valid uint8
image, as the runtime would see); a fractional ``epsilon`` is applied as is (no quantisation,
which would change the L-inf norm).

The attack's forward pass runs the model in training mode (so it returns the losses and
normalises with batch statistics, like the training pass it precedes), but BatchNorm running
statistics are restored afterwards (:func:`frozen_bn_stats`): the adversarial pass must not
update them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Restore every BatchNorm's running mean/var and batch counter on exit (bit-exact)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
           and m.track_running_stats]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in bns]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (mean, var, n) in zip(bns, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(n)


def fgsm_perturb(model: nn.Module, images: list[torch.Tensor], targets: list[dict[str, Any]],
                 epsilon: float, autocast: Any = None) -> list[torch.Tensor]:
    """Adversarial versions of ``images`` (one FGSM step of ``epsilon`` grey levels).

    Args:
        model: detector in training mode (unwrapped, not DDP: the attack is local).
        images: float (1, H, W) tensors in 8-bit units [0, 255].
        targets: their training targets (``boxes``, ``labels``).
        epsilon: step in 8-bit grey levels (>= 0).
        autocast: optional autocast context factory (AMP); the loss is scaled by 1024 under
            it so float16 gradients keep their sign.

    Returns:
        detached float tensors, same shapes, ``|x_adv - x| <= epsilon``, in [0, 255].
    """
    if epsilon < 0:
        raise ValueError(f"epsilon must be >= 0 (8-bit units), got {epsilon}")
    if not images:
        return []
    xs = [im.detach().clone().requires_grad_(True) for im in images]
    ctx = autocast() if autocast is not None else contextlib.nullcontext()
    scale = 1024.0 if autocast is not None else 1.0
    with frozen_bn_stats(model):  # restored after the backward (BN saves its buffers)
        with ctx:
            losses = model(xs, targets)
            loss = sum(losses.values())
        grads = torch.autograd.grad(loss * scale, xs, allow_unused=True)
    out = []
    for x, g in zip(xs, grads):
        x = x.detach()
        if g is None:
            out.append(x.clone())
            continue
        out.append((x + epsilon * g.sign()).clamp_(0.0, 255.0))
    return out
