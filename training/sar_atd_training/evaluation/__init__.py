"""Evaluation on real data: patchworks of real chips (paper test set 3), COCO datasets,
reports (``sar-atd eval``)."""
