"""PGD adversarial training: perturbation within epsilon on the 8-bit grid, BatchNorm
statistics untouched, per-sample budgets drawn deterministically, a real training step runs,
strict recipe keys, older runs stay resumable."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from sar_atd.config import from_dict, to_dict
from sar_atd.errors import ConfigError
from sar_atd.models import build_detector
from sar_atd_training.trainer.config import TrainConfig, load_train_config
from sar_atd_training.trainer.data import ToyConfig, ToyDataset, take
from sar_atd_training.trainer.engine import adversarial_batch, step_generator
from sar_atd_training.trainer.fgsm import pgd_perturb
from sar_atd_training.trainer.train import check_resume_recipe, train

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


def _cfg(**kw) -> TrainConfig:
    base = dict(model="retinanet_r18_fpn", model_kwargs={"fpn_channels": 32}, input_size=96,
                batch_size=2, steps=2, lr=0.01, warmup_steps=1, checkpoint_interval=2,
                log_interval=1, fgsm_epsilon=0.0, fgsm_fraction=0.5, adv_method="pgd",
                adv_steps=2, adv_epsilons=[2.0, 8.0], val_images=0, val_patchworks=0,
                data={"kind": "toy", "side_px": [12, 30]})
    base.update(kw)
    return from_dict(TrainConfig, base)


def _batch(n: int = 2) -> tuple[list[torch.Tensor], list[dict]]:
    samples = take(lambda s: ToyDataset(ToyConfig(size=96, side_px=(12, 30)), s), 0, n)
    images = [s[0].float()[None] for s in samples]
    images[0][0, :6, :6] = 0.0  # clipped corners: the [0, 255] range must hold
    images[0][0, 6:12, :6] = 255.0
    return images, [s[1] for s in samples]


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_detector("retinanet_r18_fpn", fpn_channels=32).train()


def _loss(model: torch.nn.Module, xs: list[torch.Tensor], ts: list[dict]) -> float:
    from sar_atd_training.trainer.fgsm import frozen_bn_stats

    with frozen_bn_stats(model), torch.no_grad():
        return float(sum(model(xs, ts).values()))


def test_pgd_within_epsilon_on_grid_and_bn_untouched(model: torch.nn.Module) -> None:
    images, targets = _batch()
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    adv = pgd_perturb(model, images, targets, [3.0, 2.5], steps=3,
                      generator=torch.Generator().manual_seed(0))
    for x, a, e in zip(images, adv, (3, 2)):
        d = (a - x).abs()
        assert 1.0 <= float(d.max()) <= e  # moved pixels, never beyond floor(epsilon)
        assert torch.equal(a, a.round())  # whole grey levels: a valid uint8 image
        assert float(a.min()) >= 0.0 and float(a.max()) <= 255.0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())
    assert _loss(model, adv, targets) > _loss(model, images, targets)  # it attacks the loss
    with pytest.raises(ValueError, match="epsilon"):
        pgd_perturb(model, images, targets, [-1.0, 2.0], steps=2)
    with pytest.raises(ValueError, match="2 images"):
        pgd_perturb(model, images, targets, [2.0], steps=2)


def test_adversarial_batch_draws_budgets_deterministically(model: torch.nn.Module) -> None:
    cfg = _cfg()
    images, targets = _batch(4)
    runs = []
    for _ in range(2):
        xs = [x.clone() for x in images]
        n = adversarial_batch(model, xs, targets, _cfg(batch_size=4),
                              step_generator(0, 0, 7))
        runs.append(xs)
        assert n == 2
        moved = [float((a - x).abs().max()) for a, x in zip(xs, images)]
        assert sum(m > 0 for m in moved) == 2  # half the batch, the rest untouched
        assert all(m <= max(cfg.adv_epsilons) for m in moved)
    assert all(torch.equal(a, b) for a, b in zip(*runs))  # same (seed, rank, step) draws
    # FGSM stays the default: an old recipe with fgsm_epsilon 0 trains clean
    assert adversarial_batch(model, list(images), targets, _cfg(adv_epsilons=[]),
                             step_generator(0, 0, 7)) == 0
    assert TrainConfig().adv_method == "fgsm"


def test_pgd_training_steps_run(tmp_path: Path) -> None:
    """Two real optimizer steps with PGD samples: finite losses, weights written."""
    train(_cfg(), tmp_path / "run", progress=False)
    with (tmp_path / "run" / "train.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert all(float(r["n_adversarial"]) == 1 and float(r["loss"]) > 0 for r in rows)
    assert (tmp_path / "run" / "model_final.pt").is_file()


def test_recipe_and_strict_keys(tmp_path: Path) -> None:
    cfg = load_train_config(REPO / "training" / "configs" / "default_v4.yaml")
    assert cfg.adv_method == "pgd" and cfg.adversarial and cfg.init_weights is not None
    assert max(cfg.adv_epsilons) >= 8 and cfg.adv_random_start
    # the PGD fine-tune changes only the attack: its data are those of the model it starts from
    v3 = load_train_config(REPO / "training" / "configs" / "default_v3.yaml")
    assert cfg.data == v3.data and cfg.init_weights.name == "default_v3.pt"
    for bad, msg in (({"adv_method": "cw"}, "adv_method"), ({"adv_steps": 0}, "adv_steps"),
                     ({"adv_epsilons": [300.0]}, "adv_epsilons")):
        with pytest.raises(ConfigError, match=msg):
            from_dict(TrainConfig, bad)
    # the stronger follow-up fine-tune: same data again, a larger attack share and budget
    v5 = load_train_config(REPO / "training" / "configs" / "default_v5.yaml")
    assert v5.data == cfg.data and v5.init_weights.name == "default_v4.pt"
    assert v5.fgsm_fraction > cfg.fgsm_fraction and min(v5.adv_epsilons) > min(cfg.adv_epsilons)
    # a run stored before the adversarial keys existed resumes with the defaults...
    stored = {k: v for k, v in to_dict(TrainConfig()).items() if not k.startswith("adv_")}
    assert check_resume_recipe(stored, to_dict(TrainConfig()), tmp_path) == {}
    # ...but not with PGD switched on
    from sar_atd_training.errors import RunFolderError

    with pytest.raises(RunFolderError, match="adv_method"):
        check_resume_recipe(stored, to_dict(TrainConfig(adv_method="pgd")), tmp_path)
