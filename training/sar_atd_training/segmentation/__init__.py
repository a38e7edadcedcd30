"""Target/shadow segmentation of SAR chips (paper section II.C.1).

A small nnU-Net-style U-Net (:mod:`.model`) trained only on synthetic vignettes
(:mod:`.data`, :mod:`.train`), scored against SARBake masks (:mod:`.metrics`, ``sar-atd
segment eval``), used to cut real targets out of real chips for the test sets.
"""
