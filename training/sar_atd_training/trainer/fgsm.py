"""Adversarial examples for detector training: FGSM (Goodfellow et al. 2014; paper II.E)
and PGD (Madry et al. 2018).

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

PGD (:func:`pgd_perturb`) iterates signed-gradient steps of ``step_size`` from a uniform
random start in the L-inf ball of radius ``epsilon``, projecting back onto the ball and
[0, 255] after each; the result is rounded to whole grey levels (``|delta| <= floor(eps)``),
the same valid-uint8 threat model as the evaluation attacks
(:mod:`sar_atd_training.attacks`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
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


def pgd_perturb(model: nn.Module, images: list[torch.Tensor], targets: list[dict[str, Any]],
                epsilons: Sequence[float], steps: int, step_size: float | None = None,
                random_start: bool = True, generator: torch.Generator | None = None,
                autocast: Any = None) -> list[torch.Tensor]:
    """PGD adversarial versions of ``images`` (each within its own ``epsilons[i]`` ball).

    Args:
        model: detector in training mode (unwrapped, not DDP); BatchNorm statistics are
            restored afterwards.
        images: float (1, H, W) tensors in 8-bit units, on the 8-bit grid [0, 255].
        targets: their training targets (``boxes``, ``labels``).
        epsilons: L-inf radius of each image in grey levels (>= 0), same length as images.
        steps: projected gradient steps (>= 1).
        step_size: step in grey levels (None: ``2.5 * epsilon / steps`` per image).
        random_start: start from a uniform point in the ball (drawn with ``generator``).
        generator: CPU generator of the random start (deterministic training).
        autocast: optional autocast context factory (AMP); the loss is scaled by 1024.

    Returns:
        detached float tensors on the 8-bit grid, ``|x_adv - x| <= floor(epsilon)``,
        in [0, 255].

    Raises:
        ValueError: negative epsilon, ``steps < 1``, non-positive step size, length mismatch.
    """
    from sar_atd_training.attacks import quantise

    eps = [float(e) for e in epsilons]
    if len(eps) != len(images):
        raise ValueError(f"{len(eps)} epsilons for {len(images)} images")
    if any(not e >= 0 for e in eps):
        raise ValueError(f"epsilon must be >= 0 (8-bit units), got {eps}")
    if steps < 1:
        raise ValueError(f"PGD needs at least 1 step, got {steps}")
    if step_size is not None and not step_size > 0:
        raise ValueError(f"step_size must be > 0 grey levels, got {step_size}")
    if not images:
        return []
    x0s = [im.detach() for im in images]
    alphas = [step_size if step_size is not None else 2.5 * e / steps for e in eps]
    xs = []
    for x0, e in zip(x0s, eps):
        if random_start and e > 0:
            u = torch.rand(x0.shape, generator=generator).to(x0.device)
            x0 = (x0 + (2 * u - 1) * e).clamp(0.0, 255.0)
        xs.append(x0.clone())
    ctx = autocast if autocast is not None else contextlib.nullcontext
    scale = 1024.0 if autocast is not None else 1.0
    with frozen_bn_stats(model):
        for _ in range(steps):
            req = [x.requires_grad_(True) for x in xs]
            with ctx():
                losses = model(req, targets)
                loss = sum(losses.values())
            grads = torch.autograd.grad(loss * scale, req, allow_unused=True)
            with torch.no_grad():
                xs = [x.detach() if g is None else
                      torch.min(torch.max(x.detach() + a * g.sign(), x0 - e), x0 + e)
                      .clamp_(0.0, 255.0)
                      for x, g, x0, a, e in zip(req, grads, x0s, alphas, eps)]
    return [quantise(x, x0, e) for x, x0, e in zip(xs, x0s, eps)]
