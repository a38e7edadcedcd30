"""Detector trainer: loss goes down, FGSM norm/range, BatchNorm untouched by the attack,
exact resume, clear checkpoint errors, strict recipes, DDP under torchrun."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sar_atd.config import from_dict
from sar_atd.errors import CheckpointError, ConfigError
from sar_atd.models import build_detector
from sar_atd_training.trainer.config import TrainConfig, load_train_config
from sar_atd_training.trainer.data import DataStream, ToyConfig, ToyDataset, take
from sar_atd_training.trainer.fgsm import fgsm_perturb, frozen_bn_stats
from sar_atd_training.trainer.train import train

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


def tiny_config(**kw) -> TrainConfig:
    base = dict(model="retinanet_r18_fpn", model_kwargs={"fpn_channels": 64}, input_size=96,
                batch_size=2, steps=4, lr=0.01, warmup_steps=1, checkpoint_interval=2,
                log_interval=1, fgsm_epsilon=2.0, fgsm_fraction=0.5, val_images=0,
                val_patchworks=0, data={"kind": "toy", "side_px": [12, 30]})
    base.update(kw)
    return from_dict(TrainConfig, base)


def toy_batch(n: int = 2, size: int = 96, seed: int = 0):
    samples = take(lambda s: ToyDataset(ToyConfig(size=size, side_px=(12, 30)), s), seed, n)
    images = [s[0].float()[None] for s in samples]
    targets = [s[1] for s in samples]
    return images, targets


def read_losses(path: Path) -> list[float]:
    with path.open() as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def test_few_steps_reduce_the_loss(tmp_path) -> None:
    """Eight steps on the same two tiny images lower the training loss."""
    fixed = take(lambda s: ToyDataset(ToyConfig(size=96, side_px=(14, 30)), s), 3, 2)
    cfg = tiny_config(steps=8, warmup_steps=0, schedule="constant", fgsm_epsilon=0.0,
                      checkpoint_interval=8, lr=0.01)
    train(cfg, tmp_path / "run", dataset_factory=lambda seed: iter(fixed * 1000),
          progress=False)
    losses = read_losses(tmp_path / "run" / "train.csv")
    assert len(losses) == 8
    assert np.mean(losses[-2:]) < 0.8 * losses[0], losses
    # the final weights file is what users deploy: it must load safely (weights_only)
    from sar_atd.backends import load_detector
    from sar_atd.detectors import Detections

    det = load_detector(tmp_path / "run" / "model_final.pt")
    assert isinstance(det.detect(fixed[0][0].numpy()), Detections)
    # and the release record gathers the run: loss curve of every logged step, plot written
    import argparse

    from sar_atd_training.trainer import record

    record.main(argparse.Namespace(run=tmp_path / "run", out=tmp_path / "rel" / "m"))
    rec = json.loads((tmp_path / "rel" / "m_record.json").read_text())
    assert [c["step"] for c in rec["loss_curve"]] == list(range(1, 9))
    assert rec["config"]["steps"] == 8 and (tmp_path / "rel" / "m_loss.png").stat().st_size > 0


def test_fgsm_linf_norm_and_range() -> None:
    """|x_adv - x| is exactly eps grey levels (max), on the 8-bit grid, inside [0, 255]."""
    torch.manual_seed(0)
    model = build_detector("retinanet_r18_fpn", fpn_channels=64).train()
    images, targets = toy_batch()
    images[1][0, :8, :8] = 0.0  # saturated pixels must stay in range
    images[1][0, 8:16, :8] = 255.0
    adv = fgsm_perturb(model, images, targets, epsilon=3.0)
    for x, a in zip(images, adv):
        d = (a - x).abs()
        assert float(d.max()) == 3.0
        assert float(a.min()) >= 0.0 and float(a.max()) <= 255.0
        assert torch.equal(a, a.round())  # integer epsilon keeps 8-bit levels
        inside = (x >= 3) & (x <= 252)
        vals = set(torch.unique(d[inside]).tolist())
        assert vals <= {0.0, 3.0} and 3.0 in vals
    half = fgsm_perturb(model, images[:1], targets[:1], epsilon=1.5)[0]
    assert float((half - images[0]).abs().max()) == 1.5
    with pytest.raises(ValueError, match="epsilon"):
        fgsm_perturb(model, images, targets, epsilon=-1.0)


def test_attack_pass_leaves_batchnorm_stats_unchanged() -> None:
    torch.manual_seed(0)
    model = build_detector("retinanet_r18_fpn", fpn_channels=64).train()
    images, targets = toy_batch()
    bn = model.backbone.body.bn1

    def snap():
        return {k: v.clone() for k, v in model.state_dict().items()
                if "running" in k or "num_batches" in k}

    before = snap()
    fgsm_perturb(model, images, targets, epsilon=2.0)
    after = snap()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # control: an ordinary training forward does move them (the check can fail)
    model(images, targets)
    assert not torch.equal(before["backbone.body.bn1.running_mean"], bn.running_mean)
    with frozen_bn_stats(model):
        model(images, targets)
    assert int(bn.num_batches_tracked) == int(before["backbone.body.bn1.num_batches_tracked"]) + 1


def test_resume_reproduces_uninterrupted_weights(tmp_path) -> None:
    """4 steps straight == 2 steps, stop (kill), resume for 2 more: bit-identical weights."""
    cfg = tiny_config()
    straight = train(cfg, tmp_path / "a", progress=False)
    assert straight["step"] == 4
    partial = train(cfg, tmp_path / "b", stop_after=2, progress=False)
    assert partial["step"] == 2 and not (tmp_path / "b" / "model_final.pt").exists()
    train(cfg, tmp_path / "b", resume=True, progress=False)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    mom_a = [s["momentum_buffer"] for s in a["optimizer"]["state"].values()]
    mom_b = [s["momentum_buffer"] for s in b["optimizer"]["state"].values()]
    assert all(torch.equal(x, y) for x, y in zip(mom_a, mom_b))
    assert read_losses(tmp_path / "a" / "train.csv") == read_losses(tmp_path / "b" / "train.csv")
    # ... and differs from a run with another seed (the comparison is meaningful)
    other = tiny_config(seed=1)
    train(other, tmp_path / "c", stop_after=2, progress=False)
    c = torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=True)
    assert not torch.equal(c["model"]["head.classification_head.cls_logits.weight"],
                           a["model"]["head.classification_head.cls_logits.weight"])


def test_corrupt_and_mismatched_checkpoints(tmp_path) -> None:
    cfg = tiny_config(steps=2)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(cfg, tmp_path / "empty", resume=True, progress=False)
    train(cfg, tmp_path / "run", stop_after=2, progress=False)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    # another architecture
    with pytest.raises(CheckpointError, match="trained with model"):
        train(tiny_config(steps=4, model_kwargs={"fpn_channels": 32}), tmp_path / "run",
              resume=True, progress=False)
    # truncated file
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt"):
        train(tiny_config(steps=4), tmp_path / "run", resume=True, progress=False)
    # a torch file that is not a SAR-ATD checkpoint
    torch.save({"weights": torch.zeros(3)}, ckpt)
    with pytest.raises(CheckpointError, match="not a SAR-ATD checkpoint"):
        train(tiny_config(steps=4), tmp_path / "run", resume=True, progress=False)


def test_data_stream_is_reseeded_per_rank_and_step() -> None:
    factory = lambda s: ToyDataset(ToyConfig(size=32, side_px=(4, 8)), s)  # noqa: E731
    s0, s1 = DataStream(factory, 2, seed=0, rank=0), DataStream(factory, 2, seed=0, rank=1)
    s0.reset(10)
    s1.reset(10)
    a, b = s0.next()[0][0], s1.next()[0][0]
    assert not torch.equal(a, b)
    s0.reset(10)
    assert torch.equal(s0.next()[0][0], a)
    assert s0.state()["segment_start"] == 10 and s0.state()["batches_consumed"] == 1


def test_config_is_strict_and_schedule_documented(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(TrainConfig, {"learning_rate": 0.1})
    with pytest.raises(ConfigError, match="fgsm_fraction"):
        from_dict(TrainConfig, {"fgsm_fraction": 1.5})
    cfg = from_dict(TrainConfig, {"steps": 100, "warmup_steps": 10, "warmup_factor": 0.001,
                                  "schedule": "cosine", "min_lr_factor": 0.0})
    assert cfg.lr_factor(0) == pytest.approx(0.001)
    assert cfg.lr_factor(10) == pytest.approx(1.0)
    assert cfg.lr_factor(55) == pytest.approx(0.5)
    assert cfg.lr_factor(100) == pytest.approx(0.0, abs=1e-9)
    ms = from_dict(TrainConfig, {"steps": 100, "warmup_steps": 0, "schedule": "multistep",
                                 "milestones": [0.5, 0.75], "gamma": 0.1})
    assert [ms.lr_factor(s) for s in (0, 50, 80)] == pytest.approx([1.0, 0.1, 0.01])


RECIPES = ("fasterrcnn_vgg16_paper", "retinanet_r50_paper", "cpu_quick")


@pytest.mark.parametrize("recipe", [REPO / "training" / "configs" / f"{n}.yaml" for n in RECIPES],
                         ids=lambda p: p.stem)
def test_recipes_load_and_build(recipe: Path) -> None:
    cfg = load_train_config(recipe)
    assert cfg.momentum == 0.9 and cfg.weight_decay == 5e-4
    assert cfg.fgsm_epsilon > 0 and cfg.fgsm_fraction > 0
    build_detector(cfg.model, **cfg.model_build_kwargs())


@pytest.mark.slow
def test_ddp_two_processes_gloo(tmp_path) -> None:
    """``torchrun --nproc_per_node=2`` on CPU (gloo): 2 steps, rank 0 writes the checkpoint."""
    cfg_path = tmp_path / "ddp.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "model": "retinanet_r18_fpn", "model_kwargs": {"fpn_channels": 32}, "input_size": 96,
        "batch_size": 2, "steps": 2, "warmup_steps": 0, "checkpoint_interval": 2,
        "log_interval": 1, "val_images": 0, "val_patchworks": 0, "device": "cpu",
        "data": {"kind": "toy", "side_px": [8, 20]}}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "sar_atd_training.trainer.train", "--config", str(cfg_path),
         "--out", str(tmp_path / "run"), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
        start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks
        proc.communicate()
        pytest.fail("torchrun did not finish in 180 s")
    assert proc.returncode == 0, out[-3000:]
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and ckpt["step"] == 2
    assert len(read_losses(tmp_path / "run" / "train.csv")) == 2


def _tree_digest(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_existing_run_is_never_overwritten(tmp_path) -> None:
    """A second run into a folder holding a run is refused before any work, leaving every
    file as it was; --overwrite replaces it cleanly (train.csv starts again at step 1)."""
    from sar_atd_training.errors import RunFolderError

    run = tmp_path / "run"
    train(tiny_config(steps=2), run, progress=False)
    before = _tree_digest(run)
    with pytest.raises(RunFolderError, match=r"already holds a run .*--resume.*--overwrite"):
        train(tiny_config(steps=1), run, progress=False)
    assert _tree_digest(run) == before
    with pytest.raises(RunFolderError, match="contradict"):
        train(tiny_config(steps=1), run, resume=True, overwrite=True, progress=False)
    train(tiny_config(steps=1), run, overwrite=True, progress=False)
    with (run / "train.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1]
    assert yaml.safe_load((run / "config.yaml").read_text())["steps"] == 1
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunFolderError, match="is a file"):
        train(tiny_config(steps=1), tmp_path / "afile", progress=False)


def test_resume_checks_the_recipe_and_never_repeats_a_step(tmp_path) -> None:
    """A resume with another recipe is refused with the differing keys listed; a safe change
    (the step count) is accepted, recorded, and claimed by config.yaml; rows the interrupted
    process logged after its checkpoint are dropped, so train.csv holds each step once."""
    from sar_atd_training.errors import RunFolderError

    run = tmp_path / "run"
    train(tiny_config(steps=4), run, stop_after=2, progress=False)
    with (run / "train.csv").open("a") as f:  # a row the killed process wrote after step 2
        f.write("3" + ",1.0" * (len((run / "train.csv").read_text().splitlines()[0]
                                    .split(",")) - 1) + "\n")
        f.write("4,0.9")  # ... and a row cut short by the kill
    with pytest.raises(RunFolderError,
                       match=r"fgsm_epsilon: 2\.0 -> 1\.0; lr: 0\.01 -> 0\.02\)"):
        train(tiny_config(steps=4, lr=0.02, fgsm_epsilon=1.0), run, resume=True,
              progress=False)
    rec = train(tiny_config(steps=5), run, resume=True, progress=False)
    with (run / "train.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5]
    assert rec["resumes"] == [{"step": 2, "changed": {"steps": [4, 5]}}]
    text = (run / "config.yaml").read_text()
    assert yaml.safe_load(text)["steps"] == 5
    assert text.startswith("# resumed at step 2: steps 4 -> 5\n")


def test_empty_config_and_unknown_data_keys_are_errors(tmp_path) -> None:
    """An empty recipe file is an error (not a silent full default run); unknown keys of
    the data section are refused when the recipe is read, before any work."""
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_train_config(empty)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"data": {"kind": "overlay", "banks": "x"}}))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['banks'\] for kind 'overlay'"):
        load_train_config(bad)
    bad.write_text(yaml.safe_dump({"data": {"kind": "toy", "sides": 3}}))
    with pytest.raises(ConfigError, match=r"\['sides'\]"):
        load_train_config(bad)
    bad.write_text(yaml.safe_dump({"data": {"kind": "real"}}))
    with pytest.raises(ConfigError, match="unknown kind 'real'"):
        load_train_config(bad)
    bad.write_text(yaml.safe_dump({"steps": 0}))
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        load_train_config(bad)


_KILL_WRITER = r"""
import sys, time, torch
from sar_atd.models import checkpoint

real_save = torch.save

def slow_save(obj, fh, *a, **k):
    real_save(obj, fh, *a, **k)
    fh.flush()
    print("WRITING", flush=True)
    time.sleep(60)

checkpoint.torch.save = slow_save
checkpoint.atomic_save({"format": "new", "w": torch.ones(1_000_000)}, sys.argv[1])
"""


def test_killed_checkpoint_write_leaves_old_file_and_no_visible_temporary(tmp_path) -> None:
    """A process killed while its checkpoint temporary demonstrably exists leaves the old
    checkpoint readable, no visible temporary, and the resumed run removes the hidden one."""
    from sar_atd.atomic import clean_stale_temporaries
    from sar_atd.models.checkpoint import atomic_save

    run = tmp_path / "run"
    ckpt = run / "checkpoint.pt"
    atomic_save({"format": "old", "w": torch.zeros(3)}, ckpt)
    proc = subprocess.Popen([sys.executable, "-c", _KILL_WRITER, str(ckpt)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "WRITING"
        temps = [p for p in run.iterdir() if p.name != "checkpoint.pt"]
        assert len(temps) == 1 and temps[0].stat().st_size > 4_000_000  # demonstrably there
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert torch.load(ckpt, weights_only=True)["format"] == "old"
    assert [p.name for p in run.iterdir() if not p.name.startswith(".")] == ["checkpoint.pt"]
    from sar_atd_training.trainer.train import prepare_run_folder

    prepare_run_folder(run, resume=True, overwrite=False)  # what a resumed run does first
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt"]
    assert clean_stale_temporaries(ckpt) == []


def test_failed_start_leftovers_do_not_block_a_new_run(tmp_path) -> None:
    """A start that failed before logging a step leaves config.yaml and tb/ only: that is
    not a run to protect, so a new run replaces it; anything logged is protected."""
    from sar_atd_training.errors import RunFolderError
    from sar_atd_training.trainer.train import prepare_run_folder

    run = tmp_path / "run"
    (run / "tb").mkdir(parents=True)
    (run / "config.yaml").write_text("steps: 9\n")
    prepare_run_folder(run, resume=False, overwrite=False)
    assert list(run.iterdir()) == []
    (run / "val.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(RunFolderError, match=r"already holds a run \(val\.jsonl\)"):
        prepare_run_folder(run, resume=False, overwrite=False)
