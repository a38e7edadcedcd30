"""Overlay pipeline (paper II.B): physics of each step, boxes, dropout, seeding, errors."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sar_atd.config import from_dict
from sar_atd.errors import ConfigError
from sar_atd_training.clutter import (
    BackgroundSet,
    generate_scene,
)
from sar_atd_training.overlay import (
    OverlayConfig,
    OverlayDataError,
    OverlayDataset,
    OverlayPipeline,
    PlacementError,
    Split,
    collate_detection,
    dropout_brightest,
    make_split,
)
from sar_atd_training.overlay.pipeline import brightest_points
from sar_atd_training.overlay.toybank import ArrayBank, SignatureRecord, make_toy_bank

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def bank() -> ArrayBank:
    return make_toy_bank(ood=True)


@pytest.fixture(scope="module")
def grass(plain_grass_config: Callable[[int, int], Any]) -> BackgroundSet:
    """A plain 400 x 400 grass field (Rayleigh speckle at the MSTAR grass level)."""
    return BackgroundSet.from_arrays([generate_scene(plain_grass_config(400, 400), 0)],
                                     ["grass"])


SMALL = OverlayConfig(image_size=256, targets_per_image=(1, 2))


def test_shadows_darker_than_surrounding_clutter(bank: ArrayBank, grass: BackgroundSet) -> None:
    """After the pipeline, shadow pixels are darker (8-bit) than the clutter around them."""
    p = OverlayPipeline(dataclasses.replace(SMALL, noise_db=(-40.0, -40.0)), bank, grass)
    for s in p.generate(4, torch.Generator().manual_seed(1)):
        img = s.image.float()
        outside = ~s.shadow
        if s.masks is not None and len(s.masks):
            outside &= ~s.masks.any(0)
        inner = -torch.nn.functional.max_pool2d(-s.shadow[None, None].float(), 3, 1, 1)[0, 0]
        inner = inner.bool()  # shadow eroded by one pixel (the blurred edge excluded)
        assert inner.sum() > 50
        assert img[inner].mean() < 0.7 * img[outside].mean()
        assert img[s.shadow].mean() < img[outside].mean()


def test_injected_noise_power_matches_setting(bank: ArrayBank) -> None:
    """On a zero background the shadow holds exactly the thermal noise: power = noise_db."""
    zero = BackgroundSet.from_arrays([np.zeros((300, 300), np.complex64)])
    cfg = dataclasses.replace(SMALL, noise_db=(-30.0, -30.0), targets_per_image=(1, 1),
                              range_res_m=(0.3, 0.4), xrange_res_m=(0.35, 0.35))
    p = OverlayPipeline(cfg, bank, zero)
    powers = []
    for s in p.generate(6, torch.Generator().manual_seed(2), keep_complex=True):
        z = s.complex_image
        far = s.shadow & ~torch.nn.functional.max_pool2d(
            s.masks.any(0)[None, None].float(), 9, 1, 4)[0, 0].bool()
        powers.append((z[far].abs() ** 2).mean().item())
        assert z[~s.shadow & ~s.masks.any(0)].abs().max() < 0.05  # no noise outside shadows
    measured_db = 10 * math.log10(np.mean(powers))
    assert abs(measured_db - (-30.0)) < 0.5, measured_db


def test_boxes_contain_targets_and_do_not_overlap(bank: ArrayBank, grass: BackgroundSet
                                                   ) -> None:
    p = OverlayPipeline(dataclasses.replace(SMALL, targets_per_image=(3, 3), image_size=300),
                        bank, grass)
    for s in p.generate(3, torch.Generator().manual_seed(3)):
        assert s.boxes.shape == (3, 4) and s.labels.tolist() == [1, 1, 1]
        for box, mask, obj in zip(s.boxes, s.masks, s.meta["objects"]):
            rows, cols = torch.nonzero(mask, as_tuple=True)
            assert rows.min() >= box[1] and rows.max() + 1 <= box[3]
            assert cols.min() >= box[0] and cols.max() + 1 <= box[2]
            # the support (laid-over target) is inside its box
            sup = torch.from_numpy(bank.support(obj["record"]))
            r, c = torch.nonzero(sup, as_tuple=True)
            assert (c + obj["col"]).min() >= box[0] and (c + obj["col"]).max() < box[2]
            assert (r + obj["row"]).min() >= box[1] and (r + obj["row"]).max() < box[3]
        b = s.boxes
        for i in range(3):
            for j in range(i + 1, 3):
                iw = min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0])
                ih = min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1])
                assert iw <= 0 or ih <= 0, (b[i], b[j])


def test_dropout_removes_configured_share(bank: ArrayBank) -> None:
    sig = torch.from_numpy(np.stack([bank.signature(i) for i in range(4)]))
    idx, valid = brightest_points(sig, 20)
    assert valid.all()
    for share, expect in ((0.5, 10), (0.25, 5), (0.0, 0)):
        out, n_drop = dropout_brightest(sig, 20, share, 1, torch.ones(4, dtype=torch.bool),
                                        torch.Generator().manual_seed(0))
        zeroed = (torch.gather(out.reshape(4, -1).abs(), 1, idx) == 0).sum(1)
        assert n_drop.tolist() == [expect] * 4 and zeroed.tolist() == [expect] * 4
    # subsets differ between targets / generators
    a, _ = dropout_brightest(sig, 20, 0.5, 1, torch.ones(4, dtype=torch.bool),
                             torch.Generator().manual_seed(0))
    b, _ = dropout_brightest(sig, 20, 0.5, 1, torch.ones(4, dtype=torch.bool),
                             torch.Generator().manual_seed(1))
    assert not torch.equal(a, b)


def test_same_seed_same_images(bank: ArrayBank, grass: BackgroundSet) -> None:
    p = OverlayPipeline(SMALL, bank, grass)
    a = p.generate(2, torch.Generator().manual_seed(7))
    b = OverlayPipeline(SMALL, bank, grass).generate(2, torch.Generator().manual_seed(7))
    c = p.generate(2, torch.Generator().manual_seed(8))
    for x, y in zip(a, b):
        assert x.image.dtype == torch.uint8 and x.image.shape == (256, 256)
        assert torch.equal(x.image, y.image) and torch.equal(x.boxes, y.boxes)
    assert not torch.equal(a[0].image, c[0].image)


def test_ood_objects_get_no_boxes(bank: ArrayBank, grass: BackgroundSet) -> None:
    cfg = dataclasses.replace(SMALL, targets_per_image=(0, 0), ood_per_image=(1, 1))
    (s,) = OverlayPipeline(cfg, bank, grass).generate(1, torch.Generator().manual_seed(0))
    assert s.boxes.shape == (0, 4) and s.ood_boxes.shape == (1, 4)
    assert s.meta["objects"][0]["kind"] in ("tree", "house")


def _stream(ds: OverlayDataset, n: int) -> list[torch.Tensor]:
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_detection)
    out = []
    for images, targets in loader:
        assert all(t["boxes"].dtype == torch.float32 for t in targets)
        out += images
        if len(out) >= n:
            break
    return out


def test_dataloader_two_workers_distinct_and_reproducible(bank: ArrayBank,
                                                          grass: BackgroundSet) -> None:
    ds = OverlayDataset(SMALL, bank, grass, seed=11, batch_size=2, length=8)
    a = _stream(ds, 8)
    b = _stream(OverlayDataset(SMALL, bank, grass, seed=11, batch_size=2, length=8), 8)
    assert len(a) == 8 and all(torch.equal(x, y) for x, y in zip(a, b))
    # batches 0 and 1 come from workers 0 and 1: different streams
    assert not torch.equal(a[0], a[2])
    ds.set_epoch(1)
    assert not torch.equal(_stream(ds, 2)[0], a[0])


@pytest.mark.cuda
def test_cpu_and_cuda_statistically_equal(bank: ArrayBank, grass: BackgroundSet) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cpu = OverlayPipeline(SMALL, bank, grass, "cpu").generate(8, torch.Generator()
                                                              .manual_seed(4))
    gpu = OverlayPipeline(SMALL, bank, grass, "cuda").generate(8, torch.Generator()
                                                               .manual_seed(4))
    for a, b in zip(cpu, gpu):
        assert b.image.is_cuda
        assert torch.equal(a.boxes, b.boxes.cpu())  # same random choices
        diff = (a.image.float() - b.image.cpu().float()).abs()
        assert diff[~a.shadow].mean() < 1.0  # identical outside shadows up to rounding
        sa, sb = a.image.float()[a.shadow], b.image.cpu().float()[a.shadow]
        assert abs(sa.mean() - sb.mean()) < 0.1 * sa.mean() + 1


def test_bad_configs_raise_clear_errors(bank: ArrayBank, grass: BackgroundSet) -> None:
    empty = ArrayBank(np.zeros((0, 128, 128), np.complex64), np.zeros((0, 128, 128), bool),
                      np.zeros((0, 128, 128), bool), [])
    with pytest.raises(OverlayDataError, match="empty"):
        OverlayPipeline(SMALL, empty, grass)
    small_bg = BackgroundSet.from_arrays([np.ones((200, 300), np.complex64)], ["tiny"])
    with pytest.raises(OverlayDataError, match="'tiny' is 200 x 300, smaller than the 256"):
        OverlayPipeline(SMALL, bank, small_bg).generate(1)
    crowded = dataclasses.replace(SMALL, image_size=140, targets_per_image=(3, 3),
                                  min_gap_px=60, max_placement_tries=20)
    with pytest.raises(PlacementError, match="cannot place 3 objects"):
        OverlayPipeline(crowded, bank, grass).generate(1)
    with pytest.raises(ConfigError, match="min 0.5 > max 0.3"):
        OverlayConfig(range_res_m=(0.5, 0.3))
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(OverlayConfig, {"noise": [1, 2]})
    with pytest.raises(OverlayDataError, match="no 'tree'/'house'"):
        OverlayPipeline(dataclasses.replace(SMALL, ood_per_image=(1, 1)),
                        make_toy_bank(ood=False), grass)
    with pytest.raises(OverlayDataError, match="no target records"):
        OverlayPipeline(dataclasses.replace(SMALL, classes=("D7",)), bank, grass)
    cfg = from_dict(OverlayConfig, {"noise_db": [-35, -30], "targets_per_image": [1, 2]})
    assert cfg.noise_db == (-35.0, -30.0)


class _RecordsOnly:
    """A bank stand-in with the paper's record layout (splits only look at records)."""

    def __init__(self) -> None:
        self.records = [SignatureRecord("target", c, az / 2, d)
                        for c in ("T72", "BMP2", "2S1") for az in range(720)
                        for d in (15.0, 16.0, 17.0)]
        self.records += [SignatureRecord(k, k, float(az), 15.0) for k in ("tree", "house")
                         for az in range(0, 101, 5)]

    def __len__(self) -> int:
        return len(self.records)


def test_split_holds_out_test_azimuths(tmp_path: Path) -> None:
    bank = _RecordsOnly()
    names = [f"bg{i}" for i in range(180)]
    split = make_split(bank, seed=0, backgrounds=names)
    assert len(split.test_backgrounds) == 20 and len(split.train_backgrounds) == 160
    assert not set(split.test_backgrounds) & set(split.train_backgrounds)
    n_target_test = sum(bank.records[i].kind == "target" for i in split.test_records)
    assert n_target_test == 3 * 216  # 10% of 3 classes x 720 azimuths x 3 depressions
    for cls in ("T72", "BMP2", "2S1", "tree", "house"):
        tr = {bank.records[i].azimuth_deg for i in split.train_records
              if bank.records[i].class_name == cls}
        te = {bank.records[i].azimuth_deg for i in split.test_records
              if bank.records[i].class_name == cls}
        assert tr and te and not tr & te
    split.save(tmp_path / "split.json")
    again = Split.load(tmp_path / "split.json")
    assert np.array_equal(again.test_records, split.test_records)
    again.verify(bank)
    same = make_split(bank, seed=0, backgrounds=names)
    assert np.array_equal(same.test_records, split.test_records)
    assert not np.array_equal(make_split(bank, seed=1).test_records, split.test_records)
    with pytest.raises(ConfigError, match="not valid JSON"):
        (tmp_path / "bad.json").write_text("{")
        Split.load(tmp_path / "bad.json")


def test_with_simulated_signature(grass: BackgroundSet) -> None:
    """Integration: a signature from the physics simulator goes through the pipeline."""
    sim = pytest.importorskip("sar_atd_training.simulator")
    if not hasattr(sim, "simulate_signature"):
        pytest.skip("simulate_signature not available yet")
    from sar_atd_training.overlay.toybank import simulated_bank

    bank = simulated_bank(classes=("T72",), azimuths_deg=(30.0,))
    (s,) = OverlayPipeline(SMALL, bank, grass).generate(1, torch.Generator().manual_seed(0))
    assert len(s.boxes) >= 1 and s.image.dtype == torch.uint8
    for box in s.boxes:
        inside = s.image[int(box[1]):int(box[3]), int(box[0]):int(box[2])].float()
        assert inside.max() > s.image.float().median() * 2  # a bright target in its box
