"""FGSM / PGD attacks: never move a pixel by more than epsilon, keep uint8 range, raise the
loss they attack, leave BatchNorm statistics and module modes untouched; CLI refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sar_atd.models import build_detector
from sar_atd_training.attacks import (
    AttackError,
    attack_image,
    loss_mode,
    parse_epsilons,
    quantise,
)


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_detector("retinanet_r18_fpn", fpn_channels=32).eval()


def _image() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    im = rng.integers(0, 60, (128, 128)).astype(np.uint8)
    im[20:36, 24:34] = 250  # saturated target: the clip at 255 must hold
    im[0:4, 0:4] = 0  # black corner: the clip at 0 must hold
    return im, np.array([[24, 20, 34, 36]], np.float32)


def _loss(model: torch.nn.Module, im: np.ndarray, boxes: np.ndarray) -> float:
    with loss_mode(model), torch.no_grad():
        x = torch.from_numpy(im.astype(np.float32))[None]
        t = {"boxes": torch.from_numpy(boxes), "labels": torch.ones(len(boxes), dtype=torch.int64)}
        return float(sum(model([x], [t]).values()))


@pytest.mark.parametrize("method,eps", [("fgsm", 2.0), ("fgsm", 2.5), ("pgd", 4.0)])
def test_attack_within_epsilon_and_uint8(tiny_model: torch.nn.Module, method: str,
                                         eps: float) -> None:
    im, boxes = _image()
    bn = [m for m in tiny_model.modules() if isinstance(m, torch.nn.BatchNorm2d)][0]
    mean0 = bn.running_mean.clone()
    adv = attack_image(tiny_model, im, boxes, method, eps, steps=10,
                       generator=torch.Generator().manual_seed(1))
    assert adv.dtype == np.uint8 and adv.shape == im.shape
    d = adv.astype(np.int16) - im.astype(np.int16)
    assert np.abs(d).max() <= eps
    assert np.abs(d).max() >= 1  # it did move pixels
    torch.testing.assert_close(bn.running_mean, mean0)  # BN statistics untouched
    assert not tiny_model.training  # mode restored
    assert _loss(tiny_model, adv, boxes) > _loss(tiny_model, im, boxes)


def test_pgd_needs_ten_steps_and_epsilon_zero_is_identity(tiny_model: torch.nn.Module) -> None:
    im, boxes = _image()
    with pytest.raises(ValueError, match="at least 10 steps"):
        attack_image(tiny_model, im, boxes, "pgd", 2.0, steps=3)
    np.testing.assert_array_equal(attack_image(tiny_model, im, boxes, "pgd", 0.0), im)
    with pytest.raises(ValueError, match="uint8"):
        attack_image(tiny_model, im.astype(np.float32), boxes, "fgsm", 2.0)


def test_quantise_rounds_within_floor_epsilon() -> None:
    x0 = torch.tensor([[0.0, 100.0, 255.0, 10.0]])
    x = torch.tensor([[-3.0, 102.9, 260.0, 7.6]])
    out = quantise(x, x0, 2.5)
    torch.testing.assert_close(out, torch.tensor([[0.0, 102.0, 255.0, 8.0]]))


def test_parse_epsilons() -> None:
    assert parse_epsilons("0, 2,8") == [0.0, 2.0, 8.0]
    for bad in ("", "a", "-1", "nan"):
        with pytest.raises(AttackError):
            parse_epsilons(bad)


def test_eval_attack_refuses_cfar_only(tmp_path, mstar_chips, capsys) -> None:  # noqa: ANN001
    from sar_atd_training.cli import main

    rc = main(["eval", "--detector", "cfar", "--dataset", str(mstar_chips), "--n", "1",
               "--attack", "pgd", "--epsilon", "2", "--out", str(tmp_path / "r"),
               "--no-progress"])
    assert rc == 1
    assert "white-box" in capsys.readouterr().err


def test_attacked_scores_white_box_and_transfer_rows(tiny_model: torch.nn.Module) -> None:
    """Two torch models of one architecture keep separate rows; CFAR is scored on the images
    attacked against the first; epsilon 0 is the clean image; the measured change <= eps."""
    from sar_atd.backends.torch_backend import TorchDetector
    from sar_atd.evalset import EvalImage
    from sar_atd.runtime import resolve_detector
    from sar_atd_training.attacks import attacked_scores

    im, boxes = _image()
    dets = [("a.pt", TorchDetector(tiny_model, score_threshold=0.01, name="torch:r18")),
            ("b.pt", TorchDetector(tiny_model, score_threshold=0.01, name="torch:r18")),
            ("cfar", resolve_detector("cfar")[0])]
    rows = list(attacked_scores(dets, [EvalImage("x", im, boxes)], "fgsm", [0.0, 2.0]))
    keys = {(r["key"], r["epsilon"]) for r in rows}
    assert len(rows) == 6 and len(keys) == 6
    assert {r["key"] for r in rows if not r["white_box"]} == {
        f"{dets[2][1].name} (transfer from torch:r18 [a.pt])"}
    assert all(r["max_abs_perturbation"] == (0 if r["epsilon"] == 0 else 2) for r in rows)
    assert all(0.0 <= r["AP50"] <= 1.0 for r in rows)
    with pytest.raises(AttackError, match="white-box"):
        next(attacked_scores(dets[2:], [EvalImage("x", im, boxes)], "fgsm", [2.0]))
