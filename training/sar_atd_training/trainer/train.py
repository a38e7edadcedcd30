"""Detector training recipe: ``sar-atd train detector --config training/configs/X.yaml``.

Reads top to bottom like torchvision's ``references/detection/train.py``: parse args, load
the typed recipe, set up (distributed, device, seeds), build data, model, optimizer,
schedule, resume, then alternate training stretches, checkpoints and validations.

Multi-GPU / multi-node: ``torchrun --nproc_per_node=K -m sar_atd_training.trainer.train
--config X.yaml --out runs/NAME`` (DistributedDataParallel; NCCL on CUDA, gloo on CPU; each
rank draws its own data stream; rank 0 alone logs, validates and writes checkpoints; the
batch size is per process).

Outputs in ``--out``: ``config.yaml`` (resolved recipe), ``checkpoint.pt`` (latest full
checkpoint, atomic), ``model_final.pt`` (weights only, for ``load_detector``), ``train.csv``
(per-step scalars), ``val.csv`` + ``val.jsonl`` (validation figures), ``tb/`` (TensorBoard),
``record.json`` (seed, steps, wall time, hardware, final figures).

A run folder is never overwritten silently: a folder that already holds a run is refused
unless ``--resume`` (continue from its checkpoint) or ``--overwrite`` (delete that run's
files first) is given. A resume must use the recipe stored in the checkpoint; only the keys
in :data:`SAFE_RESUME_KEYS` may differ (each change is logged and kept in the record's
``resumes``). On resume, log rows written after the checkpoint by the interrupted process
are dropped, so ``train.csv`` never repeats a step. Files are written atomically; stale
hidden temporaries of a killed write are removed at start.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import platform
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from sar_atd.atomic import atomic_write_json, atomic_write_text, clean_stale_temporaries
from sar_atd.config import to_dict
from sar_atd_training.errors import RunFolderError
from sar_atd_training.trainer.config import TrainConfig, load_train_config
from sar_atd_training.trainer.data import DatasetFactory, DataStream, build_dataset_factory, take
from sar_atd_training.trainer.utils import CsvLog, DistInfo, barrier, init_distributed

log = logging.getLogger("sar_atd_training.trainer")

CHECKPOINT_NAME = "checkpoint.pt"
RUN_FILES = (CHECKPOINT_NAME, "model_final.pt", "config.yaml", "train.csv", "val.csv",
             "val.jsonl", "record.json", "tb")
"""What a training run writes into its folder (``--overwrite`` deletes exactly these)."""
RUN_MARKERS = (CHECKPOINT_NAME, "model_final.pt", "train.csv", "val.csv", "val.jsonl",
               "record.json")
"""Files that make a folder hold a run worth keeping: a start that failed before logging a
step leaves only ``config.yaml`` and ``tb/``, which a new run replaces."""

SAFE_RESUME_KEYS = frozenset({"steps", "device", "log_interval", "val_interval",
                              "val_images", "val_patchworks", "val_score_threshold"})
"""Recipe keys a resume may change: the step count (extends or shortens the run; the
learning-rate schedule follows the new count from the resumed step on), where it runs, and
logging/validation settings that do not touch the weights. Any other difference is refused."""


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def recipe_differences(stored: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Keys (dotted) whose values differ between two recipe dicts: ``{key: (stored, new)}``."""
    a, b = _flatten(stored), _flatten(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def check_resume_recipe(stored: dict[str, Any], new: dict[str, Any], where: Path
                        ) -> dict[str, tuple[Any, Any]]:
    """Refuse a resume whose recipe differs from the stored one beyond the safe keys.

    A top-level key missing from the stored recipe (added to :class:`TrainConfig` after
    that run started) counts as its default value, so older runs stay resumable.

    Returns:
        The accepted (safe) differences.

    Raises:
        RunFolderError: listing every differing key that is not in :data:`SAFE_RESUME_KEYS`.
    """
    defaults = to_dict(TrainConfig())
    stored = {**{k: v for k, v in defaults.items() if k not in stored}, **stored}
    diff = recipe_differences(stored, new)
    unsafe = {k: v for k, v in diff.items() if k.split(".")[0] not in SAFE_RESUME_KEYS}
    if unsafe:
        listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in unsafe.items())
        raise RunFolderError(
            f"--resume: the recipe differs from the one {where} was trained with ({listed}); "
            f"only {sorted(SAFE_RESUME_KEYS)} may change on resume")
    return diff


def prepare_run_folder(out_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Check (and for ``overwrite`` clear) a run folder before any work starts.

    Raises:
        RunFolderError: the folder holds a run and neither ``resume`` nor ``overwrite`` is
            given, both are given, or the path is a file / not writable.
    """
    if resume and overwrite:
        raise RunFolderError("--resume and --overwrite contradict each other")
    if out_dir.exists() and not out_dir.is_dir():
        raise RunFolderError(f"run folder {out_dir} is a file")
    probe = out_dir if out_dir.exists() else next(
        (p for p in out_dir.parents if p.exists()), Path("."))
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise RunFolderError(f"cannot write the run folder {out_dir}: "
                             f"{probe} is not a writable folder")
    present = [n for n in RUN_FILES if (out_dir / n).exists()]
    markers = [n for n in RUN_MARKERS if n in present]
    if markers and not resume and not overwrite:
        raise RunFolderError(
            f"run folder {out_dir} already holds a run ({', '.join(markers)}); continue it "
            "with --resume, replace it with --overwrite, or choose another --out")
    if overwrite or (present and not markers and not resume):
        for n in present:
            p = out_dir / n
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    for n in RUN_FILES:
        clean_stale_temporaries(out_dir / n)


def _row_step(line: str, jsonl: bool, col: int, width: int) -> int | None:
    """Step of one log line, or None for a line cut short by a killed write."""
    try:
        if jsonl:
            return int(json.loads(line)["step"])
        fields = next(csv.reader([line]))
        return int(float(fields[col])) if len(fields) == width else None
    except (ValueError, KeyError, IndexError, TypeError, StopIteration):
        return None


def _drop_rows_after(path: Path, step: int) -> None:
    """Rewrite a CSV/JSONL log keeping only complete rows of steps <= ``step`` (atomic).

    Rows after the checkpoint were logged by the interrupted process and are logged again
    by the resumed one; a partial last line of a killed write is dropped too.
    """
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    jsonl = path.suffix == ".jsonl"
    header: list[str] = [] if jsonl else lines[:1]
    names = next(csv.reader([header[0]])) if header else []
    col = names.index("step") if "step" in names else 0
    rows = lines if jsonl else lines[1:]
    kept = [r for r in rows if r.strip() and r.endswith("\n")
            and (k := _row_step(r, jsonl, col, len(names))) is not None and k <= step]
    if len(kept) != len(rows):
        atomic_write_text(path, "".join(header + kept))


def get_args_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Arguments of ``sar-atd train detector`` (also the torchrun entry point)."""
    parser = parser or argparse.ArgumentParser(description="train a SAR-ATD detector")
    parser.add_argument("--config", required=True, type=Path, help="recipe YAML")
    parser.add_argument("--out", type=Path, default=None,
                        help="run folder (default runs/<config stem>)")
    parser.add_argument("--resume", action="store_true",
                        help="resume from <out>/checkpoint.pt (exactly where it stopped; the "
                             "recipe must match the stored one except steps, device and "
                             "logging/validation settings)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the run already in --out and start afresh")
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's steps")
    parser.add_argument("--device", default=None, help="override the recipe's device")
    parser.add_argument("--bank", type=Path, default=None,
                        help="override data.bank (signature bank folder from sar-atd simulate)")
    parser.add_argument("--backgrounds", type=Path, default=None,
                        help="override data.backgrounds (folder of clutter scenes)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    return parser


def resolve_device(name: str, dist: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        if dist.enabled:
            device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with momentum; ``norm_weight_decay`` for normalisation weights and all biases."""
    norm_types = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.GroupNorm,
                  torch.nn.LayerNorm)
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            (no_decay if isinstance(module, norm_types) or name == "bias" else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": cfg.norm_weight_decay}]
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


class _Validation:
    """Fixed validation sets: the synthetic split and (when present) real patchworks."""

    def __init__(self, cfg: TrainConfig, factory: DatasetFactory) -> None:
        self.sets: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        if cfg.val_images:
            samples = take(factory, cfg.val_seed, cfg.val_images)
            self.sets["synthetic"] = ([s[0].numpy() for s in samples],
                                      [s[1]["boxes"].numpy() for s in samples])
        if cfg.val_patchworks:
            from sar_atd_training.paths import mstar_chips_dir

            chips = mstar_chips_dir()
            if chips is None:
                log.info("no real MSTAR data (../shared/data): patchwork validation skipped")
            else:
                from sar_atd_training.evaluation.patchwork import build_patchworks

                pws = build_patchworks(chips, n=cfg.val_patchworks, seed=0, progress=False)
                self.sets["patchwork"] = ([p.image for p in pws], [p.boxes for p in pws])

    def run(self, model: torch.nn.Module, device: torch.device,
            cfg: TrainConfig) -> dict[str, dict[str, Any]]:
        from sar_atd_training.trainer.engine import evaluate

        return {name: evaluate(model, imgs, gts, device, cfg.val_score_threshold)
                for name, (imgs, gts) in self.sets.items()}


def train(cfg: TrainConfig, out_dir: str | Path, *, resume: bool = False,
          overwrite: bool = False, dataset_factory: DatasetFactory | None = None,
          stop_after: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Train a detector with recipe ``cfg`` into ``out_dir``.

    Args:
        cfg: the recipe.
        out_dir: run folder (checkpoints, logs).
        resume: continue from ``out_dir/checkpoint.pt`` (same recipe, see
            :data:`SAFE_RESUME_KEYS`).
        overwrite: delete the run already in ``out_dir`` first (without it, or ``resume``,
            a folder holding a run is refused).
        dataset_factory: ``factory(seed) -> iterable of (uint8 image, target)``; default
            built from ``cfg.data`` (:data:`~sar_atd_training.trainer.data.DATASETS`).
        stop_after: stop (like a kill) after this global step, once its checkpoint, if any,
            is written; None runs to ``cfg.steps``.
        progress: show a tqdm bar (rank 0).

    Returns:
        the run record (also written to ``out_dir/record.json`` on completion).

    Raises:
        CheckpointError: ``resume`` with a missing, corrupt or mismatched checkpoint.
        RunFolderError: the folder holds a run (no ``resume``/``overwrite``), is not
            writable, or the resumed recipe differs beyond the safe keys.
    """
    from torch.nn.parallel import DistributedDataParallel
    from tqdm import tqdm

    from sar_atd.errors import CheckpointError
    from sar_atd.models import build_detector, save_weights
    from sar_atd_training.trainer.checkpoint import (
        load_training_checkpoint,
        save_training_checkpoint,
    )
    from sar_atd_training.trainer.engine import train_one_epoch

    out_dir = Path(out_dir)
    device_type = "cuda" if cfg.device.startswith("cuda") or (
        cfg.device == "auto" and torch.cuda.is_available()) else "cpu"
    dist = init_distributed(device_type)
    device = resolve_device(cfg.device, dist)
    use_amp = cfg.amp and device.type == "cuda"
    if dist.is_main:
        prepare_run_folder(out_dir, resume=resume, overwrite=overwrite)
        out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)  # same initial weights on every rank
    factory = dataset_factory or build_dataset_factory(cfg.data, cfg.input_size)

    model_kwargs = cfg.model_build_kwargs()
    raw_model = build_detector(cfg.model, **model_kwargs).to(device)
    if cfg.init_weights is not None and not resume:  # fine-tuning: start from trained weights
        from sar_atd.models.checkpoint import load_state, read_checkpoint

        init = read_checkpoint(cfg.init_weights)
        if init["model_name"] != cfg.model:
            raise CheckpointError(f"init_weights {cfg.init_weights}: holds a "
                                  f"{init['model_name']} model, the recipe trains {cfg.model}")
        load_state(raw_model, init["model"], str(cfg.init_weights))
    optimizer = build_optimizer(raw_model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cfg.lr_factor)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    step, wall_before = 0, 0.0
    resumes: list[dict[str, Any]] = []
    ckpt_path = out_dir / CHECKPOINT_NAME
    if resume:
        if not ckpt_path.is_file():
            raise CheckpointError(f"--resume: no checkpoint at {ckpt_path}")
        ckpt = load_training_checkpoint(ckpt_path, model=raw_model, model_name=cfg.model,
                                        model_kwargs=model_kwargs, optimizer=optimizer,
                                        scheduler=scheduler, scaler=scaler)
        step, wall_before = int(ckpt["step"]), float(ckpt.get("wall_time_s", 0.0))
        changed = check_resume_recipe(ckpt.get("config") or {}, to_dict(cfg), ckpt_path)
        resumes = list(ckpt.get("resumes") or [])
        resumes.append({"step": step, "changed": {k: [a, b] for k, (a, b) in changed.items()}})
        if dist.is_main:
            log.info("resumed from %s at step %d%s", ckpt_path, step,
                     "".join(f"; {k}: {a!r} -> {b!r}" for k, (a, b) in changed.items()))
            for name in ("train.csv", "val.csv", "val.jsonl"):
                _drop_rows_after(out_dir / name, step)
    model: torch.nn.Module = raw_model
    if dist.enabled:
        model = DistributedDataParallel(
            raw_model, device_ids=[device.index] if device.type == "cuda" else None)

    stream = DataStream(factory, cfg.batch_size, cfg.seed, dist.rank, cfg.num_workers)
    stream.reset(step)
    validation = _Validation(cfg, factory) if dist.is_main and (
        cfg.val_images or cfg.val_patchworks) else None

    writer = csv_log = None
    if dist.is_main:
        history = "".join(
            f"# resumed at step {r['step']}: "
            + ("; ".join(f"{k} {v[0]!r} -> {v[1]!r}" for k, v in r["changed"].items())
               or "same recipe") + "\n" for r in resumes)
        atomic_write_text(out_dir / "config.yaml",
                          history + yaml.safe_dump(to_dict(cfg), sort_keys=False))
        csv_log = CsvLog(out_dir / "train.csv")
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out_dir / "tb"), purge_step=step)
        except ImportError:  # tensorboard is optional at run time
            log.warning("tensorboard not installed: no TensorBoard logs")
    pending: list[dict[str, Any]] = []

    def on_step(s: int, row: dict[str, float]) -> None:
        if not dist.is_main:
            return
        pending.append({"step": s + 1, **row})
        if (s + 1) % cfg.log_interval == 0 or s + 1 == cfg.steps:
            for r in pending:
                csv_log.write(r)  # type: ignore[union-attr]
                if writer is not None:
                    for k, v in r.items():
                        if k != "step" and isinstance(v, float) and math.isfinite(v):
                            writer.add_scalar(f"train/{k}", v, r["step"])
            pending.clear()
            if not progress:
                log.info("step %d/%d loss %.4f lr %.2e %.2f s/step", s + 1, cfg.steps,
                         row["loss"], row["lr"], row["s_per_step"])

    def validate(s: int) -> dict[str, Any]:
        if validation is None:
            return {}
        res = validation.run(raw_model, device, cfg)
        val_csv = CsvLog(out_dir / "val.csv")
        for name, r in res.items():
            aps = {k: v for k, v in r.items() if k.startswith("AP") or k == "ap_50_95"}
            log.info("validation %s @ step %d: %s", name, s,
                     "  ".join(f"{k} {v:.3f}" for k, v in aps.items()))
            val_csv.write({"step": s, "set": name, **aps, "seconds": r["seconds"]})
            if writer is not None:
                for k, v in aps.items():
                    writer.add_scalar(f"val_{name}/{k}", v, s)
        with (out_dir / "val.jsonl").open("a") as f:
            slim = {n: {k: v for k, v in r.items() if k not in ("pr_curves", "ap_vs_iou")}
                    for n, r in res.items()}
            f.write(json.dumps({"step": s, **slim}) + "\n")
        return res

    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.model}", unit="step",
               disable=not (progress and dist.is_main), dynamic_ncols=True)
    t_start = time.perf_counter()
    last_val: dict[str, Any] = {}
    try:
        while step < end:
            boundaries = [end, (step // cfg.checkpoint_interval + 1) * cfg.checkpoint_interval]
            if cfg.val_interval:
                boundaries.append((step // cfg.val_interval + 1) * cfg.val_interval)
            chunk_end = min(boundaries)
            train_one_epoch(model, raw_model, optimizer, scheduler, scaler, stream, cfg, step,
                            chunk_end, device, dist, use_amp, on_step, bar)
            step = chunk_end
            if step % cfg.checkpoint_interval == 0 or step == cfg.steps:
                if dist.is_main:
                    save_training_checkpoint(
                        ckpt_path, model=raw_model, model_name=cfg.model,
                        model_kwargs=model_kwargs, optimizer=optimizer, scheduler=scheduler,
                        scaler=scaler, config=to_dict(cfg), step=step,
                        data_state=stream.state(), world_size=dist.world_size,
                        wall_time_s=wall_before + time.perf_counter() - t_start,
                        resumes=resumes)
                barrier(dist)
                stream.reset(step)  # new segment: what a resume from here will see
            if dist.is_main and cfg.val_interval and step % cfg.val_interval == 0 \
                    and step < cfg.steps:
                last_val = validate(step)
            barrier(dist)
    finally:
        bar.close()
        if writer is not None:
            writer.flush()
    wall = wall_before + time.perf_counter() - t_start
    record: dict[str, Any] = {"model": cfg.model, "seed": cfg.seed, "step": step,
                              "steps": cfg.steps, "wall_time_s": wall}
    if resumes:
        record["resumes"] = resumes
    if step >= cfg.steps and dist.is_main:
        last_val = validate(step)
        record.update({
            "batch_size": cfg.batch_size, "world_size": dist.world_size,
            "hardware": {"device": str(device), "cpu": platform.processor() or platform.machine(),
                         "torch_threads": torch.get_num_threads(),
                         "cuda": torch.cuda.get_device_name(device) if device.type == "cuda"
                         else None},
            "torch": str(torch.__version__),  # TorchVersion is not weights_only-loadable
            "validation": {n: {k: v for k, v in r.items() if k.startswith("AP")
                               or k in ("ap_50_95", "n_images", "n_gt")}
                           for n, r in last_val.items()},
        })
        save_weights(out_dir / "model_final.pt", raw_model, cfg.model, model_kwargs,
                     extra={"config": to_dict(cfg), "record": record, "step": step})
        atomic_write_json(out_dir / "record.json", record, indent=2)
        log.info("done: %d steps in %.0f s -> %s", step, wall, out_dir / "model_final.pt")
    if writer is not None:
        writer.close()
    return record


def main(args: argparse.Namespace) -> int:
    from sar_atd_training.cliutil import check_device, check_input_file, check_output_dir

    check_input_file(args.config, "--config", (".yaml", ".yml"))
    if args.device is not None:
        check_device(args.device)
    overrides: dict[str, Any] = {}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.device is not None:
        overrides["device"] = args.device
    cfg = load_train_config(args.config, overrides)
    for key in ("bank", "backgrounds"):
        value = getattr(args, key, None)
        if value is not None:
            cfg.data[key] = str(value)
    out = args.out or Path("runs") / args.config.stem
    check_output_dir(out, "--out")
    check_device(cfg.device, "device")
    train(cfg, out, resume=args.resume, overwrite=getattr(args, "overwrite", False),
          progress=not args.no_progress)
    return 0


if __name__ == "__main__":  # torchrun entry point
    import sys

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main(get_args_parser().parse_args()))
