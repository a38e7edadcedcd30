"""Training data for the detector trainer: dataset registry and a re-seedable stream.

A dataset factory is ``factory(seed: int) -> Iterable[(image, target)]`` with image
torch.uint8 (H, W) and target ``{"boxes": float32 (N, 4) xyxy pixel-edge, "labels": int64
(N,)}`` (what :class:`sar_atd_training.overlay.OverlayDataset` yields). Registry
:data:`DATASETS` maps ``data.kind`` of a recipe to a function building that factory:

* ``overlay``: the real recipe, synthetic targets overlaid on backgrounds;
* ``toy``: speckled bright rectangles (tests, benchmarks, smoke runs).

:class:`DataStream` makes the stream position checkpointable without replaying it: the
stream is re-created with seed ``stream_seed(seed, rank, step)`` at the start of training and
after every checkpoint (``reset(step)``), so a run resumed from the checkpoint of step ``s``
sees exactly the batches the uninterrupted run saw after ``s``; each DDP rank gets its own
seed (the iterable-stream analogue of a DistributedSampler).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from sar_atd.config import from_dict

log = logging.getLogger(__name__)

Sample = tuple[torch.Tensor, dict[str, torch.Tensor]]
DatasetFactory = Callable[[int], Iterable[Sample]]


def stream_seed(seed: int, rank: int, step: int) -> int:
    """Seed of the data stream segment starting at ``step`` on ``rank`` (63-bit)."""
    return int(np.random.SeedSequence([seed, rank, step, 0xDA7A]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))


def collate_detection(batch: list[Sample]) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """``[(image, target), ...]`` -> ``(images, targets)`` lists (sizes may differ)."""
    return [b[0] for b in batch], [b[1] for b in batch]


@dataclass
class ToyConfig:
    """Speckled bright rectangles: a tiny stand-in task for tests and benchmarks.

    Attributes:
        size: image side in pixels (set from the recipe's ``input_size`` when absent).
        targets: (min, max) rectangles per image.
        side_px: (min, max) rectangle side in pixels.
        contrast: (min, max) target-to-clutter mean intensity ratio.
    """

    size: int = 128
    targets: tuple[int, int] = (1, 3)
    side_px: tuple[int, int] = (12, 40)
    contrast: tuple[float, float] = (6.0, 20.0)


class ToyDataset(IterableDataset):
    """Infinite stream of uint8 (S, S) speckle images with 1-3 bright rectangles.

    Background: exponential intensity (fully developed speckle); targets: rectangles whose
    mean intensity is ``contrast`` times higher, also speckled; 8 bits through a
    quarter-power mapping. Deterministic in ``seed`` (per DataLoader worker).
    """

    def __init__(self, config: ToyConfig, seed: int) -> None:
        self.config, self.seed = config, int(seed)

    def __iter__(self) -> Iterator[Sample]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, worker])
        c = self.config
        while True:
            s = c.size
            intensity = rng.exponential(1.0, (s, s))
            boxes = []
            for _ in range(int(rng.integers(c.targets[0], c.targets[1] + 1))):
                w, h = (int(v) for v in rng.integers(c.side_px[0], c.side_px[1] + 1, 2))
                w, h = min(w, s - 2), min(h, s - 2)
                x0, y0 = int(rng.integers(0, s - w)), int(rng.integers(0, s - h))
                intensity[y0:y0 + h, x0:x0 + w] *= rng.uniform(*c.contrast)
                boxes.append([x0, y0, x0 + w, y0 + h])
            amp = intensity ** 0.25
            img = np.clip(255 * amp / (3 * np.median(amp)), 0, 255).astype(np.uint8)
            yield (torch.from_numpy(img),
                   {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                    "labels": torch.ones(len(boxes), dtype=torch.int64)})


def toy_factory(data: dict[str, Any], input_size: int) -> DatasetFactory:
    kw = {k: v for k, v in data.items() if k != "kind"}
    kw.setdefault("size", input_size)
    cfg = from_dict(ToyConfig, kw, where="data")
    return lambda seed: ToyDataset(cfg, seed)


def split_training_records(bank: Any, split_seed: int, ood_kinds: Sequence[str] = ()
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Training records of the bank's azimuth-sector split with seed ``split_seed``:
    ``(targets, ood)`` int64 record indices ('target' records; records of the OOD kinds
    ``ood_kinds``, empty: tree and house, see :func:`overlay.pipeline.ood_records`)."""
    from sar_atd_training.overlay.pipeline import ood_records
    from sar_atd_training.overlay.splits import make_split

    train = np.asarray(make_split(bank, seed=split_seed).train_records, np.int64)
    kinds = np.array([bank.records[int(i)].kind for i in train])
    return train[kinds == "target"], ood_records(bank, ood_kinds, among=train)


def overlay_factory(data: dict[str, Any], input_size: int) -> DatasetFactory:
    """The real recipe: :class:`sar_atd_training.overlay.OverlayDataset`.

    ``data`` keys (besides ``kind``): ``bank`` (signature bank folder; null: a few signatures
    simulated on the fly), ``backgrounds`` (folder of MSTAR clutter files / images; null:
    ``generated_backgrounds`` scenes of generated clutter seeded with ``background_seed``),
    ``overlay`` (the :class:`OverlayConfig` mapping; ``image_size`` defaults to the recipe's
    ``input_size``), ``generation_batch`` (images generated per pipeline call),
    ``device`` (where generation runs) and ``split_seed`` (null: every bank record; an int:
    only the training records of :func:`sar_atd_training.overlay.splits.make_split` with that
    seed, targets and OOD objects alike, so the held-out azimuth sectors that ``sar-atd
    testset build`` draws from stay unseen).
    """
    from sar_atd_training import overlay  # lazy: heavy
    from sar_atd_training.clutter import BackgroundSet, ClutterConfig

    check_data_section(data)
    ov = dict(data.get("overlay") or {})
    ov.setdefault("image_size", input_size)
    cfg = from_dict(overlay.OverlayConfig, ov, where="data.overlay")
    if data.get("bank"):
        from sar_atd_training.simulator.bank import SignatureBank

        bank = SignatureBank.open(data["bank"])
    else:
        from sar_atd_training.overlay import toybank

        bank = toybank.simulated_bank()
    records: Any = None
    ood: Any = None
    if data.get("split_seed") is not None:
        records, ood = split_training_records(bank, int(data["split_seed"]), cfg.ood_kinds)
        log.info("split %d: %d target and %d OOD training records", int(data["split_seed"]),
                 records.size, ood.size)
    if data.get("backgrounds"):
        backgrounds = BackgroundSet.from_folder(data["backgrounds"])
    else:
        backgrounds = BackgroundSet.generated(int(data.get("generated_backgrounds", 8)),
                                              ClutterConfig(),
                                              seed=int(data.get("background_seed", 0)))
        # generate every scene once, here, so DataLoader workers (forked at each stream
        # segment) share them instead of regenerating scenes (seconds each) on every switch
        log.info("generating %d clutter scenes", len(backgrounds))
        backgrounds.materialise(progress=True)
    device = data.get("device", "cpu")
    batch = int(data.get("generation_batch", 8))
    return lambda seed: overlay.OverlayDataset(cfg, bank, backgrounds, seed, device=device,
                                               batch_size=batch, record_indices=records,
                                               ood_indices=ood)


# data.kind -> builder of a dataset factory. Explicit registry (unknown kind -> ValueError).
DATASETS: dict[str, Callable[[dict[str, Any], int], DatasetFactory]] = {
    "overlay": overlay_factory,
    "toy": toy_factory,
}


# data.kind -> keys its section accepts (checked before any work starts).
DATA_KEYS: dict[str, frozenset[str]] = {
    "overlay": frozenset({"kind", "bank", "backgrounds", "generated_backgrounds",
                          "background_seed", "overlay", "generation_batch", "device",
                          "split_seed"}),
    "toy": frozenset({"kind", *ToyConfig.__dataclass_fields__}),
}


def check_data_section(data: dict[str, Any], where: str = "data") -> None:
    """Refuse an unknown ``data.kind`` or keys its dataset does not accept.

    Raises:
        ConfigError: naming the unknown kind or keys and listing the accepted ones.
    """
    from sar_atd.errors import ConfigError

    kind = data.get("kind")
    if kind not in DATASETS:
        raise ConfigError(f"{where}: unknown kind {kind!r}; choices: {sorted(DATASETS)}")
    unknown = sorted(set(data) - DATA_KEYS[kind])
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} for kind {kind!r}; "
                          f"known: {sorted(DATA_KEYS[kind])}")


def build_dataset_factory(data: dict[str, Any], input_size: int) -> DatasetFactory:
    """The dataset factory of a recipe's ``data`` section.

    Raises:
        ConfigError: unknown ``data.kind`` or keys (lists the choices).
    """
    check_data_section(data)
    return DATASETS[data["kind"]](data, input_size)


class DataStream:
    """Batches from a dataset factory, re-seeded at checkpoints for exact resume.

    Args:
        factory: ``factory(seed) -> iterable of (image, target)``.
        batch_size: images per batch.
        seed: base seed of the run.
        rank: process rank (each rank has its own stream).
        num_workers: DataLoader workers (0: generate in the training process).
    """

    def __init__(self, factory: DatasetFactory, batch_size: int, seed: int, rank: int = 0,
                 num_workers: int = 0) -> None:
        self.factory, self.batch_size = factory, batch_size
        self.seed, self.rank, self.num_workers = seed, rank, num_workers
        self.segment_start = -1
        self.segment_seed = 0
        self.consumed = 0
        self._it: Iterator[Any] | None = None

    def reset(self, step: int) -> None:
        """Start the stream segment of ``step`` (seed from seed, rank and step)."""
        self.segment_start = step
        self.segment_seed = stream_seed(self.seed, self.rank, step)
        self.consumed = 0
        dataset = self.factory(self.segment_seed)
        if self.num_workers > 0:
            loader = DataLoader(dataset, batch_size=self.batch_size,  # type: ignore[arg-type]
                                collate_fn=collate_detection, num_workers=self.num_workers,
                                persistent_workers=False)
            self._it = iter(loader)
        else:
            self._it = self._batches(iter(dataset))

    def _batches(self, it: Iterator[Sample]) -> Iterator[Any]:
        while True:
            yield collate_detection([next(it) for _ in range(self.batch_size)])

    def next(self) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
        """The next batch ``(images uint8 (H, W) list, targets list)``."""
        if self._it is None:
            raise RuntimeError("DataStream.reset(step) must be called first")
        self.consumed += 1
        return next(self._it)

    def state(self) -> dict[str, int]:
        """Position of the stream (saved in checkpoints)."""
        return {"segment_start": self.segment_start, "segment_seed": self.segment_seed,
                "batches_consumed": self.consumed, "rank": self.rank}


def take(factory: DatasetFactory, seed: int, n: int) -> list[Sample]:
    """The first ``n`` samples of ``factory(seed)`` (a fixed validation split)."""
    return list(itertools.islice(iter(factory(seed)), max(0, n)))
