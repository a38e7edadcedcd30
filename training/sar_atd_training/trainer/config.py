"""Typed training recipe: :class:`TrainConfig`, loaded from a YAML file with strict keys.

Learning-rate schedule (documented once): linear warm-up from ``warmup_factor * lr`` to
``lr`` over ``warmup_steps``, then either ``cosine`` decay to ``min_lr_factor * lr`` at
``steps``, ``multistep`` (x ``gamma`` at each fraction of ``steps`` in ``milestones``) or
``constant``. Steps are optimizer steps; one step sees ``batch_size`` images per process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sar_atd.config import from_dict, load_yaml
from sar_atd.errors import ConfigError


@dataclass
class TrainConfig:
    """One detector-training recipe.

    Attributes:
        model: registry name (:data:`sar_atd.models.MODELS`).
        model_kwargs: builder keyword arguments (anchors, norm, thresholds...).
        backbone_weights: local ImageNet backbone state dict, or None (from scratch).
        init_weights: SAR-ATD detector weights (``.pt``, same model) to start from, i.e.
            fine-tuning; None: from scratch (or ``backbone_weights``). Ignored on resume.
        input_size: side in pixels of the square training crops (native scale; the models
            are fully convolutional, so a model trained on 320 px crops runs on 640 px tiles).
        batch_size: images per optimizer step and process.
        steps: total optimizer steps.
        lr, momentum, weight_decay: SGD (paper: momentum 0.9, weight decay 5e-4).
        norm_weight_decay: weight decay of normalisation weights and biases.
        warmup_steps, warmup_factor: linear warm-up from ``warmup_factor * lr``.
        schedule: ``cosine`` | ``multistep`` | ``constant`` after warm-up.
        min_lr_factor: end of the cosine as a fraction of ``lr``.
        milestones, gamma: multistep decay points (fractions of ``steps``) and factor.
        grad_clip_norm: clip the global gradient norm (None: no clipping).
        fgsm_epsilon: budget of each adversarial sample in 8-bit grey levels (the FGSM step,
            or the PGD L-inf radius); 0 disables adversarial training unless
            ``adv_epsilons`` is set.
        fgsm_fraction: share of each batch replaced by its adversarial version (either method).
        adv_method: ``fgsm`` (one signed-gradient step, the paper's recipe) or ``pgd``
            (``adv_steps`` projected steps from a random start in the ball, Madry et al. 2018;
            the PGD sample is rounded to whole grey levels, a valid uint8 image).
        adv_steps: PGD iterations (ignored by FGSM).
        adv_step_size: PGD step in grey levels (None: ``2.5 * epsilon / adv_steps``).
        adv_random_start: PGD starts from a uniform point in the ball (else from the image).
        adv_epsilons: when non-empty, each adversarial sample draws its budget uniformly from
            this list (grey levels) instead of using ``fgsm_epsilon``: one recipe covers
            several attack strengths.
        amp: mixed precision (float16 autocast + GradScaler), used on CUDA only.
        seed: seed of the model init, the data stream and the FGSM sample choice.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda[:N]``.
        log_interval: steps between log lines / CSV rows.
        checkpoint_interval: steps between checkpoints (the data stream is re-seeded at each,
            which makes resume exact).
        val_interval: steps between validations (0: only at the end).
        val_images: size of the synthetic validation split (0 disables it).
        val_seed: seed of the synthetic validation split (disjoint from training seeds).
        val_patchworks: number of REAL MSTAR patchworks to validate on when
            ../shared/data is present (0 disables).
        val_score_threshold: score threshold of validation predictions.
        num_workers: DataLoader workers generating training data.
        data: data section; ``kind`` picks the dataset (``overlay`` or ``toy``), the other
            keys go to that dataset's config.
    """

    model: str = "retinanet_r18_fpn"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    backbone_weights: Path | None = None
    init_weights: Path | None = None
    input_size: int = 640
    batch_size: int = 2
    steps: int = 1000
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    norm_weight_decay: float = 0.0
    warmup_steps: int = 100
    warmup_factor: float = 0.001
    schedule: Literal["cosine", "multistep", "constant"] = "cosine"
    min_lr_factor: float = 0.01
    milestones: tuple[float, ...] = (0.67, 0.89)
    gamma: float = 0.1
    grad_clip_norm: float | None = 10.0
    fgsm_epsilon: float = 2.0
    fgsm_fraction: float = 0.5
    adv_method: Literal["fgsm", "pgd"] = "fgsm"
    adv_steps: int = 7
    adv_step_size: float | None = None
    adv_random_start: bool = True
    adv_epsilons: tuple[float, ...] = ()
    amp: bool = True
    seed: int = 0
    device: str = "auto"
    log_interval: int = 10
    checkpoint_interval: int = 200
    val_interval: int = 0
    val_images: int = 32
    val_seed: int = 1_000_003
    val_patchworks: int = 200
    val_score_threshold: float = 0.01
    num_workers: int = 0
    data: dict[str, Any] = field(default_factory=lambda: {"kind": "overlay"})

    def __post_init__(self) -> None:
        checks = [
            (self.input_size >= 32, f"input_size must be >= 32, got {self.input_size}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}"),
            (0 < self.warmup_factor <= 1, "warmup_factor must be in (0, 1]"),
            (0 <= self.min_lr_factor <= 1, "min_lr_factor must be in [0, 1]"),
            (all(0 < m < 1 for m in self.milestones), "milestones must be fractions in (0, 1)"),
            (0 <= self.fgsm_epsilon <= 255, f"fgsm_epsilon (8-bit units) must be in [0, 255], "
                                            f"got {self.fgsm_epsilon}"),
            (0 <= self.fgsm_fraction <= 1, f"fgsm_fraction must be in [0, 1], "
                                           f"got {self.fgsm_fraction}"),
            (self.adv_method in ("fgsm", "pgd"), f"adv_method must be 'fgsm' or 'pgd', "
                                                 f"got {self.adv_method!r}"),
            (self.adv_steps >= 1, f"adv_steps must be >= 1, got {self.adv_steps}"),
            (self.adv_step_size is None or self.adv_step_size > 0,
             f"adv_step_size must be > 0 or null, got {self.adv_step_size}"),
            (all(0 <= e <= 255 for e in self.adv_epsilons),
             f"adv_epsilons (8-bit units) must be in [0, 255], got {list(self.adv_epsilons)}"),
            (self.log_interval >= 1, "log_interval must be >= 1"),
            (self.checkpoint_interval >= 1, "checkpoint_interval must be >= 1"),
            (self.val_interval >= 0, "val_interval must be >= 0"),
            (self.val_images >= 0 and self.val_patchworks >= 0, "validation sizes must be >= 0"),
            (self.num_workers >= 0, "num_workers must be >= 0"),
            (isinstance(self.data.get("kind"), str), "data.kind must name a dataset"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
        if self.grad_clip_norm is not None and self.grad_clip_norm <= 0:
            raise ValueError(f"grad_clip_norm must be > 0 or null, got {self.grad_clip_norm}")

    @property
    def adversarial(self) -> bool:
        """Whether training replaces part of each batch with adversarial samples."""
        budget = max(self.adv_epsilons) if self.adv_epsilons else self.fgsm_epsilon
        return budget > 0 and self.fgsm_fraction > 0

    def lr_factor(self, step: int) -> float:
        """Multiplier of ``lr`` at optimizer step ``step`` (0-based)."""
        if step < self.warmup_steps:
            alpha = step / self.warmup_steps
            return self.warmup_factor * (1 - alpha) + alpha
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "multistep":
            return self.gamma ** sum(step >= m * self.steps for m in self.milestones)
        span = max(1, self.steps - self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr_factor + (1 - self.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * t))

    def model_build_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`sar_atd.models.build_detector` for this recipe."""
        kw = dict(self.model_kwargs)
        if self.backbone_weights is not None:
            kw["backbone_weights"] = str(self.backbone_weights)
        return kw


def load_train_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a recipe YAML (strict keys) with optional top-level overrides.

    Raises:
        ConfigError: unreadable or empty file, unknown key (the ``data`` section included),
            wrong type or out-of-range value.
    """
    data = load_yaml(path)
    if not data:
        raise ConfigError(f"config {path} is empty (a recipe must set at least its model "
                          "and data; see training/configs/)")
    data.update(overrides or {})
    try:
        cfg = from_dict(TrainConfig, data, where=str(path))
    except ValueError as err:  # range checks of __post_init__
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{path}: {err}") from None
    from sar_atd_training.trainer.data import check_data_section

    check_data_section(cfg.data, where=f"{path}: data")
    return cfg
