"""Torch data loading for the overlay pipeline: a seeded, worker-safe IterableDataset."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from sar_atd_training.overlay.pipeline import OverlayConfig, OverlayPipeline

LOG = logging.getLogger(__name__)


def worker_seed(base_seed: int, epoch: int, worker_id: int) -> int:
    """The generator seed of one DataLoader worker in one epoch (63-bit, well mixed)."""
    state = np.random.SeedSequence([int(base_seed), int(epoch), int(worker_id)])
    return int(state.generate_state(1, np.uint64)[0] >> np.uint64(1))


class OverlayDataset(IterableDataset):
    """Endless (or ``length``-long) stream of generated training images.

    Yields ``(image, target)``: image torch.uint8 (H, W) on ``device``; target a dict with
    ``boxes`` float32 (N, 4) [x0, y0, x1, y1] pixel edges, ``labels`` int64 (N,) all ones,
    ``masks`` uint8 (N, H, W) visible target pixels (when ``config.return_masks``),
    ``ood_boxes`` float32 (M, 4) (OOD objects, not targets) and ``meta`` (see
    :class:`~sar_atd_training.overlay.pipeline.Sample`).

    Seeding: each DataLoader worker draws from its own generator seeded with
    :func:`worker_seed` ``(seed, epoch, worker id)``; with the same seed, epoch and number of
    workers the stream is identical (the DataLoader interleaves workers in a fixed order).
    Call :meth:`set_epoch` before each epoch (not visible to ``persistent_workers``).

    Args:
        config: randomisation ranges.
        bank: signature bank (:class:`~sar_atd_training.overlay.pipeline.BankLike`).
        backgrounds: :class:`~sar_atd_training.clutter.BackgroundSet`.
        seed: base seed.
        device: where generation runs. With a CUDA device use ``num_workers=0`` (the GPU does
            the work; CUDA tensors cannot leave forked workers).
        batch_size: images generated together (a batched pipeline call), not the loader's.
        length: images per epoch (split between workers); None for an endless stream.
        record_indices, ood_indices: bank records to use (e.g. a split's training records).
    """

    def __init__(self, config: OverlayConfig, bank: Any, backgrounds: Any, seed: int,
                 device: str | torch.device = "cpu", *, batch_size: int = 8,
                 length: int | None = None, record_indices: Any = None,
                 ood_indices: Any = None) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if length is not None and length < 0:
            raise ValueError(f"length must be >= 0 or None, got {length}")
        self.config = config
        self.bank = bank
        self.backgrounds = backgrounds
        self.seed = int(seed)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.length = length
        self.epoch = 0
        self._kw = {"record_indices": record_indices, "ood_indices": ood_indices}
        # fail early (in the main process) on a bad bank/background/config
        self._pipeline: OverlayPipeline | None = OverlayPipeline(config, bank, backgrounds,
                                                                 self.device, **self._kw)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("endless OverlayDataset has no length (pass length=...)")
        return self.length

    def __iter__(self) -> Iterator[tuple[torch.Tensor, dict[str, Any]]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        if info is not None and self.device.type == "cuda":
            raise RuntimeError("OverlayDataset on CUDA must run with num_workers=0 "
                               "(generation already runs on the GPU)")
        if self._pipeline is None:
            self._pipeline = OverlayPipeline(self.config, self.bank, self.backgrounds,
                                             self.device, **self._kw)
        g = torch.Generator().manual_seed(worker_seed(self.seed, self.epoch, wid))
        todo = None if self.length is None else len(range(wid, self.length, nw))
        done = 0
        while todo is None or done < todo:
            n = self.batch_size if todo is None else min(self.batch_size, todo - done)
            for s in self._pipeline.generate(n, g):
                target: dict[str, Any] = {"boxes": s.boxes, "labels": s.labels,
                                          "ood_boxes": s.ood_boxes, "meta": s.meta}
                if s.masks is not None:
                    target["masks"] = s.masks.to(torch.uint8)
                yield s.image, target
                done += 1


def collate_detection(batch: list[tuple[torch.Tensor, dict[str, Any]]]
                      ) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """Collate ``(image, target)`` pairs into ``(list of images, list of targets)``."""
    images = [b[0] for b in batch]
    targets = [b[1] for b in batch]
    return images, targets
