"""White-box adversarial attacks on detectors: FGSM and PGD in 8-bit grey levels.

Threat model (the paper's FGSM training, measured instead of assumed): the attacker knows the
model and the ground-truth boxes and maximises the detector's *training loss* (the sum of its
classification and box-regression losses) within an L-inf ball of ``epsilon`` grey levels
around the uint8 image. The attacked image is again a valid uint8 image: the perturbation is
rounded to whole grey levels and clamped to ``floor(epsilon)`` (so it never exceeds
``epsilon``), and the image clipped to [0, 255].

* FGSM (Goodfellow et al. 2014): one step ``x + epsilon * sign(grad)``.
* PGD (Madry et al. 2018): a uniform random start in the ball, then ``steps`` (>= 10) signed
  gradient steps of ``step_size`` (default ``2.5 * epsilon / steps``), each projected back
  onto the ball and [0, 255]. The random start and the many steps keep gradient masking from
  passing for robustness.

The loss is computed with the model in training mode (torchvision detectors return losses
only there) but with every BatchNorm layer in eval mode, so the attacked function is exactly
the deployed one (running statistics, untouched by the attack).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from sar_atd.errors import SarAtdError

log = logging.getLogger(__name__)

ATTACKS = ("fgsm", "pgd")


class AttackError(SarAtdError, ValueError):
    """An attack cannot run as asked (bad budget, too few steps, no white-box model)."""


@contextlib.contextmanager
def loss_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Training mode (losses) with BatchNorm in eval mode; restores every module's mode."""
    modes = {m: m.training for m in model.modules()}
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    try:
        yield model
    finally:
        for m, t in modes.items():
            m.train(t)


def _loss_grad(model: nn.Module, x: torch.Tensor, target: dict[str, torch.Tensor]
               ) -> torch.Tensor:
    """Gradient of the summed training loss w.r.t. one image x (1, H, W) float."""
    x = x.detach().requires_grad_(True)
    losses = model([x], [target])
    loss = sum(losses.values())
    (g,) = torch.autograd.grad(loss, [x], allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def quantise(x_adv: torch.Tensor, x0: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Perturbation rounded to whole grey levels and clamped to ``floor(epsilon)``, so
    |delta| <= epsilon; result in [0, 255] (x0 on the 8-bit grid)."""
    e = float(np.floor(epsilon))
    delta = torch.round(x_adv - x0).clamp(-e, e)
    return (x0 + delta).clamp(0.0, 255.0)


def attack_image(model: nn.Module, image: np.ndarray, boxes: np.ndarray, method: str,
                 epsilon: float, steps: int = 10, step_size: float | None = None,
                 generator: torch.Generator | None = None,
                 device: str | torch.device = "cpu") -> np.ndarray:
    """Adversarial version of one uint8 (H, W) image.

    Args:
        model: torchvision detector taking float (1, H, W) images in 8-bit units.
        image: uint8 (H, W).
        boxes: float (M, 4) ground-truth xyxy boxes (M may be 0).
        method: ``fgsm`` or ``pgd``.
        epsilon: L-inf budget in grey levels (>= 0).
        steps: PGD iterations (>= 10).
        step_size: PGD step in grey levels (default ``2.5 * epsilon / steps``).
        generator: CPU generator of the PGD random start.

    Returns:
        uint8 (H, W) with ``|adv - image| <= epsilon`` everywhere.

    Raises:
        ValueError: unknown method, negative epsilon, fewer than 10 PGD steps, bad image.
    """
    if method not in ATTACKS:
        raise ValueError(f"unknown attack {method!r}; choose from {list(ATTACKS)}")
    if not epsilon >= 0:
        raise ValueError(f"epsilon must be >= 0 grey levels, got {epsilon}")
    if method == "pgd" and steps < 10:
        raise ValueError(f"PGD needs at least 10 steps, got {steps}")
    im = np.asarray(image)
    if im.ndim != 2 or im.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W) image, got {im.dtype} {im.shape}")
    if epsilon == 0:
        return im.copy()
    dev = torch.device(device)
    x0 = torch.from_numpy(im.astype(np.float32))[None].to(dev)
    b = torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4), device=dev)
    target = {"boxes": b, "labels": torch.ones(len(b), dtype=torch.int64, device=dev)}
    with loss_mode(model):
        if method == "fgsm":
            x = x0 + epsilon * _loss_grad(model, x0, target).sign()
        else:
            alpha = step_size if step_size is not None else 2.5 * epsilon / steps
            g = generator if generator is not None else torch.Generator().manual_seed(0)
            start = (torch.rand(x0.shape, generator=g) * 2 - 1).to(dev) * epsilon
            x = (x0 + start).clamp(0.0, 255.0)
            for _ in range(steps):
                x = x + alpha * _loss_grad(model, x, target).sign()
                x = torch.max(torch.min(x, x0 + epsilon), x0 - epsilon).clamp(0.0, 255.0)
    adv = quantise(x.detach(), x0, epsilon)
    return adv[0].round().to(torch.uint8).cpu().numpy()


def attack_images(model: nn.Module, images: Sequence[np.ndarray],
                  boxes: Sequence[np.ndarray], method: str, epsilon: float, steps: int = 10,
                  seed: int = 0, device: str | torch.device = "cpu",
                  progress: bool = False) -> list[np.ndarray]:
    """:func:`attack_image` over a set (PGD starts seeded from ``seed``, deterministic)."""
    from tqdm import tqdm

    g = torch.Generator().manual_seed(int(seed))
    return [attack_image(model, im, bx, method, epsilon, steps, generator=g, device=device)
            for im, bx in tqdm(list(zip(images, boxes)), desc=f"{method} eps {epsilon:g}",
                               disable=not progress, leave=False)]


def parse_epsilons(text: str) -> list[float]:
    """``"0,2,8"`` -> [0.0, 2.0, 8.0]; refuses negatives, non-numbers and an empty list."""
    try:
        eps = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise AttackError(f"--epsilon must be comma-separated numbers, got {text!r}") from None
    if not eps or any(not (e >= 0 and np.isfinite(e)) for e in eps):
        raise AttackError(f"--epsilon must be finite grey levels >= 0, got {text!r}")
    return eps


def torch_model_of(detector: Any) -> nn.Module | None:
    """The nn.Module of a torch-backend detector, or None (CFAR, ONNX, TensorRT)."""
    m = getattr(detector, "model", None)
    return m if isinstance(m, nn.Module) else None


def white_box_sources(dets: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The ``(spec, detector)`` pairs with a torch model to attack.

    Raises:
        AttackError: none (the attack is white-box).
    """
    sources = [(s, d) for s, d in dets if torch_model_of(d) is not None]
    if not sources:
        raise AttackError("--attack is white-box: give at least one torch model (.pt) "
                          "among the detectors")
    return sources


def attacked_scores(dets: Sequence[tuple[str, Any]], images: Sequence[Any], method: str,
                    epsilons: Sequence[float], steps: int = 10, seed: int = 0,
                    device: str | torch.device = "cpu", progress: bool = False,
                    iou_method: str = "all-point") -> Iterator[dict[str, Any]]:
    """Attack and score: one result per (scored detector, epsilon), yielded as it is done.

    Every torch detector is attacked white-box on its own loss; every other detector (CFAR,
    ONNX) is scored on the images attacked against the first torch detector (a transfer
    attack), so the classical baseline stands beside the models under the same images.
    Epsilon 0 is the clean image (no attack pass).

    Args:
        dets: ``(spec, detector)`` pairs (``sar_atd`` detectors; torch ones are attacked).
        images: :class:`~sar_atd_training.evaluation.dataset.EvalImage` items.
        method, epsilons, steps, seed, device: as :func:`attack_images`.
        iou_method: AP interpolation of :func:`sar_atd.metrics.evaluate`.

    Yields:
        dicts with ``key`` (detector name, with its spec where two share a name;
        ``(transfer from X)`` for transfer rows),
        ``spec``, ``white_box``, ``epsilon``, ``AP25``/``AP50``/``AP70``,
        ``max_abs_perturbation`` (grey levels, measured) and ``attack_seconds``.

    Raises:
        AttackError: no torch model among ``dets`` (the attack is white-box).
    """
    import time

    from sar_atd.metrics import evaluate
    from sar_atd_training.evaluation.runner import run_detector

    sources = white_box_sources(dets)
    names = [d.name for _, d in dets]
    label = {s: d.name if names.count(d.name) == 1 else f"{d.name} [{s}]" for s, d in dets}
    gts = [it.boxes for it in images]
    for src_spec, src in sources:
        model = torch_model_of(src)
        assert model is not None
        for eps in epsilons:
            t0 = time.perf_counter()
            adv = attack_images(model, [it.image for it in images], gts, method, eps,
                                steps=steps, seed=seed, device=device, progress=progress)
            sec = time.perf_counter() - t0
            linf = max(int(np.abs(a.astype(np.int16) - it.image).max()) for a, it in
                       zip(adv, images))
            for spec, det in dets:
                white = spec == src_spec
                if not white and (torch_model_of(det) is not None or src_spec != sources[0][0]):
                    continue  # other torch models are attacked on their own loss
                preds, _ = run_detector(det, [type(it)(it.name, a, it.boxes)
                                              for it, a in zip(images, adv)], progress=False)
                m = evaluate(preds, gts, iou_thresholds=(0.25, 0.5, 0.7), method=iou_method)
                key = label[spec] if white else \
                    f"{label[spec]} (transfer from {label[src_spec]})"
                log.info("%s %s eps %g: AP25 %.3f AP50 %.3f AP70 %.3f", key, method, eps,
                         m["AP25"], m["AP50"], m["AP70"])
                yield {"key": key, "spec": spec, "white_box": white, "epsilon": eps,
                       "AP25": m["AP25"], "AP50": m["AP50"], "AP70": m["AP70"],
                       "max_abs_perturbation": linf, "attack_seconds": sec}


def run_attack_eval(args: Any) -> int:
    """``sar-atd eval --attack {fgsm,pgd} --epsilon E[,E...]``: AP per epsilon.

    Every torch detector is attacked white-box on its own loss; every other detector (CFAR,
    ONNX) is scored on the images attacked against the first torch detector (a transfer
    attack), so the classical baseline stands beside the models under the same images.
    Writes ``attack.json`` and ``attack.md`` into ``--out``.
    """
    from pathlib import Path

    from sar_atd.atomic import atomic_write_json, atomic_write_text
    from sar_atd_training.evaluation.dataset import load_eval_dataset
    from sar_atd_training.evaluation.runner import resolve_detector, to_jsonable

    eps_list = parse_epsilons(args.epsilon or "")
    if args.attack == "pgd" and args.attack_steps < 10:
        raise AttackError(f"PGD needs at least 10 steps, got --attack-steps {args.attack_steps}")
    specs = list(args.detector or []) + list(args.compare or [])
    if not specs or args.dataset is None:
        raise AttackError("--attack needs --detector and --dataset")
    dets = [(s, resolve_detector(s, device=args.device,
                                 score_threshold=args.score_threshold)[0]) for s in specs]
    white_box_sources(dets)  # refuse before loading the dataset
    images, desc = load_eval_dataset(args.dataset, n=args.n, seed=args.seed,
                                     progress=not args.no_progress)
    results: dict[str, dict[str, Any]] = {}
    for r in attacked_scores(dets, images, args.attack, eps_list, steps=args.attack_steps,
                             seed=args.seed, device=args.device,
                             progress=not args.no_progress, iou_method=args.method):
        entry = results.setdefault(r["key"], {"spec": r["spec"], "white_box": r["white_box"],
                                              "epsilons": {}})
        entry["epsilons"][f"{r['epsilon']:g}"] = {
            k: r[k] for k in ("AP25", "AP50", "AP70", "max_abs_perturbation", "attack_seconds")}
    out = Path(args.out or "attack_report")
    doc = {"dataset": desc, "n_images": len(images), "attack": args.attack,
           "pgd_steps": args.attack_steps if args.attack == "pgd" else None,
           "epsilons_grey_levels": eps_list, "seed": args.seed, "results": results}
    atomic_write_json(out / "attack.json", to_jsonable(doc))
    lines = [f"# Adversarial evaluation: {args.attack.upper()}"
             + (f" ({args.attack_steps} steps, random start)" if args.attack == "pgd" else ""),
             "", f"Dataset: {desc}", "",
             "| detector | epsilon | AP25 | AP50 | AP70 | max abs change |",
             "|---|---|---|---|---|---|"]
    for key, r in results.items():
        for e, m in r["epsilons"].items():
            lines.append(f"| {key} | {e} | {m['AP25']:.3f} | {m['AP50']:.3f} | "
                         f"{m['AP70']:.3f} | {m['max_abs_perturbation']} |")
    atomic_write_text(out / "attack.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"report: {out / 'attack.md'}")
    return 0
