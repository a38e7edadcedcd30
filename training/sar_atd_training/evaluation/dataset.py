"""Evaluation datasets for the offline tools: COCO folders (from :mod:`sar_atd.evalset`) or
patchworks built on the fly from a folder of real chips + SARBake masks.

``EvalImage``, ``read_coco_dataset`` and ``write_coco_dataset`` live in the core library
(:mod:`sar_atd.evalset`, shared with the ROS 2 evaluator node) and are re-exported here.
"""

from __future__ import annotations

from pathlib import Path

from sar_atd.errors import ChipReadError
from sar_atd.evalset import EvalImage, read_coco_dataset, write_coco_dataset
from sar_atd.evalset import load_eval_dataset as load_coco_eval_dataset

__all__ = ["EvalImage", "write_coco_dataset", "read_coco_dataset", "load_eval_dataset"]


def load_eval_dataset(path: str | Path, n: int = 200, seed: int = 0,
                      progress: bool = True) -> tuple[list[EvalImage], str]:
    """Load a COCO dataset, or build ``n`` patchworks from a folder of chips + masks.

    Args:
        path: COCO JSON / folder with ``annotations.json``, or ``<CLASS>/<NAME>.jpeg`` chips
            with ``<NAME>.mask.png`` SARBake masks.
        n: number of patchworks (chips folders only), >= 1.
        seed: patchwork seed (chips folders only).
        progress: progress bars.

    Returns:
        (images, description of the dataset for reports).

    Raises:
        ChipReadError: dataset missing or unreadable (naming the file).
        ValueError: ``n`` < 1.
    """
    from sar_atd_training.evaluation.patchwork import build_patchworks

    path = Path(path)
    if path.is_file() or (path / "annotations.json").is_file():
        return load_coco_eval_dataset(path)
    if not path.is_dir():
        raise ChipReadError(f"dataset not found: {path}")
    if n < 1:
        raise ValueError(f"number of patchworks must be >= 1, got {n}")
    from sar_atd.sar.chips import list_chips

    pws = build_patchworks(path, n=n, seed=seed, progress=progress)
    items = [EvalImage(p.name, p.image, p.boxes) for p in pws]
    n_no_mask = sum(r.mask_path is None for r in list_chips(path))
    left_out = (f"; {n_no_mask} chip(s) without a SARBake mask left out" if n_no_mask
                else "")
    return items, (f"{n} patchworks (4x4 chips, 16 px overlaps, linear amplitude fade, "
                   f"SARBake boxes) of {path}, seed {seed}{left_out}")
